"""ADT-01/12/21/22/31/32/41/42/51/52 -> one JP_Encounter per stored record.

Every ADT file is one event of a visit (admission planned, admitted, moved, on leave, back,
discharge planned, discharged, attending changed); each record becomes its own Encounter whose
status says which step it records.  A mapper sees one message only, so the steps are not merged
here; they share the visit number (PV1-19) as identifier when the source writes one, and the
admission time (PV1-44) in period.start, which is what a client (or the server) pairs them by.

Closing is done where a patient's resources are gathered: :func:`mappers.chart.assemble` pairs
ADT-22 with ADT-52 (and ADT-31 with ADT-32) by visit number, else admission time, else the
nearest earlier open event; the admission then gets period.end, status finished and the
discharge disposition (death included); a cancel event stored as its own record withdraws the
event it names, a cancelled discharge (A13) closes nothing.

Status per data type (cancel events -> cancelled): ADT-21/41/51 planned, ADT-12 arrived,
ADT-22/42/32/01 in-progress, ADT-31 onleave (FHIR's own code for 外出泊), ADT-52 finished.
"""

from __future__ import annotations

from storage.hl7 import Field, Message, Segment
from storage.names import DATA_TYPES

from .jsontypes import Json
from . import datatypes as dt
from . import terminology as term
from .context import MapContext
from .ids import resource_id
from .registry import register

ENCOUNTER_TYPES = ("ADT-01", "ADT-12", "ADT-21", "ADT-22", "ADT-31", "ADT-32", "ADT-41", "ADT-42",
                   "ADT-51", "ADT-52")

STATUS = {"ADT-01": "in-progress", "ADT-12": "arrived", "ADT-21": "planned",
          "ADT-22": "in-progress", "ADT-31": "onleave", "ADT-32": "in-progress",
          "ADT-41": "planned", "ADT-42": "in-progress", "ADT-51": "planned",
          "ADT-52": "finished"}

MAPPING: list[tuple[str, str, str]] = [
    ("MSH-9", "Encounter.status", "event per data type; cancel events (A11 A12 A13 A25 A26 A27 A52 A53 A55) -> cancelled"),
    ("PID-3", "Encounter.subject", "Patient/{patient id}"),
    ("EVN-6", "Encounter.location.period.start", "time of a transfer / leave / return / doctor change"),
    ("PV1-2", "Encounter.class", "HL7 0004: I IMP, O AMB, E EMER (else by data type: ADT-12 AMB, others IMP)"),
    ("PV1-3", "Encounter.location.location.display", "病棟^病室^ベッド (or 診療科 for clinics) as text"),
    ("PV1-6", "Encounter.location", "prior location of a transfer, status completed"),
    ("PV1-7", "Encounter.participant", "type ATND (attending); for ADT-01 the new attending doctor"),
    ("PV1-10", "Encounter.serviceType", "SS-MIX2 診療科 code"),
    ("PV1-17", "Encounter.participant", "type ADM (admitting)"),
    ("PV1-19", "Encounter.identifier", "visit number, local system visit-number"),
    ("PV1-36", "Encounter.hospitalization.dischargeDisposition", "HL7 user table 0112"),
    ("PV1-44", "Encounter.period.start", "admission / visit time"),
    ("PV1-45", "Encounter.period.end", "discharge time"),
    ("PV2-1", "Encounter.location", "planned new location of a transfer (ADT-41), status planned"),
    ("PV2-8", "Encounter.period.start", "expected admission (ADT-21) when PV1-44 is empty"),
    ("PV2-9", "Encounter.period.end", "expected discharge (ADT-51) when PV1-45 is empty"),
    ("PV2-47", "Encounter.location.period.end", "expected return from leave (ADT-31)"),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("EVN-2", "record time; meta.lastUpdated comes from the file's 発生日時"),
    ("EVN-3", "planned event time; PV2-8/PV2-9 carry the planned dates"),
    ("EVN-4", "event reason; no Encounter element"),
    ("EVN-5", "operator; not a participant of the visit"),
    ("EVN-7", "event facility; the facility is the storage's"),
    ("PV1-1", "set id"),
    ("PID-5", "Patient data come from ADT-00 only"),
    ("NK1", "Patient data come from ADT-00 only"),
    ("OBX", "observations inside ADT events are not written by SS-MIX2 sources seen"),
    ("DB1", "Patient data come from ADT-00 only"),
    ("IN1", "Coverage comes from ADT-00"),
    ("PV2-8", "expected admission time: read for ADT-21 (planned) only; other events carry the real time in PV1-44"),
]

_PARTICIPANT = (("ATND", "attender", 7), ("ADM", "admitter", 17))


