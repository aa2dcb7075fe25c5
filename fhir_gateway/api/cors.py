"""CORS for browser apps on other origins: per facility, only the origins its config lists.

No origin is allowed by default.  A preflight (``OPTIONS``) is answered without a token (the
browser never sends one there); the real request still needs its bearer token.  ``Authorization``
may be sent, and the headers a FHIR client reads (``Content-Location`` of an export, ``ETag``,
``Location``) are exposed."""

from __future__ import annotations

from flask import Request, Response, current_app, request

ALLOW_HEADERS = ("Authorization", "Accept", "Content-Type", "Prefer", "If-None-Match",
                 "If-Modified-Since", "X-Requested-With")
EXPOSE_HEADERS = ("Content-Location", "ETag", "Location", "Last-Modified", "X-Progress",
                  "Retry-After", "Expires", "X-Storage-Root", "X-Storage-Failover")
MAX_AGE = 600


def allowed_origin(facility: str, req: Request | None = None) -> str | None:
    """The request's ``Origin`` when the facility's config allows it, else None."""
    origin = (req if req is not None else request).environ.get("HTTP_ORIGIN")
    if not origin:
        return None
    fac = current_app.config["FHIR_CONFIG"].facilities.get(facility)
    origins = getattr(fac, "cors_origins", ()) if fac is not None else ()
    if origin.rstrip("/") in origins or "*" in origins:
        return origin
    return None


def _vary(resp: Response) -> None:
    text = resp.headers.get("Vary", "")
    if text.endswith("Origin") and text.rsplit(",", 1)[-1].strip() == "Origin":
        return  # respond.VARY: every FHIR answer already says it
    vary = [v.strip() for v in text.split(",") if v.strip()]
    if "Origin" not in vary:
        resp.headers["Vary"] = ", ".join(vary + ["Origin"])


def add_headers(resp: Response, facility: str, req: Request | None = None) -> Response:
    """On every API answer (errors included, so a browser app can read a 401's reason)."""
    req = req if req is not None else request._get_current_object()  # type: ignore[attr-defined]
    if req.method == "OPTIONS":
        return resp
    origin = allowed_origin(facility, req)
    if origin is not None:
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
    _vary(resp)
    return resp


def preflight(resp: Response, facility: str, methods: list[str]) -> Response:
    origin = allowed_origin(facility)
    if origin is not None and request.headers.get("Access-Control-Request-Method"):
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
        resp.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOW_HEADERS)
        resp.headers["Access-Control-Max-Age"] = str(MAX_AGE)
    _vary(resp)
    return resp
