"""HTTP routes of the FHIR API.  Views only validate the request shape and call a provider."""

from __future__ import annotations

import gzip
import re

from flask import Blueprint, Request, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from conformance import registry
from mappers.ids import FHIR_ID
from fhir_gateway.services import FacilityService, ServiceError
from fhir_gateway.smart import OAuthError, scopes
from fhir_gateway.smart.discovery import smart_config

from . import bundle, cors
from . import system_search as system_search_mod
from .errors import FhirError, outcome, problem_outcome
from .providers import PatientProvider, providers
from .respond import fhir_response, negotiate, resource_response
from .subset import elements, summarize

blueprint = Blueprint("fhir", __name__, url_prefix="/fhir/<facility>")
_PROVIDERS = providers()
WRITE_METHODS = ["POST", "PUT", "PATCH", "DELETE"]
# Answered without a token: discovery documents (and the token endpoint, which authenticates
# the client by its signed assertion instead).
PUBLIC_ENDPOINTS = {"fhir.metadata", "fhir.smart_configuration", "fhir.token"}


# -- request pipeline ------------------------------------------------------------------------------
@blueprint.url_value_preprocessor
def _pull_facility(endpoint, values):
    g.facility_code = values.pop("facility", None) if values else None


@blueprint.before_request
def _before() -> Response | None:
    # the objects behind the proxies, looked up once (this runs on every API request)
    req, ctx = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
    code = ctx.facility_code
    if req.method == "OPTIONS":  # CORS preflight / Allow discovery: no token needed
        return options_response(code or "")
    endpoint = req.endpoint
    if endpoint == "fhir.export_file":
        ctx.media_type, ctx.pretty = "application/fhir+json", False  # ndjson body; errors as JSON
    else:
        negotiate(req)
    ext = current_app.extensions
    svc = ext["gateway"].facility(code or "")
    args = req.view_args or {}
    if endpoint not in PUBLIC_ENDPOINTS:
        ctx.principal = ext["fhir_auth"].authenticate(req, code)
        _enforce_scopes(ctx.principal, endpoint, args)
    if svc is None:
        raise FhirError(404, f"unknown facility {code!r}", "not-found")
    _check_ids(args)
    ctx.svc = svc
    return None


def _check_ids(args: dict) -> None:
    """Ids and version ids in the path must be FHIR ids (1-64 of ``A-Za-z0-9-.``) before any
    source sees them: 404 for ``..\\etc``, NUL bytes, undecodable bytes, 200-character ids
    (and ``.``/``..``, which the syntax allows but no source can own)."""
    for key in ("rid", "pid", "vid"):
        value = args.get(key)
        if value is not None and (not FHIR_ID.match(value) or not value.strip(".")):
            shown = value if len(value) <= 70 else value[:67] + "..."
            raise FhirError(404, f"{shown!r} is not a FHIR id (1-64 characters of A-Z a-z 0-9 "
                            "- and .), so no resource has it", "not-found")


# endpoint -> the SMART permission it needs on the resource type it names
_NEEDS = {"fhir.search": "s", "fhir.search_post": "s", "fhir.compartment": "s",
          "fhir.read": "r", "fhir.vread": "r", "fhir.history": "r", "fhir.everything": "r"}


def _enforce_scopes(principal, endpoint: str | None, args: dict) -> None:
    """403 unless a granted scope covers the type and interaction (``r`` read/vread/history,
    ``s`` search).  Static tokens carry ``system/*.read``."""
    perm = _NEEDS.get(endpoint or "")
    rtype = "Patient" if endpoint == "fhir.everything" else args.get("rtype")
    if perm and rtype and not scopes.allows(principal.scopes, rtype, perm):
        raise FhirError(403, f"the access token's scopes ({' '.join(principal.scopes)}) do not "
                        f"allow {'search' if perm == 's' else 'read'} of {rtype}", "forbidden")


def _scoped(b: dict) -> dict:
    """Drop Bundle entries (includes, $everything) of types the token may not read."""
    principal = getattr(g, "principal", None)
    if principal is None or "entry" not in b:
        return b
    keep = []
    for e in b["entry"]:
        rt = e.get("resource", {}).get("resourceType", "")
        if e.get("search", {}).get("mode") == "outcome" or scopes.allows(principal.scopes, rt, "r") \
                or scopes.allows(principal.scopes, rt, "s"):
            keep.append(e)
    b["entry"] = keep
    return b


@blueprint.after_request
def _after(resp: Response) -> Response:
    req, ctx = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
    svc: FacilityService | None = getattr(ctx, "svc", None)
    if svc is not None:
        storage_headers(resp, svc)
    cors.add_headers(resp, ctx.facility_code or "", req)
    return compress(resp, req)


