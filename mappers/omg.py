"""OMG-01/02/03 orders, OMG-11/12 performed procedures and OMG-13 results (radiology, endoscopy,
physiology).

* OMG-01/02/03 (OMG^O19) -> one JP_ServiceRequest_Common per ORC group.  A message repeats the
  order header: an ``NW`` group followed by a ``PA`` (parent) group with the same ORC-2 is one
  order, so the NW copy is skipped; ``CH`` (child) groups point to their parent with basedOn.
  OBX inside an order (体重, 臨床病名, 検査理由 ...) become Observations in supportingInfo.
* OMG-11/12 (OMI^Z23) -> one ImagingStudy per Study Instance UID (IPC-3) and one JP_Procedure per
  ZE1 (performed procedure); a performed order without ZE1 gives one Procedure per leaf order.
  OBX under a ZE1 that name staff (XCN) become Procedure.performer; TM-P1/TM-P2 times give
  performedPeriod; every other OBX becomes an Observation ``partOf`` its Procedure.
* OMG-13 (ORU^R01) -> one DiagnosticReport per OBR with one Observation per OBX.

Ids: ``{record}.{group}`` for requests and reports, ``{record}.{group}.p.{ZE1}`` for procedures,
``.o.{n}`` for observations, ``study.{uid key}`` for ImagingStudy — positions inside the message,
which is rewritten whole on every update.
"""

from __future__ import annotations

from storage.hl7 import Message, Segment
from storage.names import DATA_TYPES
from storage.timestamps import parse_ts

from .jsontypes import Json
from . import datatypes as dt
from . import terminology as term
from .context import MapContext
from .fhirtime import instant_text
from . import orders
from .ids import key_position, resource_id
from .registry import register

