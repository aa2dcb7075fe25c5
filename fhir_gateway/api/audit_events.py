"""``GET /fhir/{facility}/AuditEvent``: the audit trail as IHE BALP-shaped AuditEvents.

For hospital admins (and their auditors): only a token created with ``fhir-gateway token create
--audit`` carries the ``system/AuditEvent.read`` scope, and only for its own facility (the
blueprint's facility check).  The ordinary ``system/*.read`` of a data token does not include it:
who looked at which patient is itself personal data.  Search: ``date`` (with ge/gt/le/lt/eq
prefixes), ``agent`` (account name), ``patient`` (id or ``Patient/id``), ``action`` (the
gateway's action name, e.g. ``patient-view``), ``_count`` (≤ 1000, newest first) and the opaque
``_before`` of the ``next`` link.  Read-only: AuditEvents are written by the gateway itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from flask import current_app, g, request

from conformance import registry

from .bundle import base_url, searchset
from .errors import FhirError
from .respond import fhir_response
from .views import blueprint

AUDIT_SCOPE = "system/AuditEvent.read"
JST = timezone(timedelta(hours=9))
ACCOUNT = "urn:fhir-gateway:account"
# The declared search parameters (capability_statement.json) + paging and format.
PARAMS = set(registry().restricted["AuditEvent"].params) | {"_count", "_before", "_format",
                                                            "_pretty"}
DCM = "http://dicom.nema.org/resources/ontology/DCM"
REST = "http://hl7.org/fhir/restful-interaction"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"

# gateway action -> (type, subtype, FHIR action code, BALP profile)
_KINDS = {
    "login": ((DCM, "110114", "User Authentication"), (DCM, "110122", "Login"), "E", "IHE.BasicAudit.Login"),
    "login-failed": ((DCM, "110114", "User Authentication"), (DCM, "110122", "Login"), "E", "IHE.BasicAudit.Login"),
    "logout": ((DCM, "110114", "User Authentication"), (DCM, "110123", "Logout"), "E", "IHE.BasicAudit.Logout"),
    "logout-forced": ((DCM, "110114", "User Authentication"), (DCM, "110123", "Logout"), "E", "IHE.BasicAudit.Logout"),
    "patient-view": ((REST, "rest", "RESTful Operation"), (REST, "read", "read"), "R", "IHE.BasicAudit.PatientRead"),
    "patient-print": ((REST, "rest", "RESTful Operation"), (REST, "read", "read"), "R", "IHE.BasicAudit.PatientRead"),
    "patient-search": ((REST, "rest", "RESTful Operation"), (REST, "search-type", "search"), "E", "IHE.BasicAudit.PatientQuery"),
    "memo-create": ((REST, "rest", "RESTful Operation"), (REST, "create", "create"), "C", "IHE.BasicAudit.PatientCreate"),
}
_OTHER = ((DCM, "110113", "Security Alert"), None, "E", None)


def _principal_may_audit() -> None:
    principal = getattr(g, "principal", None)
    if principal is None or AUDIT_SCOPE not in getattr(principal, "scopes", ()):
        raise FhirError(403, "AuditEvent needs a token with the system/AuditEvent.read scope "
                        "(fhir-gateway token create --audit --facility CODE)", "forbidden")


def _store():
    viewer = current_app.extensions.get("fhir_gateway_viewer")
    if viewer is not None:
        return viewer.accounts
    try:
        return current_app.extensions["state"].accounts()
    except Exception as exc:  # noqa: BLE001 - the audit store is broken: say so, not a 500
        raise FhirError(503, f"the audit trail cannot be read now ({type(exc).__name__})",
                        "transient") from exc


def _instant(ts: float) -> str:
    return datetime.fromtimestamp(ts, JST).isoformat(timespec="milliseconds")


def to_audit_event(row: dict) -> dict:
    """One audit row as a BALP-shaped AuditEvent (the hash chain's mac as an identifier)."""
    kind = _KINDS.get(row["action"], _OTHER)
    (tsys, tcode, tdisp), sub, act, profile = kind
    failed = row["outcome"] not in ("ok", "")
    who = " ".join(x for x in (row["person"], f"({row['staff_no']})" if row["staff_no"] else "")
                   if x)
    ev: dict = {"resourceType": "AuditEvent", "id": f"audit-{row['id']}",
                "meta": {"versionId": "1", "lastUpdated": _instant(row["at"])},
                "type": {"system": tsys, "code": tcode, "display": tdisp},
                "action": act, "recorded": _instant(row["at"]),
                "outcome": "4" if failed else "0",
                "outcomeDesc": f"{row['action']}: {row['outcome']}",
                "agent": [{"type": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP", "display": "information recipient"}]},
                    "who": {"identifier": {"system": ACCOUNT,
                                           "value": row["username"] or "(unknown)"},
                            **({"display": who} if who else {})},
                    "requestor": True,
                    **({"network": {"address": row["ip"], "type": "2"}} if row["ip"] else {})}],
                "source": {"site": row["facility"],
                           "observer": {"display": "fhir-gateway"},
                           "type": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                     "security-source-type", "code": "4",
                                     "display": "Application Server"}]},
                "entity": []}
    if profile:
        ev["meta"]["profile"] = [BALP + profile]
    ev["subtype"] = [{"system": sub[0], "code": sub[1], "display": sub[2]}] if sub else \
        [{"system": "urn:fhir-gateway:audit-action", "code": row["action"]}]
    if row["patient"]:
        ev["entity"].append({"what": {"reference": f"Patient/{row['patient']}"},
                             "type": {"system": "http://terminology.hl7.org/CodeSystem/"
                                      "audit-entity-type", "code": "1", "display": "Person"},
                             "role": {"system": "http://terminology.hl7.org/CodeSystem/"
                                      "object-role", "code": "1", "display": "Patient"}})
    detail = [{"type": "action", "valueString": row["action"]}]
    if row["detail"]:
        detail.append({"type": "detail", "valueString": row["detail"]})
    if row["session"]:
        detail.append({"type": "session", "valueString": row["session"]})
    detail.append({"type": "chain-mac", "valueString": row["hash"]})
    ev["entity"].append({"type": {"system": "http://terminology.hl7.org/CodeSystem/"
                                  "audit-entity-type", "code": "2", "display": "System Object"},
                         "what": {"identifier": {"system": "urn:fhir-gateway:audit-row",
                                                 "value": str(row["id"])}},
                         "detail": detail})
    return ev


