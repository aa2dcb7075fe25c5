"""Bulk Data Access (IG v2.0): ``$export`` kick-off at system, Patient and Group level, the
status endpoint (poll / cancel) and the output files.  The work runs in
:mod:`fhir_gateway.bulk`; these views only check the request and the caller."""

from __future__ import annotations

import zlib

from flask import Response, current_app, g, jsonify, request

from conformance import registry
from fhir_gateway.bulk.export import Spec, SpecError
from fhir_gateway.bulk.manager import TooManyJobs
from fhir_gateway.smart import scopes

from . import bundle
from .errors import FhirError
from .views import _lenient, blueprint

KICKOFF_PARAMS = {"_type", "_since", "_until", "_typeFilter", "_elements", "_outputFormat"}
NDJSON = ("application/fhir+ndjson", "application/ndjson", "ndjson")
STU_ONLY = {"patient", "includeAssociatedData", "organizeOutputBy", "allowPartialManifests"}


def _bulk():
    return current_app.extensions["bulk"]


def _owner() -> str:
    p = g.principal
    return "anonymous" if p.anonymous else f"{p.name}:{p.token_id}"


def _base() -> str:
    return bundle.base_url(g.facility_code)


# value[x] of a kick-off Parameters entry that carries a string (a Reference means ``patient``)
VALUE_KEYS = ("valueString", "valueInstant", "valueDateTime", "valueDate", "valueCode",
              "valueUri", "valueCanonical")


def _posted_params() -> list[tuple[str, str]]:
    """The (name, value) pairs of a POST kick-off's ``Parameters`` body (Bulk Data IG 2.0);
    400 for anything else."""
    if request.mimetype not in ("application/fhir+json", "application/json"):
        raise FhirError(415, "POST $export takes a FHIR Parameters resource "
                        "(application/fhir+json)", "not-supported")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError(400, "POST $export takes a FHIR Parameters resource", "invalid")
    out = []
    for p in body.get("parameter") or []:
        name = p.get("name") if isinstance(p, dict) else None
        if not isinstance(name, str) or not name:
            raise FhirError(400, "every Parameters.parameter needs a name", "invalid")
        values = [p[k] for k in VALUE_KEYS if k in p]
        if name in STU_ONLY or "valueReference" in p:
            raise FhirError(400, f"$export parameter {name!r} is not supported "
                            f"({', '.join(sorted(KICKOFF_PARAMS))})", "not-supported")
        if len(values) != 1 or not isinstance(values[0], str):
            raise FhirError(400, f"Parameters.parameter {name!r} needs one value "
                            "(valueString, valueInstant, …)", "invalid")
        out.append((name, values[0]))
    return out


def _kick_off(level: str, group: str | None = None):
    if "respond-async" not in request.headers.get("Prefer", ""):
        raise FhirError(400, "$export runs asynchronously: send Prefer: respond-async", "invalid")
    params: dict[str, list[str]] = {}
    items = list(request.args.items(multi=True))
    if request.method == "POST":
        items += _posted_params()
    for k, v in items:
        if k in KICKOFF_PARAMS:
            params.setdefault(k, []).append(v)
        elif k in ("_format", "_pretty"):
            continue
        elif k in STU_ONLY or not _lenient():
            raise FhirError(400, f"$export parameter {k!r} is not supported "
                            f"({', '.join(sorted(KICKOFF_PARAMS))})", "not-supported")
    fmt = params.pop("_outputFormat", [NDJSON[0]])
    if any(f not in NDJSON for f in fmt):
        raise FhirError(400, "_outputFormat must be application/fhir+ndjson", "not-supported")
    try:
        spec = Spec.parse(params)
    except SpecError as exc:
        raise FhirError(400, str(exc), "invalid") from None
    readable = {t for t in registry().resources if scopes.allows(g.principal.scopes, t, "r")
                or scopes.allows(g.principal.scopes, t, "s")}
    if spec.types is not None:
        denied = sorted(spec.types - readable)
        if denied:
            raise FhirError(403, f"the token's scopes do not allow {', '.join(denied)}",
                            "forbidden")
    elif readable != set(registry().resources):
        if not readable:
            raise FhirError(403, "the token's scopes allow no resource type", "forbidden")
        params["_type"] = [",".join(sorted(readable))]  # export only what the token may read
    if level == "group" and _bulk().groups.get(g.facility_code, group) is None:
        raise FhirError(404, f"Group/{group} not found", "not-found")
    try:
        job = _bulk().kick_off(g.facility_code, _owner(), level, params, request.url, group)
    except TooManyJobs as exc:
        raise FhirError(429, str(exc), "throttled", {"Retry-After": "30"}) from None
    resp = Response(status=202)
    resp.headers["Content-Location"] = f"{_base()}/$export-status/{job['id']}"
    return resp


