"""The Flask application: the FHIR API under ``/fhir/<facility>`` (and later the viewer).

``create_app(config)`` wires the service layer (:class:`fhir_gateway.services.Gateway`), the
paging secret, bearer-token auth and the CapabilityStatement.  Other parts of the project attach
through ``app.extensions["gateway"]`` and the :data:`EXTENSIONS` hook."""

from __future__ import annotations

import copy
import importlib
import logging

from flask import Flask, Request, request
from werkzeug.exceptions import HTTPException

from conformance import registry
from fhir_gateway.auth_tokens import ANONYMOUS, Principal, TokenStore, TokenStoreError
from fhir_gateway.config import Config
from fhir_gateway.paging import Pager, load_secret
from fhir_gateway.services import Gateway
from fhir_gateway.smart import ClientStoreError, SmartAuthority
from fhir_gateway.smart.discovery import security

from .api import blueprint
from .api.errors import FhirError
from .api.views import api_error

log = logging.getLogger(__name__)

# Modules with ``init_app(app, gateway)`` attached when importable (e.g. the viewer).
EXTENSIONS = ["fhir_gateway.viewer", "fhir_gateway.health", "fhir_gateway.summary",
              "fhir_gateway.bulk"]


class GatewayFlask(Flask):
    """Flask, with :meth:`ensure_sync`'s answer remembered per function: Flask asks it for every
    hook and view of every request (``inspect`` flag checks, six per API read), and whether a
    function is a coroutine function does not change."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict = {}

    def ensure_sync(self, func):
        try:
            return self._sync[func]
        except KeyError:
            pass
        except TypeError:  # an unhashable callable: ask every time
            return super().ensure_sync(func)
        sync = super().ensure_sync(func)
        if len(self._sync) > 512:  # e.g. per-request closures (after_this_request): stay bounded
            self._sync.clear()
        self._sync[func] = sync
        return sync


class BearerAuth:
    """Authenticates API requests; the resulting :class:`Principal` goes on ``flask.g``."""

    def __init__(self, store: TokenStore | None, smart=None) -> None:
        self.store = store  # None = --no-auth (loopback only, checked by `serve`)
        self.smart = smart  # SMART Backend Services access tokens (JWTs), beside static tokens

    def authenticate(self, request: Request, facility: str | None) -> Principal:
        if self.store is None:
            return ANONYMOUS
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = 'Bearer realm="fhir-gateway"'
        if scheme.lower() != "bearer" or not token.strip():
            raise FhirError(401, "an Authorization: Bearer <token> header is required", "login",
                            {"WWW-Authenticate": challenge})
        try:
            token = token.strip()
            if self.smart is not None and token.count(".") == 2:
                principal = self.smart.verify(token)
            else:
                principal = self.store.verify(token)
        except (TokenStoreError, ClientStoreError) as exc:  # fail closed, with a reason, never a 500
            log.error("%s", exc)
            raise FhirError(503, "the server cannot read its token store; no token can be "
                            "checked now", "transient") from exc
        if principal is None:
            raise FhirError(401, "the bearer token is not valid", "login",
                            {"WWW-Authenticate": challenge + ', error="invalid_token"'})
        if not principal.may_access(facility or ""):
            raise FhirError(403, f"the token is not valid for facility {facility}", "forbidden")
        return principal


def capability_for(config: Config):
    """CapabilityStatement per facility (cached): the registry's statement + the base URL."""
    cache: dict[str, dict] = {}

    def build(code: str) -> dict:
        from flask import request
        base = f"{request.host_url.rstrip('/')}/fhir/{code}"
        if base not in cache:
            cs = copy.deepcopy(registry().published)
            fac = config.facilities.get(code)
            cs["implementation"] = {"description": f"{fac.name if fac else code} "
                                    "(SS-MIX2 standardized storage)", "url": base}
            cs["rest"][0]["security"] = security(base, bool(fac and fac.cors_origins))
            if len(cache) > 64:
                cache.clear()
            cache[base] = cs
        return cache[base]

    return build


def create_app(config: Config, *, auth: bool = True, cache_bytes: int | None = None,
               govern: bool = False) -> Flask:
    """The app; ``govern`` (one app per process: ``serve``'s workers) makes ``cache_bytes`` the
    bound of the whole process's growth above its size once built (``MappedCache.govern``)."""
    app = GatewayFlask(__name__)
    app.config["JSON_AS_ASCII"] = False
    app.config["FHIR_CONFIG"] = config
    gateway = Gateway(config, cache_bytes)
    app.extensions["gateway"] = gateway
    secret = load_secret(config.data_dir)
    app.extensions["fhir_pager"] = Pager(secret)
    for svc in gateway.facilities.values():  # one process builds it (a file lock), in a thread
        svc.claims.start_background_build()
    from fhir_gateway.state import open_state
    state = open_state(config)  # accounts, sessions, tokens, audit, memos (config [state])
    app.extensions["state"] = state
    store = state.tokens() if auth else None
    if store is not None:
        store.validate()  # a corrupt token file stops `serve` at start-up with its reason
    smart = SmartAuthority(config.data_dir, secret, state.smart_clients(), state.smart_jti())
    app.extensions["smart"] = smart
    app.extensions["fhir_auth"] = BearerAuth(store, smart)
    app.extensions["capability"] = capability_for(config)
    app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, api_error)
    from fhir_gateway.state import StateUnavailable
    from werkzeug.exceptions import ServiceUnavailable

    def state_down(exc: StateUnavailable):
        log.error("%s", exc)
        return api_error(ServiceUnavailable(f"{exc}; try again shortly"))
    app.register_error_handler(StateUnavailable, state_down)
    from .limits import MAX_BODY, Pool, RequestLimits
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    # before Flask, auth and any search work; heavy slots shared by all worker processes
    slots = config.integer("heavy_slots") if hasattr(config, "integer") else None
    # Flask's documented middleware pattern; its stubs declare wsgi_app a method
    app.wsgi_app = RequestLimits(app.wsgi_app, Pool(  # type: ignore[method-assign]
        lock_dir=config.data_dir / "run", **({"slots": slots} if slots else {})))
    from .hosts import PublicHost
    app.wsgi_app = PublicHost(app.wsgi_app,  # type: ignore[method-assign]
                              getattr(config, "public_url", ""), getattr(config, "trusted_hosts", ()))
    if hasattr(config, "setting") and config.setting("trusted_proxies"):
        from .proxies import ClientAddress  # outermost: the limits key on the real client
        app.wsgi_app = ClientAddress(  # type: ignore[method-assign]
            app.wsgi_app, str(config.setting("trusted_proxies")),
            str(config.setting("forwarded_header")))
        app.config["FHIR_TRUSTED_PROXIES"] = True  # serving.py keeps the headers for it

    @app.after_request
    def _no_store(resp):
        """API answers carry patient data: no shared or browser cache keeps them (L2)."""
        path = request.path
        if path.startswith("/fhir/") or path == "/health":
            resp.headers["Cache-Control"] = "no-store"
        return resp

    for name in EXTENSIONS:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        init = getattr(mod, "init_app", None)
        if init is not None:
            init(app, gateway)
    if govern:
        gateway.cache.govern(gateway.cache.max_bytes)
    return app