MAPPING: list[tuple[str, str, str]] = [
    ("PID-3", "*.subject", "Patient/{patient id}"),
    ("ORC-1", "ServiceRequest.status", "NW/PA/CH active; CA/OC/DC revoked; HD on-hold (Procedure: CA/OC/DC not-done)"),
    ("ORC-2", "ServiceRequest.identifier", "placer order number; basedOn.identifier of ImagingStudy/Procedure/DiagnosticReport"),
    ("ORC-3", "ServiceRequest.identifier", "filler order number"),
    ("ORC-5", "ServiceRequest.status", "CM completed, CA/DC revoked"),
    ("ORC-8", "ServiceRequest.basedOn", "parent order of a CH group (also OBR-29)"),
    ("ORC-9", "ServiceRequest.authoredOn", "also the fallback time of procedures and observations"),
    ("ORC-12", "ServiceRequest.requester", "ImagingStudy.referrer"),
    ("ORC-17", "ServiceRequest.extension:department", "JP eCS department extension"),
    ("TQ1-2", "ServiceRequest.quantityQuantity", ""),
    ("TQ1-7", "ServiceRequest.occurrencePeriod.start", ""),
    ("TQ1-8", "ServiceRequest.occurrencePeriod.end", ""),
    ("TQ1-9", "ServiceRequest.priority", "HL7 0485: R routine, S stat, A asap, C/T urgent"),
    ("OBR-2", "DiagnosticReport.identifier", "placer order number"),
    ("OBR-3", "DiagnosticReport.identifier", "filler order number"),
    ("OBR-4", "ServiceRequest.code", "JJ1017 / LENDO / JLAC10 / local; also ImagingStudy.procedureCode, Procedure.code, DiagnosticReport.code"),
    ("OBR-7", "DiagnosticReport.effective[x]", "ServiceRequest.occurrenceDateTime when TQ1/OBR-36 are empty; Procedure/ImagingStudy start"),
    ("OBR-8", "DiagnosticReport.effectivePeriod.end", ""),
    ("OBR-13", "ServiceRequest.note", "relevant clinical information"),
    ("OBR-16", "ServiceRequest.requester", "when ORC-12 is empty"),
    ("OBR-22", "DiagnosticReport.issued", ""),
    ("OBR-25", "DiagnosticReport.status", "F final, P preliminary, C corrected, X cancelled"),
    ("OBR-29", "ServiceRequest.basedOn", "parent order number"),
    ("OBR-36", "ServiceRequest.occurrenceDateTime", "scheduled time"),
    ("OBX-2", "Observation.value[x]", "NM valueQuantity, CWE valueCodeableConcept, TS valueDateTime, TX/ST/XCN/ZRD valueString"),
    ("OBX-3", "Observation.code", "(XCN staff OBX under ZE1 -> Procedure.performer.function)"),
    ("OBX-5", "Observation.value[x]", "(XCN under ZE1 -> Procedure.performer.actor; TS TM-P1/TM-P2 -> Procedure.performedPeriod)"),
    ("OBX-6", "Observation.valueQuantity.unit", "UCUM when known (bpm, msec, mV, degree)"),
    ("OBX-7", "Observation.referenceRange.text", ""),
    ("OBX-8", "Observation.interpretation", ""),
    ("OBX-11", "Observation.status", ""),
    ("OBX-14", "Observation.effectiveDateTime", "falls back to OBR-7 / ORC-9"),
    ("DG1-3", "ServiceRequest.reasonCode", ""),
    ("NTE-3", "ServiceRequest.note", "OMG-13: DiagnosticReport.conclusion"),
    ("IPC-1", "ImagingStudy.identifier", "accession number (type ACSN)"),
    ("IPC-3", "ImagingStudy.identifier", "Study Instance UID (urn:dicom:uid); one ImagingStudy per UID"),
    ("IPC-5", "ImagingStudy.modality", "DICOM modality code"),
    ("ZE1-3", "Procedure.code", "performed procedure (JJ1017 / LENDO)"),
    ("ZE1-6", "Procedure.performer.function", "staff kind"),
    ("ZE1-7", "Procedure.performer.actor", "staff"),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("PV1", "visit snapshot; Encounters come from the ADT-1x..5x files"),
    ("ORC-10", "entered by; the requester is ORC-12"),
    ("ORC-13", "enterer's location; no ServiceRequest element"),
    ("ORC-29", "order type (inpatient/outpatient)"),
    ("TQ1-1", "set id"),
    ("OBR-1", "set id"),
    ("OBX-1", "set id"),
    ("OBX-4", "sub-id; the order of OBX is kept in DiagnosticReport.result"),
    ("OBR-24", "diagnostic section; the data type gives the category"),
    ("OBR-26", "parent result; not written by SS-MIX2 sources seen"),
    ("OBR-28", "result copies-to"),
    ("ZE1-1", "set id"),
    ("ZE1-2", "control code (予定/実施); a performed-notice is taken as completed"),
    ("ZE1-4", "count of the procedure; no Procedure element"),
    ("ZE1-5", "medical-fee add-ons (医事加算); billing, not clinical"),
    ("ZE1-8", "kind of used goods; see ZE1-9"),
    ("ZE1-9", "used goods (ZRD); written as OBX by SS-MIX2 sources seen"),
    ("ZE1-10", "contact"),
    ("ZE1-11", "free performance field"),
    ("ZE1-12", "free accounting field"),
    ("ZE2", "radiation exposure parameters (tube voltage/current, distance, time); no JP Core element"),
    ("IPC-2", "requested procedure id (DICOM MWL)"),
    ("IPC-4", "scheduled procedure step id (DICOM MWL)"),
    ("IPC-6", "protocol code"),
    ("IPC-7", "scheduled station name"),
    ("IPC-1", "accession number of an IPC that repeats a Study Instance UID already listed: the first IPC of the study is mapped"),
    ("IPC-3", "a Study Instance UID already listed by an earlier IPC (one ImagingStudy per UID)"),
    ("IPC-5", "modality of an IPC that repeats a Study Instance UID (one ImagingStudy per UID)"),
    ("OBR-16", "ordering provider: the same as ORC-12, read only when ORC-12 is empty"),
    ("OBR-29", "parent order number: the same as ORC-8, read only when ORC-8 is empty"),
    ("ORC-12", "ordering provider in a performed notice: ImagingStudy.referrer when there is an IPC; the ServiceRequest carries the requester"),
    ("OBR-2", "placer order number; ORC-2 is the same number and wins (OBR-2 only when ORC-2 is empty)"),
    ("OBR-3", "filler order number: performed notices reference the order by ORC-2 (basedOn); ORC-3 wins in orders"),
    ("OBR-7", "performed time of the order: read for ImagingStudy.started and as an Observation fallback; a Procedure's times come from ZE1/OBX"),
    ("OBR-22", "report time: a performed notice has no report (the DiagnosticReport comes with OMG-13)"),
    ("OBR-25", "result status: a performed notice is taken as completed"),
    ("OBR-36", "scheduled time: TQ1-7/8 (the period) wins when written"),
    ("ORC-1", "order control in a result (SC): DiagnosticReport.status comes from OBR-25"),
    ("ORC-3", "filler order number in a result: DiagnosticReport.identifier takes OBR-3"),
    ("ORC-5", "order status in a result: DiagnosticReport.status comes from OBR-25"),
    ("ORC-8", "parent order number of a performed child: Procedure.basedOn references the child's own order (ORC-2)"),
    ("ORC-9", "order time in a result or performed notice: the ServiceRequest (OMG-01/02/03) carries authoredOn"),
    ("ORC-17", "department in a result or performed notice: the ServiceRequest carries it"),
    ("TQ1-7", "planned start in a performed notice: the performed times come from ZE1/OBX"),
    ("TQ1-8", "planned end in a performed notice: the performed times come from ZE1/OBX"),
    ("TQ1-9", "priority in a performed notice or result: the ServiceRequest carries it (TQ1-9.1)"),
    ("TQ1-9.2", "display of the HL7 0485 priority; the code maps to ServiceRequest.priority"),
    ("TQ1-9.3", "coding system name (HL70485)"),
    ("OBX-3.2", "item name of a procedure OBX (開始時間 ...): the item code selects the Procedure element"),
    ("OBX-3.3", "coding system name of a procedure OBX item"),
    ("OBX-11", "result status of a procedure OBX: the Procedure is completed"),
    ("IPC-8", "scheduled location"),
    ("IPC-9", "scheduled AE title"),
    ("SPM", "specimens of a physiology order are not written by SS-MIX2 sources seen"),
    ("CTD", "contact data"),
    ("FT1", "billing"),
    ("BLG", "billing"),
    ("CTI", "clinical trial identification"),
]

