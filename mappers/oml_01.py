"""OML-01 検体検査オーダ (OML^O33) -> one JP_ServiceRequest per OBR, plus a Specimen per SPM.

The OML^O33 layout is ``SPM [OBX] ORC TQ1? OBR OBX*`` per specimen; the OBX lines after the
OBR list the ordered test items (OBX-11 = O, no value) and become ``orderDetail`` of the
request for that OBR.  Ids: Specimen ``{key}.s{n}``, ServiceRequest ``{key}.r{n}``.
"""

from __future__ import annotations

from storage.hl7 import Message, Segment
from storage.names import DATA_TYPES

from .jsontypes import Json
from . import datatypes as dt
from . import embedded
from . import terminology as term
from .context import MapContext
from .ids import resource_id
from . import orders
from .oml_11 import LabMessage, ReportRec, order_identifiers, specimens, walk
from .registry import register

MAPPING: list[tuple[str, str, str]] = [
    ("SPM-2", "Specimen.identifier", "placer/filler specimen id"),
    ("SPM-4", "Specimen.type", "JLAC10 material (JC10) and local triplets"),
    ("SPM-8", "Specimen.collection.bodySite", ""),
    ("SPM-17", "Specimen.collection.collectedDateTime", ""),
    ("ORC-1", "ServiceRequest.status", "terminology.request_status: CA/OC/CR/DC revoked, HD on-hold, else by ORC-5, else active"),
    ("ORC-2", "ServiceRequest.identifier", "placer order number (fallback OBR-2)"),
    ("ORC-3", "ServiceRequest.identifier", "filler order number (fallback OBR-3)"),
    ("ORC-5", "ServiceRequest.status", "CM completed, CA/DC revoked, HD on-hold"),
    ("ORC-9", "ServiceRequest.authoredOn", "fallback MSH-7"),
    ("ORC-12", "ServiceRequest.requester", "fallback OBR-16"),
    ("ORC-17", "ServiceRequest.extension", "JP-CLINS/eCS department extension (terminology.REQUEST_DEPARTMENT_EXT)"),
    ("ORC-29", "ServiceRequest.category", "HL70482 order type I/O (besides the SS-MIX2 data type and SNOMED laboratory procedure)"),
    ("TQ1-7", "ServiceRequest.occurrenceDateTime", "when OBR-7 is empty"),
    ("TQ1-9", "ServiceRequest.priority", "HL70485: S stat, A asap, R/P routine, C/T urgent"),
    ("OBR-4", "ServiceRequest.code", "order set (local code kept with its local system)"),
    ("OBR-7", "ServiceRequest.occurrenceDateTime", "occurrencePeriod with OBR-8"),
    ("OBR-16", "ServiceRequest.requester", "only when ORC-12 is empty"),
    ("OBX-3", "ServiceRequest.orderDetail", "ordered test items (JLAC10 + local), OBX without a value"),
    ("OBX-5", "Observation.value[x]", "an OBX with a value (身長, 体重, 感染症 ... the order is based on) is an Observation (mappers.embedded), referenced from ServiceRequest.supportingInfo of its specimen's requests"),
    ("NTE-3", "ServiceRequest.note", ""),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("OBX-11", "always O (order detail) in an order; the item itself is kept in orderDetail"),
    ("OBX-2", "value type of an ordered item, which carries no value; read for OBX with a value"),
    ("PV1", "visit snapshot of the order (class, ward, attending, visit number); Encounters come from the ADT files and the order's class from ORC-29, else PV1-2"),
    ("ORC-10", "entered by (入力者); the requester is ORC-12"),
    ("OBR-2", "placer order number; ORC-2 is the same number and is the identifier (OBR-2 only when ORC-2 is empty)"),
    ("OBR-16", "ordering provider; the same as ORC-12, read only when ORC-12 is empty"),
    ("TQ1-9.2", "display of the HL7 0485 priority; the code maps to ServiceRequest.priority"),
    ("TQ1-9.3", "coding system name (HL70485)"),
]

def request_status(orc: Segment | None) -> str:
    return term.request_status(orc.get(1), orc.get(5)) if orc is not None else "active"


@register("OML-01")
def map_oml_01(msg: Message, ctx: MapContext) -> list[Json]:
    lab = walk(msg)
    out, spec_refs = specimens(ctx, lab)
    valued, by_specimen = _valued_observations(msg, ctx, lab, out)
    for rep in lab.reports:
        if rep.obr is None and rep.index in valued and len(valued[rep.index]) == len(rep.obxs):
            continue  # only observations (specimen-level OBX): no request of their own
        spec_key = rep.specimen.index if rep.specimen is not None else None
        support = valued.get(rep.index, []) + by_specimen.get(spec_key, []) + (
            by_specimen.get(None, []) if spec_key is not None else [])
        out.append(_request(msg, ctx, lab, rep, support, spec_refs))
    return out