def _participant(code: str, display: str, field: Field, ctx: MapContext, start: str | None) -> Json | None:
    ref = dt.practitioner(field, ctx.facility)
    if ref is None:
        return None
    part: Json = {"type": [dt.concept(code, display, term.PARTICIPATION_TYPE)], "individual": ref}
    if start:
        part["period"] = {"start": start}
    return part


@register(*ENCOUNTER_TYPES)
def map_encounter(msg: Message, ctx: MapContext) -> list[Json]:
    dtype = ctx.name.data_type
    pv1, pv2, evn = msg["PV1"], msg["PV2"], msg["EVN"]
    message, event, _ = msg.message_type
    cancelled = DATA_TYPES[dtype].is_cancel(message or "ADT", event)
    status = "cancelled" if cancelled else STATUS[dtype]
    e: Json = {"resourceType": "Encounter", "id": resource_id(ctx.name),
               "meta": ctx.meta(term.PROFILE["Encounter"])}
    visit = pv1[19].component(1)
    if visit:
        e["identifier"] = [dt.identifier(term.local_id_system(ctx.facility, "visit-number"), visit)]
    e["status"] = status
    klass = term.ENCOUNTER_CLASS_0004.get(pv1.get(2)) or (
        ("AMB", "ambulatory") if dtype == "ADT-12" else ("IMP", "inpatient encounter"))
    e["class"] = {"system": term.ACT_CODE, "code": klass[0], "display": klass[1]}
    service = dt.department(pv1.get(10)) or dt.department(
        ctx.name.department if ctx.name.department != "-" else "")
    if service:
        e["serviceType"] = service
    e["subject"] = dt.patient_ref(ctx.patient_id)
    event_time = dt.datetime_(evn[6])
    participants = _participants(pv1, ctx, event_time if dtype == "ADT-01" else None)
    if participants:
        e["participant"] = participants
    period = _period(pv1, pv2, dtype, event_time)
    if period:
        e["period"] = period
    disposition = _disposition(pv1, ctx.facility)
    if disposition:
        e["hospitalization"] = {"dischargeDisposition": disposition}
    locations = _locations(pv1, pv2, dtype, status, event_time)
    if locations:
        e["location"] = locations
    return [e]


def _participants(pv1: Segment, ctx: MapContext, start: str | None) -> list[Json]:
    """PV1-7 attending and PV1-17 admitting doctors (ADT-01: since the event time)."""
    parts = (_participant(code, display, pv1[n], ctx, start) for code, display, n in _PARTICIPANT)
    return [p for p in parts if p]


def _period(pv1: Segment, pv2: Segment, dtype: str, event_time: str | None) -> Json | None:
    """PV1-44/45; PV2-8 for a planned admission, PV2-9 for a planned discharge, the event
    time for an outpatient arrival."""
    start = dt.datetime_(pv1[44]) or (dt.datetime_(pv2[8]) if dtype == "ADT-21" else None)
    end = dt.datetime_(pv1[45]) or (dt.datetime_(pv2[9]) if dtype == "ADT-51" else None)
    if dtype == "ADT-12" and not start:
        start = event_time
    if start or end:
        return {k: v for k, v in (("start", start), ("end", end)) if v}
    return None


def _disposition(pv1: Segment, facility: str) -> Json | None:
    """PV1-36 as coded, or in HL7 table 0112 when the source names no coding system."""
    disposition = dt.codeable(pv1[36], facility) if pv1.get(36) else None
    if disposition and (not disposition.get("coding") or not disposition["coding"][0].get("system")):
        return dt.concept(pv1.get(36), pv1[36].component(2), term.system_for("HL70112") or "")
    return disposition


# Encounter.status -> the status of its current location (others: active)
_LOCATION_STATUS = {"planned": "planned", "cancelled": "completed", "finished": "completed"}


def _locations(pv1: Segment, pv2: Segment, dtype: str, status: str,
               event_time: str | None) -> list[Json]:
    """PV1-3 current (event time, expected leave end PV2-47), PV1-6 prior, PV2-1 planned."""
    locations: list[Json] = []
    current = dt.location_text(pv1[3])
    if current:
        entry: Json = {"location": {"display": current},
                       "status": _LOCATION_STATUS.get(status, "active")}
        if event_time and dtype in ("ADT-42", "ADT-31", "ADT-32"):
            entry["period"] = {"start": event_time}
        if dtype == "ADT-31" and dt.datetime_(pv2[47]):
            entry.setdefault("period", {})["end"] = dt.datetime_(pv2[47])
        locations.append(entry)
    prior = dt.location_text(pv1[6])
    if prior and prior != current:
        entry = {"location": {"display": prior}, "status": "completed"}
        if event_time and dtype == "ADT-42":
            entry["period"] = {"end": event_time}
        locations.append(entry)
    pending = dt.location_text(pv2[1])
    if pending and pending != current:
        locations.append({"location": {"display": pending}, "status": "planned"})
    return locations