ORDER_TYPES = ("OMG-01", "OMG-02", "OMG-03")
PERFORMED_TYPES = ("OMG-11", "OMG-12")
_RADIOLOGY = ("OMG-01", "OMG-11")
_ENDOSCOPY = ("OMG-02", "OMG-12")
_CANCELLED = ("CA", "OC", "DC", "CR", "DR", "OD")
_START_TIMES = ("TM-P1",)
_END_TIMES = ("TM-P2",)


def _category(ctx: MapContext) -> list[Json]:
    dtype = ctx.name.data_type
    cats = [dt.concept(dtype, DATA_TYPES[dtype].name_ja, term.SSMIX2_DATA_TYPE)]
    if dtype in _RADIOLOGY:
        cats.append(dt.concept("RAD", "Radiology", term.DIAGNOSTIC_SERVICE_SECTION))
    return cats


def _first(group: list[Segment], seg_id: str) -> Segment | None:
    return next((s for s in group if s.id == seg_id), None)


def _order_groups(msg: Message) -> list[tuple[int, list[Segment]]]:
    """ORC groups with their 1-based position, minus NW headers repeated by a PA group
    (dropped only when the PA group writes every field of the NW header the same way)."""
    groups = msg.groups("ORC")
    parents = {g[0].get(2): g for g in groups if g[0].get(1) == "PA"}
    return [(i, g) for i, g in enumerate(groups, 1)
            if not (g[0].get(1) == "NW" and g[0].get(2) in parents
                    and _repeats(g, parents[g[0].get(2)]))]