@blueprint.route("/$export", methods=["GET", "POST"])
def export_system():
    return _kick_off("system")


@blueprint.route("/Patient/$export", methods=["GET", "POST"])
def export_patients():
    return _kick_off("patient")


@blueprint.route("/Group/<gid>/$export", methods=["GET", "POST"])
def export_group(gid: str):
    return _kick_off("group", gid)


def _job(jid: str) -> dict:
    job = _bulk().get(jid, _owner())
    if job is None:
        raise FhirError(404, f"no export {jid} (finished long ago, cancelled, or not yours)",
                        "not-found")
    return job


@blueprint.get("/$export-status/<jid>")
def export_status(jid: str):
    job = _job(jid)
    status = job["status"]
    if status in ("queued", "running"):
        resp = Response(status=202)
        total, done = job.get("total") or 0, job.get("done") or 0
        pct = int(100 * done / total) if total else 0
        resp.headers["X-Progress"] = f"{status}: {pct}% ({done}/{total} patients)"
        resp.headers["Retry-After"] = "2"
        return resp
    if status == "failed":
        raise FhirError(500, job.get("message") or "the export failed", "exception")
    base = f"{_base()}/$export-file/{jid}"
    manifest = {
        "transactionTime": job["transactionTime"],
        "request": job["request"],
        "requiresAccessToken": True,
        "output": [{"type": f["type"], "url": f"{base}/{f['name']}", "count": f["count"]}
                   for f in job["output"]],
        "error": [{"type": "OperationOutcome", "url": f"{base}/errors/{f['name']}",
                   "count": f["count"]} for f in job["error"]],
    }
    resp = jsonify(manifest)
    keep = current_app.extensions["bulk"].settings.keep_hours * 3600
    from email.utils import formatdate
    resp.headers["Expires"] = formatdate(job["finished"] + keep, usegmt=True)
    return resp


@blueprint.delete("/$export-status/<jid>")
def export_cancel(jid: str):
    if not _bulk().cancel(jid, _owner()):
        raise FhirError(404, f"no export {jid} to cancel", "not-found")
    return Response(status=202)


@blueprint.get("/$export-file/<jid>/<path:name>")
def export_file(jid: str, name: str):
    job = _job(jid)
    path = _bulk().file_path(job, name)
    if path is None or not path.is_file():
        raise FhirError(404, f"no file {name} in export {jid}", "not-found")
    size = path.stat().st_size
    gz = "gzip" in request.headers.get("Accept-Encoding", "").lower()

    def stream():
        comp = zlib.compressobj(6, zlib.DEFLATED, 31) if gz else None
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                yield comp.compress(chunk) if comp else chunk
        if comp:
            yield comp.flush()

    resp = Response(stream(), content_type="application/fhir+ndjson")
    if gz:
        resp.headers["Content-Encoding"] = "gzip"
    else:
        resp.headers["Content-Length"] = str(size)
    resp.direct_passthrough = True
    return resp