def _date_bounds(values: list[str]) -> tuple[float | None, float | None]:
    """``date`` parameters -> [since, until) in epoch seconds (JST when no zone is given)."""
    since: float | None = None
    until: float | None = None
    for raw in values:
        prefix, text = (raw[:2], raw[2:]) if raw[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", raw)
        lo, hi = _period(text)
        if prefix in ("ge", "eq"):
            since = lo if since is None else max(since, lo)
        if prefix == "gt":
            since = hi if since is None else max(since, hi)
        if prefix in ("le", "eq"):
            until = hi if until is None else min(until, hi)
        if prefix == "lt":
            until = lo if until is None else min(until, lo)
    return since, until


def _period(text: str) -> tuple[float, float]:
    try:
        if len(text) == 4 and text.isdigit():
            start = datetime(int(text), 1, 1, tzinfo=JST)
            end = datetime(int(text) + 1, 1, 1, tzinfo=JST)
        elif len(text) == 7:
            y, m = int(text[:4]), int(text[5:7])
            start = datetime(y, m, 1, tzinfo=JST)
            end = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=JST)
        elif len(text) == 10:
            start = datetime.fromisoformat(text).replace(tzinfo=JST)
            end = start + timedelta(days=1)
        else:
            start = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if start.tzinfo is None:
                start = start.replace(tzinfo=JST)
            end = start + timedelta(seconds=1)
    except ValueError:
        raise FhirError(400, f"date={text!r} is not a FHIR date or dateTime", "value") from None
    return start.timestamp(), end.timestamp()


@blueprint.get("/AuditEvent")
def audit_events():
    _principal_may_audit()
    args = request.args
    unknown = sorted(set(args) - PARAMS)
    if unknown:
        raise FhirError(400, f"unknown AuditEvent search parameter(s): {', '.join(unknown)} "
                        f"(supported: {', '.join(sorted(PARAMS))})", "not-supported")
    since, until = _date_bounds(args.getlist("date"))
    try:
        count = min(max(int(args.get("_count", "100")), 0), 1000)
        before = int(args["_before"]) if "_before" in args else None
    except ValueError:
        raise FhirError(400, "_count and _before must be whole numbers", "value") from None
    patient = args.get("patient")
    if patient and patient.startswith("Patient/"):
        patient = patient[8:]
    rows = _store().audit_search(facility=g.facility_code, since=since, until=until,
                                 agent=_token(args.get("agent"), ACCOUNT), patient=patient,
                                 action=_token(args.get("action"), None), limit=count + 1,
                                 before_id=before)
    base = base_url(g.facility_code)
    keep = [(k, v) for k, v in args.items(multi=True) if k != "_before"]
    links = {"self": f"{base}/AuditEvent?{urlencode(list(args.items(multi=True)))}".rstrip("?")}
    if len(rows) > count and count:
        links["next"] = f"{base}/AuditEvent?{urlencode(keep + [('_before', rows[count - 1]['id'])])}"
    return fhir_response(searchset(base, [to_audit_event(r) for r in rows[:count]], [], [],
                                   None, links))


def _token(value: str | None, system: str | None) -> str | None:
    """A token value: ``code`` or ``system|code`` (``|code`` for no system); another system
    matches nothing."""
    if value is None or "|" not in value:
        return value
    sys_, code = value.split("|", 1)
    return code if sys_ in ("", system) else "\x00no-match"


@blueprint.get("/AuditEvent/<rid>/_history/<vid>")
def audit_event_version(rid: str, vid: str):
    """vread: an AuditEvent is never changed, so version 1 is the only one."""
    _principal_may_audit()
    if vid != "1":
        raise FhirError(404, f"AuditEvent/{rid}/_history/{vid} not found (AuditEvents have "
                        "version 1 only)", "not-found")
    return audit_event(rid)


@blueprint.get("/AuditEvent/<rid>")
def audit_event(rid: str):
    _principal_may_audit()
    if not rid.startswith("audit-") or not rid[6:].isdigit():
        raise FhirError(404, f"AuditEvent/{rid} not found", "not-found")
    rows = _store().audit_search(facility=g.facility_code, before_id=int(rid[6:]) + 1, limit=1)
    if not rows or rows[0]["id"] != int(rid[6:]):
        raise FhirError(404, f"AuditEvent/{rid} not found", "not-found")
    return fhir_response(to_audit_event(rows[0]))