def _repeats(header: list[Segment], parent: list[Segment]) -> bool:
    """True when every non-empty field of the header group is written the same in the parent."""
    first: dict[str, list[str]] = {}
    for seg in parent:
        first.setdefault(seg.id, seg.fields)
    for seg in header:
        other = first.get(seg.id)
        if other is None:
            return False
        fs = seg.fields
        for n in range(2 if seg.id == "ORC" else 1, len(fs)):
            if fs[n] and (n >= len(other) or other[n] != fs[n]):
                return False
    return True


def _order_ref(ctx: MapContext, order_no: str) -> Json:
    return {"type": "ServiceRequest", "identifier": {
        "system": term.local_id_system(ctx.facility, "placer-order-number"), "value": order_no}}


def _effective(obr: Segment | None, orc: Segment | None, ctx: MapContext) -> str:
    return ((dt.datetime_(obr[7]) if obr is not None else None)
            or (dt.datetime_(orc[9]) if orc is not None else None) or ctx.last_updated)


# --- OMG-01/02/03: orders ------------------------------------------------------------------------

def _service_request(i: int, group: list[Segment], ctx: MapContext, ids: dict[str, str]) -> list[Json]:
    """One ORC group -> its ServiceRequest and the Observations of its OBX (supportingInfo)."""
    orc, obr, tq1 = group[0], _first(group, "OBR"), _first(group, "TQ1")
    fac = ctx.facility
    rid = resource_id(ctx.name, i)
    sr: Json = {"resourceType": "ServiceRequest", "id": rid,
                "meta": ctx.meta(term.PROFILE["ServiceRequest"])}
    dept = orders.department_extension(orc, fac)
    if dept:
        sr["extension"] = dept
    idents = _identifiers(orc, obr, fac)
    if idents:
        sr["identifier"] = idents
    sr.update(_parent(orc, obr, ctx, ids))
    sr["status"] = term.request_status(orc.get(1), orc.get(5))
    sr["intent"] = "order"
    sr["category"] = _category(ctx)
    priority = orders.priority(tq1)
    if priority:
        sr["priority"] = priority
    code = dt.codeable(obr[4], fac) if obr is not None else None
    sr["code"] = code or {"text": "(検査項目なし)"}
    if tq1 is not None and dt.quantity(tq1.get(2)):
        sr["quantityQuantity"] = dt.quantity(tq1.get(2))
    sr["subject"] = dt.patient_ref(ctx.patient_id)
    sr.update(_occurrence(obr, tq1))
    authored = dt.datetime_(orc[9])
    if authored:
        sr["authoredOn"] = authored
    requester = orders.requester(orc, obr, fac)
    if requester:
        sr["requester"] = requester
    reasons = [dt.codeable(s[3], fac) for s in group if s.id == "DG1"]
    if any(reasons):
        sr["reasonCode"] = [r for r in reasons if r]
    notes = orders.nte_notes(group)
    if obr is not None and obr[13].text:
        notes.insert(0, obr[13].text)
    if notes:
        sr["note"] = [{"text": n} for n in notes]
    return [sr, *_supporting_observations(i, group, sr, orc, obr, ctx)]


def _identifiers(orc: Segment, obr: Segment | None, facility: str) -> list[Json]:
    """Placer (ORC-2, else OBR-2) and filler (ORC-3, else OBR-3) order numbers."""
    idents = [dt.identifier(term.local_id_system(facility, kind),
                            orc[n].component(1) or (obr[n].component(1) if obr else ""), code)
              for n, kind, code in ((2, "placer-order-number", "PLAC"),
                                    (3, "filler-order-number", "FILL"))]
    return [x for x in idents if x]


