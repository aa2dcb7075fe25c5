"""The clinician viewer at ``/``: server-rendered pages over the same service layer as the FHIR
API.  ``init_viewer(app, config, gateway)`` attaches it to the gateway's Flask app;
``create_viewer_app(config)`` builds a stand-alone app (tests, or before the API app exists)."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask
from flask_login import LoginManager

from ..accounts import AccountStore, SqliteSessionInterface
from ..accounts.sessions import ABSOLUTE_SECONDS, IDLE_SECONDS
from ..memos import MemoJournal
from .state import LoginUser, ViewerState
from .security import add_headers
from .views import bp
from . import handout  # noqa: F401,E402 - adds the patient-summary pages to bp

log = logging.getLogger(__name__)
__all__ = ["init_app", "init_viewer", "create_viewer_app", "bp", "ViewerState"]


def init_app(app: Flask, gateway) -> ViewerState | None:
    """Hook called by :func:`fhir_gateway.app.create_app` (its EXTENSIONS list)."""
    return init_viewer(app, app.config["FHIR_CONFIG"], gateway)


def init_viewer(app: Flask, config, gateway=None, *, idle_seconds: float | None = None,
                secure_cookies: bool | None = None) -> ViewerState | None:
    """Register the viewer blueprint, server-side sessions and flask-login on ``app``; None when
    the account store cannot be opened (the viewer answers 503, the API keeps serving)."""
    if gateway is None:
        from ..services import Gateway
        gateway = Gateway(config)
    state = app.extensions.get("state")
    if state is None:
        from ..state import open_state
        state = app.extensions["state"] = open_state(config)
    try:
        accounts: AccountStore = state.accounts()
        memos: MemoJournal = state.memos()
    except Exception as exc:  # noqa: BLE001 - a corrupt/unreachable store: fail closed (L2)
        log.error("viewer closed: the account store cannot be opened: %s: %s",
                  type(exc).__name__, exc)
        app.register_blueprint(closed_blueprint(str(type(exc).__name__)))
        try:  # memos live apart from the accounts: the API keeps serving them
            _attach_memos(config, gateway, state.memos())
        except Exception as exc2:  # noqa: BLE001
            log.error("memos not served: %s", exc2)
        return None
    viewer = ViewerState(config, gateway, accounts, memos,
                         cache_seconds=_number(config, "viewer_cache_seconds", 20.0))
    app.extensions["fhir_gateway_viewer"] = viewer
    _attach_memos(config, gateway, memos)
    idle = (idle_seconds or app.config.get("VIEWER_IDLE_SECONDS")
            or _number(config, "viewer_idle_seconds", IDLE_SECONDS))
    import hashlib
    import hmac as _hmac
    pre_secret = _hmac.new(accounts.key, b"pre-login-session", hashlib.sha256).digest()
    app.session_interface = SqliteSessionInterface(accounts.db, idle=idle, absolute=ABSOLUTE_SECONDS,
                                                   secret=pre_secret)
    secure = secure_cookies if secure_cookies is not None else (
        app.config.get("VIEWER_SECURE_COOKIES")
        or bool(config.setting("secure_cookies") if hasattr(config, "setting") else False))
    app.config["SESSION_COOKIE_SECURE"] = bool(secure)
    app.config["SESSION_COOKIE_NAME"] = "__Host-fgw" if secure else "fgw_session"
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config.setdefault("SECRET_KEY", "server-side-sessions-do-not-sign-cookies")
    lm: LoginManager | None = getattr(app, "login_manager", None)
    if lm is None:
        lm = LoginManager()
        lm.init_app(app)
    lm.login_view = "viewer.login"
    lm.session_protection = None  # the server-side session is the protection

    @lm.unauthorized_handler
    def _unauthorized():
        """To the login page; after an idle timeout it remembers the page (a GET under /f/), so
        the clinician returns there after logging in (and giving the 合言葉 again)."""
        from flask import redirect, request, session, url_for
        expired = session.get("_expired")
        nxt = request.full_path.rstrip("?") if request.method == "GET" and request.path.startswith("/f/") else None
        return redirect(url_for("viewer.login", expired=1 if expired else None, next=nxt))

    @lm.user_loader
    def _load(username: str):
        user = accounts.get(username)
        return LoginUser(user) if user and not user.disabled else None

    app.register_blueprint(bp)

    @app.after_request
    def _outside_blueprints(response):
        """Unknown URLs (a browser's typo, a scanner's probe) get the viewer's headers too."""
        from flask import request
        if request.blueprint is None:
            add_headers(response, patient_data=False)
        return response
    return viewer


def _attach_memos(config, gateway, memos) -> None:
    """Memos are part of the patient's record for the FHIR API too (DocumentReference)."""
    for code in config.facilities:
        svc = gateway.facility(code)
        if svc is not None and hasattr(svc, "add_patient_source"):
            svc.add_patient_source(memos.patient_source)
            svc.add_resource_reader(memos.resource_reader)


def closed_blueprint(reason: str):
    """Every viewer URL answers 503 (nothing readable without accounts); the token API, on its
    own store, keeps serving."""
    from flask import Blueprint, render_template_string

    closed = Blueprint("viewer_closed", __name__)

    @closed.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @closed.route("/<path:path>", methods=["GET", "POST"])
    def unavailable(path: str):
        from .i18n import translate
        body = render_template_string(
            "<!doctype html><html lang=ja><meta charset=utf-8><title>503</title>"
            "<p>{{ ja }}</p><p>{{ en }}</p>", ja=translate("viewer_closed", "ja"),
            en=translate("viewer_closed", "en"))
        resp = add_headers(make_response(body, 503))
        resp.headers["Retry-After"] = "60"
        return resp

    from flask import make_response
    return closed


def create_viewer_app(config, gateway=None, **kwargs) -> Flask:
    app = Flask(__name__, static_folder=None,
                template_folder=str(Path(__file__).resolve().parent.parent / "templates"))
    init_viewer(app, config, gateway, **kwargs)
    return app


def _number(config, key: str, default: float) -> float:
    """A numeric setting of the config's option table (flag > env > config > default, see
    fhir_gateway.config.SETTINGS); ``default`` for a bare config object in tests."""
    return config.number(key) if hasattr(config, "number") else default
