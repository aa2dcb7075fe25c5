"""Patient summary operations on the FHIR blueprint: ``$summary`` (IPS) and ``$jp-clins``.

Registered on the same blueprint as the REST views, so authentication, facility lookup, format
negotiation and error handling are the API's own."""

from __future__ import annotations

from flask import g, request

from fhir_gateway.summary import clins, service

from . import bundle
from .errors import FhirError
from .respond import fhir_response
from .views import blueprint

_CLINS_PARAMS = {"type", "days", "max-bytes", "_format", "_pretty"}
_SUMMARY_PARAMS = {"_format", "_pretty", "profile", "identifier"}


def _reject_unknown(allowed: set[str]) -> None:
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        raise FhirError(400, f"unknown parameter(s) for this operation: {', '.join(unknown)}",
                        "not-supported")


@blueprint.route("/Patient/<pid>/$summary", methods=["GET", "POST"])
def patient_summary(pid: str):
    """IPS document for one patient (the IPS ``$summary`` operation, instance level)."""
    _reject_unknown(_SUMMARY_PARAMS)
    return fhir_response(service.ips_document(g.svc, pid, bundle.base_url(g.facility_code)))


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise FhirError(400, f"{name} must be a whole number from {lo} to {hi}", "invalid")
    return int(raw)


@blueprint.get("/Patient/<pid>/$jp-clins")
def patient_clins(pid: str):
    """The JP-CLINS 5情報 + 処方 Bundles of one patient, inside one collection Bundle."""
    _reject_unknown(_CLINS_PARAMS)
    types = tuple(t for v in request.args.getlist("type") for t in v.split(",") if t)
    bad = [t for t in types if t not in clins.TYPES]
    if bad:
        raise FhirError(400, f"type must be one of {', '.join(clins.TYPES)} (got {bad[0]!r})",
                        "invalid")
    return fhir_response(service.clins_bundles(
        g.svc, pid, types=types or clins.TYPES,
        days=_int_arg("days", clins.DEFAULT_DAYS, 1, 36500),
        max_bytes=_int_arg("max-bytes", clins.DEFAULT_MAX_BYTES, 10_000, 100_000_000)))