def _parent(orc: Segment, obr: Segment | None, ctx: MapContext, ids: dict[str, str]) -> Json:
    """A child order (ORC-1 CH) is basedOn its parent (ORC-8, else OBR-29); parent and child
    share the parent's number as requisition."""
    out: Json = {}
    parent_no = orc[8].component(1) or (obr[29].component(1) if obr else "")
    if parent_no and orc.get(1) == "CH":
        parent_id = ids.get(parent_no)
        out["basedOn"] = [{"reference": f"ServiceRequest/{parent_id}"} if parent_id
                          else _order_ref(ctx, parent_no)]
    if parent_no or orc.get(1) == "PA":
        out["requisition"] = dt.identifier(term.local_id_system(ctx.facility, "placer-order-number"),
                                           parent_no or orc[2].component(1))
    return out


def _occurrence(obr: Segment | None, tq1: Segment | None) -> Json:
    """TQ1-7..8 as a period, else OBR-36 (else OBR-7) as a date-time."""
    occurrence = dt.period(tq1[7], tq1[8]) if tq1 is not None else None
    if occurrence:
        return {"occurrencePeriod": occurrence}
    when = (dt.datetime_(obr[36]) or dt.datetime_(obr[7])) if obr is not None else None
    return {"occurrenceDateTime": when} if when else {}


def _supporting_observations(i: int, group: list[Segment], sr: Json, orc: Segment,
                             obr: Segment | None, ctx: MapContext) -> list[Json]:
    """The OBX of the group as exam Observations, basedOn the request and in its supportingInfo."""
    out = []
    category = [{"coding": [{"system": term.JP_OBSERVATION_CATEGORY, "code": "exam"}]}]
    for j, obx in enumerate((s for s in group if s.id == "OBX"), 1):
        obs = dt.obx_observation(obx, ctx, resource_id(ctx.name, i, "o", j), category,
                                 term.PROFILE["ObservationCommon"], _effective(obr, orc, ctx))
        obs["basedOn"] = [{"reference": f"ServiceRequest/{sr['id']}"}]
        sr.setdefault("supportingInfo", []).append({"reference": f"Observation/{obs['id']}"})
        out.append(obs)
    return out


@register(*ORDER_TYPES)
def map_omg_order(msg: Message, ctx: MapContext) -> list[Json]:
    groups = _order_groups(msg)
    ids = {g[0].get(2): resource_id(ctx.name, i) for i, g in groups if g[0].get(1) != "CH"}
    out: list[Json] = []
    for i, group in groups:
        out.extend(_service_request(i, group, ctx, ids))
    return out


# --- OMG-11/12: performed -------------------------------------------------------------------------

def _split_performed(group: list[Segment]) -> tuple[list[Segment], list[list[Segment]]]:
    """(order-level OBX, [ZE1 + its OBX/ZE2 ...]) of one ORC group."""
    order_obx: list[Segment] = []
    blocks: list[list[Segment]] = []
    for seg in group:
        if seg.id == "ZE1":
            blocks.append([seg])
        elif seg.id in ("IPC", "ORC", "OBR"):
            if seg.id != "IPC" or not blocks:
                continue
            blocks.append([])  # an IPC closes the ZE1 block
        elif seg.id in ("OBX", "ZE2"):
            if blocks and blocks[-1]:
                blocks[-1].append(seg)
            elif seg.id == "OBX":
                order_obx.append(seg)
    return order_obx, [b for b in blocks if b]


