"""Turning a resource dict into an HTTP response: format, pretty-printing, caching headers.

Every API answer goes through here, so the work per answer is kept small: the request and
``g`` are looked up once, format choices and HTTP dates are memoised (both are pure functions
of short strings), and the headers are handed to the response in one list."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache

from flask import Request, Response, g, request

from fhir_gateway import formats

from .errors import FhirError

# Every API answer varies on these: the format (Accept), compression (Accept-Encoding) and the
# CORS origin (cors.add_headers, which adds Origin to answers that do not come from here).
VARY = "Accept, Accept-Encoding, Origin"
_CONTENT_TYPE = {formats.JSON: f"{formats.JSON}; charset=utf-8"}

class FhirResponse(Response):
    """A FHIR answer.  werkzeug copies every response's headers before sending them, to fix up
    ``Location``/``Content-Location``, lengths of bodiless statuses and a missing length; a FHIR
    answer of 2xx with its length set and neither location header needs none of that, so its
    headers go out as they are (the rest take werkzeug's path)."""

    def get_wsgi_headers(self, environ):
        status = self.status_code
        if 200 <= status < 300 and status != 204:
            sized = False
            for key, _ in self.headers:
                k = key.lower()
                if k == "content-length":
                    sized = True
                elif k in ("location", "content-location"):
                    break
            else:
                if sized:
                    return self.headers
        return super().get_wsgi_headers(environ)


# formats.negotiate is a pure function of two short strings (clients send the same few);
# NotAcceptable is raised, not cached
_choose = lru_cache(maxsize=256)(formats.negotiate)


def negotiate(req: Request | None = None) -> None:
    """Pick the response format for this request (``g.media_type``), 406 when impossible."""
    req = req if req is not None else request._get_current_object()  # type: ignore[attr-defined]
    ctx = g._get_current_object()
    args = req.args
    ctx.media_type = formats.JSON
    try:
        ctx.media_type = _choose(args.get("_format") if args else None,
                                 req.environ.get("HTTP_ACCEPT"))
    except formats.NotAcceptable as exc:
        raise FhirError(406, str(exc), "not-supported") from None
    ctx.pretty = bool(args) and args.get("_pretty", "").lower() == "true"


def fhir_response(resource: dict, status: int = 200, headers: dict | None = None) -> Response:
    ctx = g._get_current_object()
    media = getattr(ctx, "media_type", formats.JSON)
    body, replaced = formats.render_checked(resource, media, getattr(ctx, "pretty", False))
    out = {"Vary": VARY}
    if replaced:  # stored text XML cannot carry: served with U+FFFD, and said so
        out["Warning"] = (f'199 fhir-gateway "{replaced} character(s) XML 1.0 forbids '
                          'were replaced by U+FFFD; the JSON form has them escaped"')
    if headers:
        out.update(headers)  # the caller's win (one value per name)
    return FhirResponse(body, status=status, headers=list(out.items()),
                        content_type=_CONTENT_TYPE.get(media) or f"{media}; charset=utf-8")


@lru_cache(maxsize=4096)
def _http_date(last_updated: str) -> tuple[datetime, str] | None:
    """``meta.lastUpdated`` as (aware datetime, IMF-fixdate for ``Last-Modified``); None when
    it is not an ISO date-time.  Memoised: the same resources are read again and again."""
    try:
        modified = datetime.fromisoformat(last_updated.replace("Z", "+00:00"))
    except ValueError:
        return None
    return modified, format_datetime(modified.astimezone(timezone.utc), usegmt=True)


def resource_response(resource: dict, req: Request | None = None) -> Response:
    """A read/vread answer with ``ETag: W/"version"`` and ``Last-Modified``; 304 when fresh."""
    req = req if req is not None else request._get_current_object()  # type: ignore[attr-defined]
    meta = resource.get("meta") or {}
    version = meta.get("versionId")
    etag = f'W/"{version}"' if version else None
    text = meta.get("lastUpdated")
    stamp = _http_date(text) if text else None
    headers = {}
    if etag:
        headers["ETag"] = etag
    if stamp:
        headers["Last-Modified"] = stamp[1]
    environ = req.environ
    inm = environ.get("HTTP_IF_NONE_MATCH")
    if inm and etag:
        tags = [t.strip() for t in inm.split(",")]
        if "*" in tags or etag in tags or etag[2:] in tags:
            return not_modified(headers)
    elif stamp and environ.get("HTTP_IF_MODIFIED_SINCE"):
        try:
            since = parsedate_to_datetime(environ["HTTP_IF_MODIFIED_SINCE"])
        except (TypeError, ValueError):
            since = None
        if since is not None and stamp[0].replace(microsecond=0) <= since:
            return not_modified(headers)
    return fhir_response(resource, headers=headers)


def not_modified(headers: dict) -> Response:
    return Response(status=304, headers=list(headers.items()))
