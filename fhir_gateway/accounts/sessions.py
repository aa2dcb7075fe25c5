"""Server-side sessions for Flask: the cookie carries only a random id; the data lives in sqlite.

Flask's default session is a signed cookie the server cannot revoke (ASVS 3.3.1).  Here logout,
a password change or disabling an account deletes the row, and the cookie becomes worthless.
Idle timeout and an absolute lifetime are enforced on every request.  Only the SHA-256 of the id
is stored, so a copy of the database does not hand out live sessions.

Before login there is no row at all (issue 13 L2: every anonymous ``GET /login`` used to store
one): the little an anonymous visitor has (the CSRF token, the language) travels in a signed,
HttpOnly ``<name>_pre`` cookie that expires with the idle timeout.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from flask import request as _request
from flask.sessions import SessionInterface, SessionMixin
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.datastructures import CallbackDict

from .db import Database

IDLE_SECONDS = 30 * 60
ABSOLUTE_SECONDS = 12 * 3600


def request_has(cookie: str) -> bool:
    return cookie in _request.cookies


def sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode("ascii", "replace")).hexdigest()


class ServerSession(CallbackDict, SessionMixin):
    def __init__(self, initial=None, sid: str | None = None, new: bool = False,
                 created: float | None = None) -> None:
        def on_update(self):
            self.modified = True
        super().__init__(initial or {}, on_update)
        self.sid = sid
        self.new = new
        self.created = created or time.time()
        self.modified = False
        self.rotate = False  # set by regenerate(): new id at login (ASVS 3.2.1)

    def regenerate(self) -> None:
        self.rotate = True
        self.modified = True

    @property
    def sid_short(self) -> str:
        return sid_hash(self.sid)[:16] if self.sid else ""


class SqliteSessionInterface(SessionInterface):
    def __init__(self, db: Database, idle: float = IDLE_SECONDS,
                 absolute: float = ABSOLUTE_SECONDS, secret: bytes | None = None) -> None:
        self.db = db
        self.idle = idle
        self.absolute = absolute
        self._last_purge = 0.0
        self.signer = URLSafeTimedSerializer(secret or secrets.token_bytes(32),
                                             salt="fhir-gateway-pre-login")

    def _pre_name(self, app) -> str:
        return self.get_cookie_name(app) + "_pre"

    def _open_pre(self, app, request) -> ServerSession:
        raw = request.cookies.get(self._pre_name(app))
        data = {}
        if raw and len(raw) < 2000:
            try:
                loaded = self.signer.loads(raw, max_age=int(self.idle))
                data = loaded if isinstance(loaded, dict) else {}
            except BadSignature:
                data = {}
        s = ServerSession(data, sid=None, new=True)
        return s

    def _purge(self, now: float) -> None:
        if now - self._last_purge > 300:
            self._last_purge = now
            self.db.write("DELETE FROM sessions WHERE last_seen < ? OR created < ?",
                          (now - self.idle, now - self.absolute))

    def open_session(self, app, request):
        if request.path.startswith("/fhir/"):
            # the FHIR API authenticates each request by its bearer token and never reads the
            # session: no cookie parsing, no database row (a sixth of a Patient read's CPU)
            return self.make_null_session(app)
        from fhir_gateway.state_errors import StateUnavailable
        try:
            return self._open(app, request)
        except StateUnavailable:  # shared state down: anonymous now; a login answers 503
            s = ServerSession(sid=None, new=True)
            s.unavailable = True
            return s

    def _open(self, app, request):
        now = time.time()
        self._purge(now)
        sid = request.cookies.get(self.get_cookie_name(app))
        if sid and len(sid) < 200:
            row = self.db.execute("SELECT data, created, last_seen FROM sessions WHERE sid_hash = ?",
                                  (sid_hash(sid),)).fetchone()
            if row is not None:
                if now - row["last_seen"] > self.idle or now - row["created"] > self.absolute:
                    self.db.write("DELETE FROM sessions WHERE sid_hash = ?", (sid_hash(sid),))
                    s = ServerSession(sid=None, new=True)
                    s["_expired"] = True
                    return s
                try:
                    data = json.loads(row["data"])
                except ValueError:
                    data = {}
                s = ServerSession(data, sid=sid, created=row["created"])
                s.touched = now - row["last_seen"] > 15  # refresh last_seen at most every 15 s
                return s
        return self._open_pre(app, request)

    def save_session(self, app, session: SessionMixin, response):
        if not isinstance(session, ServerSession):  # open_session only makes these
            return
        if getattr(session, "unavailable", False):
            return  # never overwrite the stored session (or clear the cookie) while state is down
        from fhir_gateway.state_errors import StateUnavailable
        try:
            self._save(app, session, response)
        except StateUnavailable:
            pass  # the response itself says 503 (the view could not read or write state either)

    def _save(self, app, session: ServerSession, response):
        name = self.get_cookie_name(app)
        kwargs = {"domain": self.get_cookie_domain(app), "path": self.get_cookie_path(app),
                  "secure": self.get_cookie_secure(app), "httponly": True,
                  "samesite": self.get_cookie_samesite(app) or "Lax"}
        now = time.time()
        session.pop("_expired", None)
        pre = self._pre_name(app)
        if not session or "_user_id" not in session:
            if session.sid:
                self.db.write("DELETE FROM sessions WHERE sid_hash = ?", (sid_hash(session.sid),))
                response.delete_cookie(name, domain=kwargs["domain"], path=kwargs["path"])
                session.sid = None
            if session and session.modified:  # anonymous: a signed cookie, no database row
                response.set_cookie(pre, self.signer.dumps(dict(session)), max_age=int(self.idle),
                                    **kwargs)
            elif not session and request_has(pre):
                response.delete_cookie(pre, domain=kwargs["domain"], path=kwargs["path"])
            response.vary.add("Cookie")
            return
        if request_has(pre):
            response.delete_cookie(pre, domain=kwargs["domain"], path=kwargs["path"])
        if session.rotate and session.sid:
            self.db.write("DELETE FROM sessions WHERE sid_hash = ?", (sid_hash(session.sid),))
            session.sid = None
        if session.sid is None:
            session.sid = secrets.token_urlsafe(32)
            session.created = now
            session.modified = True
        if session.modified:
            self.db.write(
                "INSERT OR REPLACE INTO sessions (sid_hash, data, created, last_seen, username)"
                " VALUES (?, ?, ?, ?, ?)",
                (sid_hash(session.sid), json.dumps(dict(session), ensure_ascii=False),
                 session.created, now, session.get("_user_id")))
            response.set_cookie(name, session.sid, **kwargs)
        elif getattr(session, "touched", False):
            self.db.write("UPDATE sessions SET last_seen = ? WHERE sid_hash = ?",
                          (now, sid_hash(session.sid)))
        response.vary.add("Cookie")