def _study(ipc: Segment, orc: Segment, obr: Segment | None, ctx: MapContext) -> Json:
    uid = ipc[3].component(1)
    profile = term.PROFILE["ImagingStudyEndoscopy" if ctx.name.data_type in _ENDOSCOPY
                           else "ImagingStudy"]
    s: Json = {"resourceType": "ImagingStudy", "id": resource_id(ctx.name, "study", key_position(uid)),
               "meta": ctx.meta(profile)}
    idents = [{"system": term.DICOM_UID, "value": f"urn:oid:{uid}"}]
    acc = dt.identifier(term.local_id_system(ctx.facility, "accession-number"), ipc[1].component(1), "ACSN")
    if acc:
        idents.append(acc)
    s["identifier"] = idents
    s["status"] = "available"
    modality = ipc[5].component(1)
    if modality:
        s["modality"] = [{"system": term.CODE_SYSTEMS["DCM"], "code": modality}]
    s["subject"] = dt.patient_ref(ctx.patient_id)
    started = (dt.datetime_(obr[7]) if obr is not None else None) or dt.datetime_(orc[9])
    if started:
        s["started"] = started
    if orc[2].component(1):
        s["basedOn"] = [_order_ref(ctx, orc[2].component(1))]
    referrer = dt.practitioner(orc[12], ctx.facility)
    if referrer:
        s["referrer"] = referrer
    return s