def allowed_methods(path: str) -> list[str]:
    """What this read-only server really answers on ``path`` (the truthful ``Allow``)."""
    methods = ["GET", "HEAD", "OPTIONS"]
    tail = path.rstrip("/").rsplit("/", 1)[-1]
    if tail in ("_search", "token"):
        methods = ["POST", "OPTIONS"]
    elif tail == "$export":
        methods = ["GET", "HEAD", "POST", "OPTIONS"]  # POST: a Parameters body (Bulk Data 2.0)
    elif "/$export-status/" in path:
        methods = ["GET", "HEAD", "DELETE", "OPTIONS"]
    return methods


def options_response(facility: str) -> Response:
    resp = Response(status=204)
    resp.headers["Allow"] = ", ".join(allowed_methods(request.path))
    cors.preflight(resp, facility, allowed_methods(request.path))
    return resp


def storage_headers(resp: Response, svc: FacilityService) -> None:
    """The one place that reports which storage root served the request (failover visibility)."""
    status = svc.storage_status(full=False)
    resp.headers["X-Storage-Root"] = "primary" if status["active"] == 0 else \
        f"mirror-{status['active']}"
    if status["failed_over"]:
        resp.headers["X-Storage-Failover"] = "true"


def compress(resp: Response, req: Request | None = None) -> Response:
    accept = (req if req is not None else request).environ.get("HTTP_ACCEPT_ENCODING", "")
    if ("gzip" not in accept.lower() or resp.status_code < 200 or resp.status_code == 304
            or resp.direct_passthrough or resp.headers.get("Content-Encoding")):
        return resp
    data = resp.get_data()
    if len(data) < 512:
        return resp
    resp.set_data(gzip.compress(data, compresslevel=5))
    resp.headers["Content-Encoding"] = "gzip"
    resp.headers["Content-Length"] = str(len(resp.get_data()))
    return resp


@blueprint.errorhandler(FhirError)
def _fhir_error(exc: FhirError):
    return fhir_response(outcome(exc.diagnostics, exc.code, exc.severity), exc.status, exc.headers)


@blueprint.errorhandler(ServiceError)
def _service_error(exc: ServiceError):
    """Every service error carries its status and issue code (file problems when it has any)."""
    body = problem_outcome(exc.problems) if exc.problems else outcome(str(exc), exc.code)
    return fhir_response(body, exc.status)


# -- helpers ---------------------------------------------------------------------------------------
def _provider(rtype: str):
    p = _PROVIDERS.get(rtype)
    if p is None:
        raise FhirError(404, f"unknown resource type {rtype!r} (see /metadata)", "not-supported")
    return p


def _lenient() -> bool:
    prefer = request.headers.get("Prefer", "")
    return any(p.strip().replace(" ", "") == "handling=lenient" for p in prefer.split(";")
               + prefer.split(","))


def _base() -> str:
    return bundle.base_url(g.facility_code)


def _pager():
    return current_app.extensions["fhir_pager"]


# -- routes ----------------------------------------------------------------------------------------
@blueprint.get("/metadata")
def metadata():
    return fhir_response(current_app.extensions["capability"](g.facility_code))


@blueprint.get("/<rtype>")
def search(rtype: str):
    p = _provider(rtype)
    items = list(request.args.items(multi=True))
    return fhir_response(_scoped(p.search(g.svc, _pager(), _base(), items, _lenient())))


@blueprint.post("/<rtype>/_search")
def search_post(rtype: str):
    p = _provider(rtype)
    if request.mimetype != "application/x-www-form-urlencoded":
        raise FhirError(415, "POST _search takes application/x-www-form-urlencoded", "not-supported")
    items = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
    return fhir_response(_scoped(p.search(g.svc, _pager(), _base(), items, _lenient())))


# The Patient read is the API's hottest request: its own rule lets the router match it on the
# static "Patient" branch instead of backtracking from the $everything/compartment rules to the
# generic one (same view, same endpoint, same answer).
@blueprint.get("/Patient/<rid>", defaults={"rtype": "Patient"})
@blueprint.get("/<rtype>/<rid>")
def read(rtype: str, rid: str):
    req = request._get_current_object()  # type: ignore[attr-defined]
    shape = _read_shape(req)
    return resource_response(shape(_provider(rtype).read(g.svc, rid)), req)


@blueprint.get("/<rtype>/<rid>/_history")
def history(rtype: str, rid: str):
    return fhir_response(bundle.history(_base(), _provider(rtype).history(g.svc, rid)))


@blueprint.get("/<rtype>/<rid>/_history/<vid>")
def vread(rtype: str, rid: str, vid: str):
    shape = _read_shape()
    return resource_response(shape(_provider(rtype).vread(g.svc, rid, vid)))


READ_PARAMS = {"_summary", "_elements", "_format", "_pretty"}


def _unchanged(resource: dict) -> dict:
    return resource


