"""Generated links never reflect a spoofed ``Host:`` (issue 13 L2).

Every absolute URL the gateway writes (``fullUrl``, paging links, SMART Health Links, the
CapabilityStatement) comes from ``request.host_url``.  This middleware fixes what that is before
Flask sees the request:

* ``public_url`` configured (``public_url = "https://gw.example.org"`` in the TOML, or
  ``FHIR_GATEWAY_PUBLIC_URL``): scheme and host are always that one;
* otherwise a ``Host`` that is not loopback and not in ``trusted_hosts`` is replaced by the
  address the server listens on (``serve --host/--port``), never echoed.  Behind a proxy or on
  a non-loopback address, set ``public_url``.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def host_name(host: str) -> str:
    """``host[:port]`` -> host, lower-case (IPv6 in brackets kept)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class PublicHost:
    def __init__(self, app, public_url: str = "", trusted_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        public_url = public_url or os.environ.get("FHIR_GATEWAY_PUBLIC_URL", "")
        self.public = urlsplit(public_url) if public_url else None
        if self.public is not None and (self.public.scheme not in ("http", "https")
                                        or not self.public.netloc):
            raise ValueError(f"public_url {public_url!r} must be like https://host[:port]")
        self.trusted = {h.lower() for h in trusted_hosts} | set(LOOPBACK)
        self._good: set[str] = set()  # Host values already found trusted (checked once each)

    def _trusted(self, host: str) -> bool:
        if host in self._good:
            return True
        if any(c in host for c in "/\\@ \t\r\n") or host_name(host) not in self.trusted:
            return False
        if len(self._good) < 64:  # only trusted names get here: a short list
            self._good.add(host)
        return True

    def __call__(self, environ, start_response):
        if self.public is not None:
            environ["HTTP_HOST"] = self.public.netloc
            environ["wsgi.url_scheme"] = self.public.scheme
        else:
            host = environ.get("HTTP_HOST", "")
            if not self._trusted(host):
                bound = os.environ.get("FHIR_GATEWAY_BIND_URL", "")  # set by serving.serve
                if bound:
                    environ["HTTP_HOST"] = urlsplit(bound).netloc
                else:
                    port = environ.get("SERVER_PORT", "")
                    name = environ.get("SERVER_NAME", "localhost")
                    environ["HTTP_HOST"] = f"{name}:{port}" if port else name
        return self.app(environ, start_response)