def _procedure(pos: tuple[int, str, int], orc: Segment, obr: Segment | None, ze1: Segment | None,
               block: list[Segment], ctx: MapContext) -> list[Json]:
    """One performed procedure (a ZE1 and its OBX, or a whole leaf order without ZE1)."""
    rid = resource_id(ctx.name, *pos)
    p: Json = {"resourceType": "Procedure", "id": rid, "meta": ctx.meta(term.PROFILE["Procedure"])}
    if orc[2].component(1):
        p["basedOn"] = [_order_ref(ctx, orc[2].component(1))]
    p["status"] = "not-done" if orc.get(1) in _CANCELLED else "completed"
    p["category"] = _category(ctx)[0]
    code = (dt.codeable(ze1[3], ctx.facility) if ze1 is not None else None) or (
        dt.codeable(obr[4], ctx.facility) if obr is not None else None)
    p["code"] = code or {"text": "(手技なし)"}
    p["subject"] = dt.patient_ref(ctx.patient_id)
    performers = []
    if ze1 is not None:
        actor = dt.practitioner(ze1[7], ctx.facility)
        if actor:
            perf: Json = {"actor": actor}
            func = dt.codeable(ze1[6], ctx.facility)
            if func:
                perf["function"] = func
            performers.append(perf)
    start = end = None
    out: list[Json] = [p]
    category = [{"coding": [{"system": term.JP_OBSERVATION_CATEGORY, "code": "procedure"}]}]
    fallback = _effective(obr, orc, ctx)
    for j, seg in enumerate((s for s in block if s.id == "OBX"), 1):
        item = seg.get(3)
        if seg.get(2) == "XCN":
            actor = dt.practitioner(seg[5], ctx.facility)
            if actor:
                perf = {"actor": actor}
                func = dt.codeable(seg[3], ctx.facility)
                if func:
                    perf["function"] = func
                performers.append(perf)
                continue
        when = dt.datetime_(seg[5]) if seg.get(2) in ("TS", "DTM") else None
        if when and item in _START_TIMES:
            start = when
            continue
        if when and item in _END_TIMES:
            end = when
            continue
        obs = dt.obx_observation(seg, ctx, resource_id(ctx.name, *pos, "o", j), category,
                                 term.PROFILE["ObservationCommon"], fallback)
        obs["partOf"] = [{"reference": f"Procedure/{rid}"}]
        out.append(obs)
    if start or end:
        p["performedPeriod"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    else:
        p["performedDateTime"] = fallback
    if performers:
        p["performer"] = performers
    return out


@register(*PERFORMED_TYPES)
def map_omg_performed(msg: Message, ctx: MapContext) -> list[Json]:
    groups = _order_groups(msg)
    has_children = any(g[0].get(1) == "CH" for _, g in groups)
    studies: dict[str, Json] = {}
    out: list[Json] = []
    for i, group in groups:
        orc, obr = group[0], _first(group, "OBR")
        study_id = None
        for ipc in (s for s in group if s.id == "IPC"):
            uid = ipc[3].component(1)
            if uid and uid not in studies:
                studies[uid] = _study(ipc, orc, obr, ctx)
            if uid:
                study = studies[uid]
                study_id = study["id"]
                code = dt.codeable(obr[4], ctx.facility) if obr is not None else None
                if code and orc.get(1) == "CH" and code not in study.get("procedureCode", []):
                    study.setdefault("procedureCode", []).append(code)
                    study.setdefault("description", code.get("text", ""))
        order_obx, blocks = _split_performed(group)
        for j, obx in enumerate(order_obx, 1):
            obs = dt.obx_observation(
                obx, ctx, resource_id(ctx.name, i, "o", j),
                [{"coding": [{"system": term.JP_OBSERVATION_CATEGORY, "code": "exam"}]}],
                term.PROFILE["ObservationCommon"], _effective(obr, orc, ctx))
            if study_id:
                obs["partOf"] = [{"reference": f"ImagingStudy/{study_id}"}]
            out.append(obs)
        if blocks:
            for k, block in enumerate(blocks, 1):
                out.extend(_procedure((i, "p", k), orc, obr, block[0], block[1:], ctx))
        elif orc.get(1) == "CH" or not has_children:
            out.extend(_procedure((i, "p", 0), orc, obr, None, [], ctx))
    return list(studies.values()) + out


# --- OMG-13: results --------------------------------------------------------------------------------

@register("OMG-13")
def map_omg_result(msg: Message, ctx: MapContext) -> list[Json]:
    out: list[Json] = []
    reports: list[tuple[Json, list[Segment], Segment | None, Segment]] = []
    orc: Segment | None = None
    current: list[Segment] | None = None
    for seg in msg:
        if seg.id == "ORC":
            orc = seg
        elif seg.id == "OBR":
            current = []
            reports.append(({}, current, orc, seg))
            orc = None
        elif current is not None and seg.id in ("OBX", "NTE"):
            current.append(seg)
    category = [{"coding": [{"system": term.JP_OBSERVATION_CATEGORY, "code": "procedure"}]}]
    for i, (_, segs, orc_seg, obr) in enumerate(reports, 1):
        rid = resource_id(ctx.name, i)
        r: Json = {"resourceType": "DiagnosticReport", "id": rid,
                   "meta": ctx.meta(term.PROFILE["DiagnosticReport"])}
        idents = [dt.identifier(term.local_id_system(ctx.facility, "placer-order-number"),
                                obr[2].component(1), "PLAC"),
                  dt.identifier(term.local_id_system(ctx.facility, "filler-order-number"),
                                obr[3].component(1), "FILL")]
        idents = [x for x in idents if x]
        if idents:
            r["identifier"] = idents
        order_no = (orc_seg[2].component(1) if orc_seg is not None else "") or obr[2].component(1)
        if order_no:
            r["basedOn"] = [_order_ref(ctx, order_no)]
        r["status"] = term.REPORT_STATUS.get(obr.get(25), "final")
        r["category"] = _category(ctx)
        r["code"] = dt.codeable(obr[4], ctx.facility) or {"text": "(検査項目なし)"}
        r["subject"] = dt.patient_ref(ctx.patient_id)
        span = dt.period(obr[7], obr[8])
        if span and "end" in span:
            r["effectivePeriod"] = span
        elif span:
            r["effectiveDateTime"] = span["start"]
        issued = parse_ts(obr.get(22))
        if issued:
            r["issued"] = instant_text(issued)
        effective = _effective(obr, orc_seg, ctx)
        results = []
        for j, obx in enumerate((s for s in segs if s.id == "OBX"), 1):
            obs = dt.obx_observation(obx, ctx, resource_id(ctx.name, i, "o", j), category,
                                     term.PROFILE["ObservationCommon"], effective)
            results.append({"reference": f"Observation/{obs['id']}"})
            out.append(obs)
        if results:
            r["result"] = results
        notes = [s[3].text for s in segs if s.id == "NTE" and s[3].text]
        if notes:
            r["conclusion"] = "\n".join(notes)
        out.insert(len(out) - len(results), r)
    return out
