"""The client's address behind a reverse proxy, for the per-client limits (and every other use
of ``REMOTE_ADDR``: login attempts per address, audit rows).

Behind a proxy every request comes from the proxy's address, so anonymous clients would share
one per-address budget.  With ``trusted_proxies`` configured (addresses or networks), a request
whose peer is one of them has its client address taken from the forwarding header the proxy
writes (``forwarded_header``: ``X-Forwarded-For``, or RFC 7239 ``Forwarded``): read from the
right, the first address that is not a trusted proxy is the client.  A peer that is not trusted
cannot choose its address: its headers are ignored.  Without the setting nothing changes.
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
HEADERS = {"x-forwarded-for": "HTTP_X_FORWARDED_FOR", "forwarded": "HTTP_FORWARDED"}
PEER_KEY = "fhir_gateway.peer"  # the proxy's own address, kept in the WSGI environ


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks (a ValueError names a bad entry)."""
    out = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or network") from None
    return tuple(out)


def check_networks(text: str) -> str:
    """Setting parser: the text, validated."""
    parse_networks(text)
    return text.strip()


def check_header(text: str) -> str:
    name = text.strip().lower()
    if name not in HEADERS:
        raise ValueError(f"{text!r}: use x-forwarded-for or forwarded")
    return name


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """One hop as written (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``"[::1]"``), else None."""
    t = text.strip().strip('"')
    if t.startswith("["):
        t = t[1:t.find("]")] if "]" in t else ""
    elif t.count(":") == 1:  # IPv4 with a port
        t = t.split(":", 1)[0]
    try:
        return ipaddress.ip_address(t)
    except ValueError:
        return None


def hops(header: str, value: str) -> list[str]:
    """The hops a header lists, left (the original client) to right (the last proxy)."""
    if header == "x-forwarded-for":
        return [h.strip() for h in value.split(",") if h.strip()]
    out = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, _, val = pair.strip().partition("=")
            if key.strip().lower() == "for":
                out.append(val.strip())
    return out


def client_address(peer: str, forwarded: Iterable[str], trusted: tuple[Network, ...]) -> str:
    """The client: from the right, the first hop that is not a trusted proxy.  Walking stops at
    a hop that is not an address (``unknown``, an obfuscated id): the trusted proxy that wrote
    it is then the best known client."""
    def is_trusted(addr) -> bool:
        return any(addr in net for net in trusted)

    current = _address(peer)
    if current is None or not is_trusted(current):
        return peer
    for hop in reversed(list(forwarded)):
        addr = _address(hop)
        if addr is None:
            break
        current = addr
        if not is_trusted(addr):
            break
    return str(current)


class ClientAddress:
    """WSGI middleware: ``REMOTE_ADDR`` = the client behind trusted proxies (the peer kept in
    ``fhir_gateway.peer``)."""

    def __init__(self, app: Callable, trusted: str, header: str = "x-forwarded-for") -> None:
        self.app = app
        self.trusted = parse_networks(trusted)
        self.header = check_header(header)

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR", "")
        environ[PEER_KEY] = peer
        if self.trusted:
            value = environ.get(HEADERS[self.header], "")
            environ["REMOTE_ADDR"] = client_address(peer, hops(self.header, value),
                                                    self.trusted)
        return self.app(environ, start_response)