def _read_shape(req: Request | None = None):
    """``_summary`` / ``_elements`` on read and vread (validated like on search; ``count`` is
    a search-only mode).  Returns the function that shapes the resource."""
    args = (req if req is not None else request).args
    if not args:  # the common read: no parameters
        return _unchanged
    unknown = [k for k in args if k not in READ_PARAMS]
    if unknown and not _lenient():
        raise FhirError(400, f"unknown parameter(s) on read: {', '.join(unknown)} "
                        "(_summary, _elements, _format, _pretty)", "invalid")
    mode = args.get("_summary")
    if mode is not None and mode not in ("true", "false", "text", "data"):
        raise FhirError(400, "_summary on read must be true, false, text or data", "invalid")
    names = [e.strip() for e in args.get("_elements", "").split(",") if e.strip()]
    if names and not all(re.match(r"^[A-Za-z][A-Za-z0-9_]*$", e) for e in names):
        raise FhirError(400, "_elements lists element names", "invalid")
    if mode is not None and names:
        raise FhirError(400, "_summary and _elements cannot be combined", "invalid")
    return lambda r: elements(r, names) if names else summarize(r, mode)


@blueprint.get("/Patient/<pid>/<rtype>")
def compartment(pid: str, rtype: str):
    """Compartment search ``Patient/{id}/{type}`` = ``{type}?patient={id}`` (R4 3.1.0.6)."""
    if rtype == "_history":
        return history("Patient", pid)
    p = _provider(rtype)
    if rtype == "Patient" or "patient" not in p.rdef.params:
        raise FhirError(404, f"{rtype} is not in the Patient compartment here", "not-supported")
    if not g.svc.patient_exists(pid):
        raise FhirError(404, f"Patient/{pid} not found", "not-found")
    items = [("patient", f"Patient/{pid}")] + [
        (k, v) for k, v in request.args.items(multi=True) if k not in ("patient", "subject")]
    return fhir_response(_scoped(p.search(g.svc, _pager(), _base(), items, _lenient())))


# -- SMART Backend Services ------------------------------------------------------------------------
def token_url() -> str:
    return f"{_base()}/auth/token"


@blueprint.get("/.well-known/smart-configuration")
def smart_configuration():
    """SMART discovery (public): where the token endpoint is and what it accepts."""
    return jsonify(smart_config(_base()))


@blueprint.post("/auth/token")
def token():
    """``client_credentials`` with a signed JWT assertion -> a short-lived access token."""
    smart = current_app.extensions["smart"]
    try:
        body = smart.issue(g.facility_code or "", token_url(), request.form.to_dict())
    except OAuthError as exc:
        resp = jsonify({"error": exc.error, "error_description": exc.description})
        resp.status_code = exc.status
    else:
        resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


@blueprint.get("/Patient/<pid>/$everything")
def everything(pid: str):
    p = _PROVIDERS["Patient"]
    assert isinstance(p, PatientProvider)  # providers() gives Patient its own class
    items = list(request.args.items(multi=True))
    return fhir_response(_scoped(p.everything(g.svc, _pager(), _base(), pid, items,
                                              _lenient())))


@blueprint.get("")
@blueprint.get("/")
def system_search():
    """``GET [base]?_type=A,B&…``: one search across the listed types (system_search.py);
    without ``_type`` (the bare base URL too) a 400 saying so."""
    principal = getattr(g, "principal", None)

    def may_search(rtype: str) -> None:
        if principal is not None and not scopes.allows(principal.scopes, rtype, "s"):
            raise FhirError(403, f"the access token's scopes ({' '.join(principal.scopes)}) "
                            f"do not allow search of {rtype}", "forbidden")

    items = list(request.args.items(multi=True))
    return fhir_response(_scoped(system_search_mod.search(
        _PROVIDERS, g.svc, _pager(), _base(), items, _lenient(), may_search)))


@blueprint.get("/<rtype>/<rid>/<path:rest>")
def unknown_path(rtype: str, rid: str, rest: str):
    raise FhirError(404, f"no such interaction: {rtype}/{rid}/{rest}", "not-found")


@blueprint.route("/", methods=WRITE_METHODS)
@blueprint.route("/<rtype>", methods=WRITE_METHODS)
@blueprint.route("/<rtype>/<rid>", methods=WRITE_METHODS)
@blueprint.route("/<rtype>/<rid>/<path:rest>", methods=WRITE_METHODS)
def write(**_):
    raise FhirError(405, "this server is a read-only facade over SS-MIX2 storage",
                    "not-supported", {"Allow": ", ".join(allowed_methods(request.path))})


def api_error(exc: HTTPException):
    """Routing errors under /fhir answer as OperationOutcome too."""
    if not request.path.startswith("/fhir/"):
        return exc
    try:
        negotiate()
    except FhirError:
        pass
    code = {404: "not-found", 405: "not-supported"}.get(exc.code or 500, "processing")
    return fhir_response(outcome(exc.description or exc.name, code), exc.code or 500)


_ = registry