def _valued_observations(msg: Message, ctx: MapContext, lab: LabMessage, out: list[Json]
                         ) -> tuple[dict[int, list[Json]], dict[int | None, list[Json]]]:
    """OBX that carry a value (身長, 体重, 感染症 ... the order is based on) become Observations
    (appended to ``out``): (by report index, by specimen index for OBX before any OBR).
    Value-less OBX are the ordered items (:func:`_order_details`)."""
    n_obs = 0
    by_specimen: dict[int | None, list[Json]] = {}
    valued: dict[int, list[Json]] = {}
    for rep in lab.reports:
        obxs = [obx for obx, _notes in rep.obxs if obx[5]]
        if not obxs:
            continue
        obs = embedded.order_observations(obxs, ctx, dt.datetime_(msg["MSH"][7]), n_obs + 1)
        n_obs += len(obs)
        valued[rep.index] = obs
        if rep.obr is None:
            key = rep.specimen.index if rep.specimen is not None else None
            by_specimen.setdefault(key, []).extend(obs)
        out.extend(obs)
    return valued, by_specimen


def _request(msg: Message, ctx: MapContext, lab: LabMessage, rep: ReportRec, support: list[Json],
             spec_refs: dict[int, Json]) -> Json:
    """One ORC/TQ1/OBR/OBX* report of the order -> a ServiceRequest (elements in MAPPING order)."""
    orc, obr, fac = rep.orc, rep.obr, ctx.facility
    r: Json = {
        "resourceType": "ServiceRequest",
        "id": resource_id(ctx.name, f"r{rep.index}"),
        "meta": ctx.meta(term.PROFILE["ServiceRequest"]),
    }
    dept = orders.department_extension(orc, fac)
    if dept:
        r["extension"] = dept
    ids = order_identifiers(ctx, orc, obr)
    if ids:
        r["identifier"] = ids
    r["status"] = request_status(orc)
    r["intent"] = "order"
    r["category"] = _categories(orc, fac)
    prio = orders.priority(rep.tq1)
    if prio:
        r["priority"] = prio
    code = dt.codeable(obr[4], fac) if obr is not None else None
    r["code"] = code or {"text": "検体検査"}
    details = _order_details(rep, fac)
    if details:
        r["orderDetail"] = details
    if support:
        r["supportingInfo"] = embedded.references(support)
    r["subject"] = dt.patient_ref(ctx.patient_id)
    r.update(_occurrence(obr, rep.tq1))
    authored = (dt.datetime_(orc[9]) if orc is not None else None) or dt.datetime_(msg["MSH"][7])
    if authored:
        r["authoredOn"] = authored
    requester = orders.requester(orc, obr, fac)
    if requester:
        r["requester"] = requester
    if rep.specimen is not None and rep.specimen.index in spec_refs:
        r["specimen"] = [spec_refs[rep.specimen.index]]
    notes = [{"text": t} for t in lab.header_notes + rep.notes]
    notes += [{"text": t} for _obx, ns in rep.obxs for t in ns]
    if notes:
        r["note"] = notes
    return r


def _categories(orc: Segment | None, facility: str) -> list[Json]:
    """The SS-MIX2 data type, SNOMED laboratory procedure, ORC-29 order type."""
    cats = [dt.concept("OML-01", DATA_TYPES["OML-01"].name_ja, term.SSMIX2_DATA_TYPE),
            {"coding": [{"system": term.SNOMED, "code": "108252007",
                         "display": "Laboratory procedure"}]}]
    cc = dt.codeable(orc[29], facility) if orc is not None and orc[29] else None
    if cc:
        cats.append(cc)
    return cats


def _order_details(rep: ReportRec, facility: str) -> list[Json]:
    """The ordered test items: OBX-3 of the OBX without a value (a value is an Observation)."""
    items = (dt.codeable(obx[3], facility) for obx, _notes in rep.obxs if not obx[5])
    return [item for item in items if item]


def _occurrence(obr: Segment | None, tq1: Segment | None) -> Json:
    """OBR-7..OBR-8 as a period when they differ, else OBR-7 (else TQ1-7) as a date-time."""
    start = dt.datetime_(obr[7]) if obr is not None else None
    end = dt.datetime_(obr[8]) if obr is not None else None
    if start and end and end != start:
        return {"occurrencePeriod": {"start": start, "end": end}}
    when = start or (dt.datetime_(tq1[7]) if tq1 is not None else None)
    return {"occurrenceDateTime": when} if when else {}
