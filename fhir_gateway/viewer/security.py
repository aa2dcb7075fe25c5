"""Browser hardening for the viewer: CSRF tokens on every form and the security headers.

CSP forbids inline script and inline style, so templates use classes, external /static files and
SVG presentation attributes only (ASVS 14.4; docs/viewer.md)."""

from __future__ import annotations

import hmac
import secrets

from flask import abort, request, session

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")


def csrf_token() -> str:
    tok = session.get("_csrf")
    if not tok:
        tok = session["_csrf"] = secrets.token_urlsafe(32)
    return tok


def check_csrf() -> None:
    """Abort 400 unless a POST carries the session's token (before any state change)."""
    if request.method != "POST":
        return
    sent = request.form.get("csrf_token", "")
    expected = session.get("_csrf", "")
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        abort(400, description="csrf")


def add_headers(response, *, patient_data: bool = True):
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if request.is_secure:
        h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if patient_data:
        h["Cache-Control"] = "no-store"
        h["Pragma"] = "no-cache"
    return response
