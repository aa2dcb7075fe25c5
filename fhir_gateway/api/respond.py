"""Turning a resource dict into an HTTP response: format, pretty-printing, caching headers."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime

from flask import Response, g, request

from fhir_gateway import formats

from .errors import FhirError


def negotiate() -> None:
    """Pick the response format for this request (``g.media_type``), 406 when impossible."""
    g.media_type = formats.JSON
    try:
        g.media_type = formats.negotiate(request.args.get("_format"),
                                         request.headers.get("Accept"))
    except formats.NotAcceptable as exc:
        raise FhirError(406, str(exc), "not-supported") from None
    g.pretty = request.args.get("_pretty", "").lower() == "true"


def fhir_response(resource: dict, status: int = 200, headers: dict | None = None) -> Response:
    media = getattr(g, "media_type", formats.JSON)
    body, replaced = formats.render_checked(resource, media, getattr(g, "pretty", False))
    resp = Response(body, status=status, content_type=f"{media}; charset=utf-8")
    if replaced:  # stored text XML cannot carry: served with U+FFFD, and said so
        resp.headers["Warning"] = (f'199 fhir-gateway "{replaced} character(s) XML 1.0 forbids '
                                   'were replaced by U+FFFD; the JSON form has them escaped"')
    resp.headers["Vary"] = "Accept, Accept-Encoding"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _last_modified(resource: dict) -> datetime | None:
    text = resource.get("meta", {}).get("lastUpdated")
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def resource_response(resource: dict) -> Response:
    """A read/vread answer with ``ETag: W/"version"`` and ``Last-Modified``; 304 when fresh."""
    version = resource.get("meta", {}).get("versionId")
    etag = f'W/"{version}"' if version else None
    modified = _last_modified(resource)
    headers = {}
    if etag:
        headers["ETag"] = etag
    if modified:
        headers["Last-Modified"] = format_datetime(modified.astimezone(timezone.utc), usegmt=True)
    inm = request.headers.get("If-None-Match")
    if inm and etag:
        tags = [t.strip() for t in inm.split(",")]
        if "*" in tags or etag in tags or etag[2:] in tags:
            return not_modified(headers)
    elif modified and request.headers.get("If-Modified-Since"):
        try:
            since = parsedate_to_datetime(request.headers["If-Modified-Since"])
        except (TypeError, ValueError):
            since = None
        if since is not None and modified.replace(microsecond=0) <= since:
            return not_modified(headers)
    return fhir_response(resource, headers=headers)


def not_modified(headers: dict) -> Response:
    resp = Response(status=304)
    for k, v in headers.items():
        resp.headers[k] = v
    return resp
