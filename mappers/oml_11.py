"""OML-11 検体検査結果通知 (OUL^R22) -> Specimen, JP_Observation_LabResult, DiagnosticReport.

OUL^R22 nests results under the specimen: ``SPM (OBR ORC? OBX* NTE*)+`` — the ORC comes
*after* its OBR, unlike OML^O33 (``SPM ORC OBR``); both orders are accepted.  One Observation
per OBX, one DiagnosticReport per OBR grouping them, one Specimen per SPM.

Ids: Specimen ``{key}.s{n}``, DiagnosticReport ``{key}.r{n}``, Observation ``{key}.r{n}.{m}``
(n = OBR position, m = OBX position under it) — laboratories re-send a result with the same
layout (preliminary -> final), so ids survive the update.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from storage.hl7 import STANDARD_DELIMITERS, Delimiters, Field, Message, Segment
from storage.memo import memo
from storage.names import DATA_TYPES
from storage.timestamps import parse_ts

from . import datatypes as dt
from . import terminology as term
from .context import MapContext
from .fhirtime import instant_text
from .ids import resource_id, unhashed_id
from .jsontypes import Json
from .registry import register

MAPPING: list[tuple[str, str, str]] = [
    ("SPM-2", "Specimen.identifier", "placer/filler specimen id (local identifier system)"),
    ("SPM-4", "Specimen.type", "JLAC10 material (JC10) and local triplets"),
    ("SPM-8", "Specimen.collection.bodySite", ""),
    ("SPM-12", "Specimen.collection.quantity", ""),
    ("SPM-17", "Specimen.collection.collectedDateTime", "also Observation.effectiveDateTime and DiagnosticReport.effectiveDateTime"),
    ("SPM-18", "Specimen.receivedTime", ""),
    ("OBR-2", "DiagnosticReport.identifier", "placer order number (local identifier system)"),
    ("OBR-3", "DiagnosticReport.identifier", "filler order number"),
    ("OBR-4", "DiagnosticReport.code", "local set code kept with its local system"),
    ("OBR-7", "Observation.effectiveDateTime", "when SPM-17 is empty"),
    ("OBR-22", "DiagnosticReport.issued", "also Observation.issued"),
    ("OBR-25", "DiagnosticReport.status", "terminology.REPORT_STATUS (F final, C corrected, P preliminary, X cancelled ...); else derived from the OBX-11 statuses"),
    ("ORC-2", "Observation.identifier", "JP Core rule ORC-2_OBR-4_SPM-4_OBX-3(_OBX-4); also basedOn by identifier"),
    ("OBX-2", "Observation.value[x]", "NM/SN -> valueQuantity, ST -> valueString (valueQuantity for '> 100'), CWE/CE -> valueCodeableConcept"),
    ("OBX-3", "Observation.code", "JLAC10 (JC10) + local code; text = item name"),
    ("OBX-4", "Observation.identifier", "sub-ID appended to the identifier (culture isolates)"),
    ("OBX-5", "Observation.value[x]", "comparators '> 100', '<= 0.5' -> Quantity.comparator; empty -> dataAbsentReason"),
    ("OBX-6", "Observation.valueQuantity.unit", "written unit kept; UCUM system/code when known"),
    ("OBX-7", "Observation.referenceRange", "'3.5-5.0' low/high, '<=5' high, '>10' low; text always kept"),
    ("OBX-8", "Observation.interpretation", "H/L/HH/LL/N/A/AA... (v3-ObservationInterpretation); derived from the range when empty"),
    ("OBX-11", "Observation.status", "terminology.OBSERVATION_STATUS: F final, C corrected, P/S/A preliminary, X cancelled, D/W entered-in-error, R/I/O registered; empty/unknown -> unknown"),
    ("OBX-14", "Observation.effectiveDateTime", "when SPM-17 and OBR-7 are empty"),
    ("NTE-3", "Observation.note", "after an OBX; after OBR/ORC -> DiagnosticReport.conclusion; after SPM -> Specimen.note"),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("OBX-1", "set id is not unique across OBR groups in real files; the OBX position is used for ids"),
    ("SPM-1", "set id only numbers the specimens; the SPM position is used for ids"),
    ("OBR-1", "set id only numbers the requests; the OBR position is used for ids"),
    ("PV1", "visit snapshot of the order (class, ward, attending, visit number); Encounters come from the ADT files and the order's class from ORC-29, else PV1-2"),
    ("ORC-1", "the ordering side's field: it belongs to the ServiceRequest of the OML-01 order, which DiagnosticReport.basedOn references by order number"),
    ("ORC-5", "the ordering side's field: it belongs to the ServiceRequest of the OML-01 order, which DiagnosticReport.basedOn references by order number"),
    ("ORC-9", "the ordering side's field: it belongs to the ServiceRequest of the OML-01 order, which DiagnosticReport.basedOn references by order number"),
    ("ORC-10", "the ordering side's field: it belongs to the ServiceRequest of the OML-01 order, which DiagnosticReport.basedOn references by order number"),
    ("ORC-12", "the ordering side's field: it belongs to the ServiceRequest of the OML-01 order, which DiagnosticReport.basedOn references by order number"),
    ("ORC-17", "the ordering side's field: it belongs to the ServiceRequest of the OML-01 order, which DiagnosticReport.basedOn references by order number"),
    ("ORC-29", "the ordering side's field: it belongs to the ServiceRequest of the OML-01 order, which DiagnosticReport.basedOn references by order number"),
    ("OBR-16", "the ordering side's field: it belongs to the ServiceRequest of the OML-01 order, which DiagnosticReport.basedOn references by order number"),
    ("OBR-17", "the ordering side's field: it belongs to the ServiceRequest of the OML-01 order, which DiagnosticReport.basedOn references by order number"),
    ("OBR-5", "priority (HL7 v2.5 retained field); the ServiceRequest's priority is TQ1-9 of OML-01"),
    ("OBR-6", "requested time (HL7 v2.5 retained field)"),
    ("OBR-8", "end of the collection period; the report keeps the start (OBR-7 / SPM-17)"),
    ("OBR-10", "collector; no DiagnosticReport element"),
    ("OBR-11", "specimen action code; an order-side field"),
    ("OBR-12", "danger code (感染リスク); no DiagnosticReport element - kept as Specimen/ServiceRequest matter at the source"),
    ("OBR-14", "specimen received time (retained field); SPM-18 is the Specimen's receivedTime"),
    ("OBR-24", "diagnostic service section; the category is LAB and the data type"),
    ("OBX-14", "time of the analysis; effectiveDateTime is the collection time (SPM-17, else OBR-7) and OBX-14 fills in only when both are empty"),
    ("OBR-7", "collection time of the order: SPM-17 (the specimen's collection time) wins when both are written"),
    ("SPM-26", "number of specimen containers: no Specimen element for a count"),
    ("SPM-10", "specimen collection site as text; SPM-8 is the coded body site"),
    ("SPM-25", "specimen container (容器); no Specimen.container for a type alone in JP Core"),
]



def lab_categories() -> list[Json]:
    """JP Core wants its simple category first, then the HL7 observation-category."""
    return [
        {"coding": [{"system": term.JP_OBSERVATION_CATEGORY, "code": "laboratory",
                     "display": "検体検査"}]},
        {"coding": [{"system": term.OBSERVATION_CATEGORY, "code": "laboratory",
                     "display": "Laboratory"}]},
    ]


def report_category() -> list[Json]:
    return [{"coding": [{"system": term.DIAGNOSTIC_SERVICE_SECTION, "code": "LAB",
                         "display": "Laboratory"}]}]


INTERPRETATIONS = {"H", "L", "HH", "LL", "N", "A", "AA", "HU", "LU", "U", "D", "B", "W", "S",
                   "R", "I", "MS", "VS", "NEG", "POS", "IND", "DET", "ND", "<", ">", "E", "EX",
                   "NR", "RR", "QCF", "TOX", "CAR", "H>", "L<", "HX", "LX"}


# --- message walk ------------------------------------------------------------------------------

@dataclass
class SpecimenRec:
    index: int
    spm: Segment
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportRec:
    index: int
    obr: Segment | None
    specimen: SpecimenRec | None
    orc: Segment | None = None
    tq1: Segment | None = None
    obxs: list[tuple[Segment, list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class LabMessage:
    specimens: list[SpecimenRec]
    reports: list[ReportRec]
    header_notes: list[str]


def nte_text(seg: Segment) -> str:
    return "\n".join(r.text for r in seg[3].repetitions if r.text)


def walk(msg: Message) -> LabMessage:
    """Group SPM / ORC / OBR / OBX / NTE in either OUL^R22 or OML^O33 order."""
    specimens: list[SpecimenRec] = []
    reports: list[ReportRec] = []
    header: list[str] = []
    spec: SpecimenRec | None = None
    report: ReportRec | None = None
    pending_orc: Segment | None = None
    pending_tq1: Segment | None = None
    last_obx: list[str] | None = None
    oru = msg.message_type[0] == "ORU"  # ORU^R01: SPM follows the OBR/OBX it belongs to
    for seg in msg:
        sid = seg.id
        if sid == "SPM":
            spec = SpecimenRec(len(specimens) + 1, seg)
            specimens.append(spec)
            if oru and report is not None and report.specimen is None:
                report.specimen = spec
            report, last_obx = None, None
        elif sid == "OBR":
            report = ReportRec(len(reports) + 1, seg, spec, pending_orc, pending_tq1)
            reports.append(report)
            pending_orc = pending_tq1 = None
            last_obx = None
        elif sid == "ORC":
            if report is not None and report.orc is None and not report.obxs:
                report.orc = seg
            else:
                pending_orc, pending_tq1 = seg, None
                report, last_obx = None, None
        elif sid == "TQ1":
            if report is not None and report.tq1 is None:
                report.tq1 = seg
            else:
                pending_tq1 = seg
        elif sid == "OBX":
            if report is None:  # OBX before any OBR (OML-01 specimen OBX): a report of its own
                report = ReportRec(len(reports) + 1, None, spec, pending_orc, pending_tq1)
                reports.append(report)
                pending_orc = pending_tq1 = None
            notes: list[str] = []
            report.obxs.append((seg, notes))
            last_obx = notes
        elif sid == "NTE":
            text = nte_text(seg)
            if not text:
                continue
            if last_obx is not None:
                last_obx.append(text)
            elif report is not None:
                report.notes.append(text)
            elif spec is not None:
                spec.notes.append(text)
            else:
                header.append(text)
    return LabMessage(specimens, reports, header)


# --- shared builders -----------------------------------------------------------------------------

def specimens(ctx: MapContext, lab: LabMessage) -> tuple[list[Json], dict[int, Json]]:
    """The Specimen resources of a message, and a reference to each by its SPM position."""
    out: list[Json] = []
    refs: dict[int, Json] = {}
    for rec in lab.specimens:
        res = specimen_resource(ctx, rec)
        refs[rec.index] = {"reference": f"Specimen/{res['id']}"}
        out.append(res)
    return out, refs


def specimen_resource(ctx: MapContext, rec: SpecimenRec) -> Json:
    spm, fac = rec.spm, ctx.facility
    r: Json = {
        "resourceType": "Specimen",
        "id": resource_id(ctx.name, f"s{rec.index}"),
        "meta": ctx.meta(term.PROFILE["Specimen"]),
    }
    ids = []
    for n, kind in ((1, "placer-specimen-id"), (2, "filler-specimen-id")):
        value = spm[2].component(n, 1)
        if value:
            ids.append({"system": term.local_id_system(fac, kind), "value": value})
    if ids:
        r["identifier"] = ids
    stype = dt.codeable(spm[4], fac)
    if stype:
        r["type"] = stype
    r["subject"] = dt.patient_ref(ctx.patient_id)
    received = dt.datetime_(spm[18])
    if received:
        r["receivedTime"] = received
    coll: Json = {}
    start, end = dt.datetime_(spm[17].component(1)), dt.datetime_(spm[17].component(2))
    if start and end and end != start:
        coll["collectedPeriod"] = {"start": start, "end": end}
    elif start:
        coll["collectedDateTime"] = start
    subs = spm[12].subcomponents(2) + ["", ""]
    amount = dt.quantity(spm[12].component(1), unit_text=subs[1] or subs[0])
    if amount:
        coll["quantity"] = amount
    site = dt.codeable(spm[8], fac)
    if site:
        coll["bodySite"] = site
    if coll:
        r["collection"] = coll
    notes = [{"text": t} for t in rec.notes]
    if notes:
        r["note"] = notes
    return r


def order_identifiers(ctx: MapContext, orc: Segment | None, obr: Segment | None) -> list[Json]:
    """Placer (ORC-2 / OBR-2) and filler (ORC-3 / OBR-3) order numbers."""
    out = []
    for n, kind in ((2, "placer-order-number"), (3, "filler-order-number")):
        value = ((orc.get(n) if orc is not None else "") or (obr.get(n) if obr is not None else "")).strip()
        if value:
            out.append({"system": term.local_id_system(ctx.facility, kind), "value": value})
    return out


def based_on(ctx: MapContext, orc: Segment | None, obr: Segment | None) -> list[Json]:
    placer = order_identifiers(ctx, orc, obr)
    if placer and placer[0]["system"].endswith("placer-order-number"):
        return [{"type": "ServiceRequest", "identifier": placer[0]}]
    return []


def instant(f: Field) -> str | None:
    return _instant(f.component(1))


@memo(4096)
def _instant(text: str) -> str | None:
    """Cached: OBR-22 repeats in every report of a message (the string is immutable)."""
    t = parse_ts(text)
    return instant_text(t) if t else None


# --- values ------------------------------------------------------------------------------------

_COMPARATOR_START = ("<", ">", "≦", "≧", "＜", "＞", "≤", "≥")
_FOLD = str.maketrans({"〜": "-", "～": "-", "~": "-", "－": "-", "−": "-", "ー": "-",
                       "≦": "<=", "≤": "<=", "≧": ">=", "≥": ">=", "＜": "<", "＞": ">",
                       "＝": "="})
_RANGE = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*-\s*([-+]?\d+(?:\.\d+)?)$")
_BOUND = re.compile(r"^(<=|=<|>=|=>|<|>)\s*([-+]?\d+(?:\.\d+)?)$")


_UNIT_KEYS = ("unit", "system", "code")


def _unit_only(q: Json | None) -> Json:
    return {k: v for k, v in (q or {}).items() if k in _UNIT_KEYS}


def reference_range(text: str, unit_of: Json | None) -> Json | None:
    """OBX-7 text -> referenceRange: ``3.5-5.0`` low/high, ``<=5`` high, ``>10`` low."""
    text = (text or "").strip()
    if not text:
        return None
    unit = tuple((k, v) for k, v in unit_of.items() if k in _UNIT_KEYS) if unit_of else ()
    # Each test item repeats its range in every message: parse once, hand out fresh dicts.
    return {k: v.copy() if type(v) is dict else v for k, v in _range(text, unit).items()}


@memo(8192)
def _range(text: str, unit_items: tuple[tuple[str, str], ...]) -> Json:
    """Never hand this dict out: :func:`reference_range` copies it."""
    folded = unicodedata.normalize("NFKC", text.translate(_FOLD)).replace(" ", "")
    rr: Json = {}
    unit = dict(unit_items)
    m = _RANGE.match(folded)
    if m:
        rr["low"] = {"value": Decimal(m.group(1)), **unit}
        rr["high"] = {"value": Decimal(m.group(2)), **unit}
    else:
        m = _BOUND.match(folded)
        if m:
            side = "high" if m.group(1).startswith("<") or m.group(1).startswith("=<") else "low"
            rr[side] = {"value": Decimal(m.group(2)), **unit}
    rr["text"] = text
    return rr


def value_of(obx: Segment, fac: str) -> Json:
    """value[x] of one OBX by its value type OBX-2.

    Stricter than ``datatypes.obx_value`` on purpose: JP_Observation_LabResult allows only
    Quantity, CodeableConcept or string, and an ST result stays a string unless it is written
    as an inequality (``> 100``), which the NHO rule uses for out-of-range values.
    """
    return _value(obx.get(2).upper(), obx[5], fac, _units(obx[6]))


def _units(f6: Field) -> tuple[tuple[str, str], ...]:
    """Quantity unit items of OBX-6 (written unit, UCUM when known)."""
    if not f6:
        return ()
    code, text = dt.unit_parts(f6)
    return dt.unit_items(code, text)


def _value(vt: str, f5: Field, fac: str, units: tuple[tuple[str, str], ...]) -> Json:
    """:func:`value_of` with OBX-2 (upper-cased) and the OBX-6 unit items already read."""
    if not f5:
        return {}
    reps = f5.repetitions
    text = reps[0].text if len(reps) == 1 else "\n".join(r.text for r in reps if r.text)
    if vt in ("CWE", "CE", "CNE", "CF"):
        cc = dt.codeable(f5, fac)
        return {"valueCodeableConcept": cc} if cc else {"valueString": text}
    if vt == "NM":
        q = dt.quantity_with(f5.text, units)
        return {"valueQuantity": q} if q else {"valueString": text}
    if vt == "SN":
        comp, num, sep = f5.component(1), f5.component(2), f5.component(3)
        q = dt.quantity_with(f"{comp}{num}", units) if not sep else None
        return {"valueQuantity": q} if q else {"valueString": text.replace("^", "")}
    if vt == "ST" and text.lstrip().startswith(_COMPARATOR_START):
        q = dt.quantity_with(unicodedata.normalize("NFKC", text).strip()
                             if "＞" in text or "＜" in text else text, units)
        if q:
            return {"valueQuantity": q}
    return {"valueString": text} if text else {}


def interpretation(obx: Segment, value: Json, rr: Json | None) -> list[Json]:
    if rr is None:
        low = high = None
    else:
        low, high = rr.get("low", {}).get("value"), rr.get("high", {}).get("value")
    return _interpretation(obx[8], value, rr is not None, low, high)


def _interpretation(f8: Field | None, value: Json, has_range: bool, low: Decimal | None,
                    high: Decimal | None) -> list[Json]:
    """OBX-8 flags; when there are none, L/H/N from the value against the range bounds."""
    codes = [r.component(1).strip() for r in f8.repetitions if r.component(1).strip()] if f8 else []
    out = []
    for code in codes:
        if code.upper() in INTERPRETATIONS:
            out.append({"coding": [{"system": term.INTERPRETATION, "code": code.upper()}],
                        "text": code})
        else:
            out.append({"text": code})
    if out or not has_range:
        return out
    q = value.get("valueQuantity")
    if not q or "comparator" in q:
        return out
    if low is None and high is None:
        return out
    v = q["value"]
    code = "L" if low is not None and v < low else "H" if high is not None and v > high else "N"
    return [{"coding": [{"system": term.INTERPRETATION, "code": code}], "text": "基準範囲から判定"}]


def report_time(rep: ReportRec) -> str | None:
    """JP Core: the specimen collection time (SPM-17), else OBR-7."""
    if rep.specimen is not None:
        t = dt.datetime_(rep.specimen.spm[17].component(1))
        if t:
            return t
    return dt.datetime_(rep.obr[7]) if rep.obr is not None else None


def _code(f: Field, ctx: MapContext, rep: ReportRec) -> str:
    return f.component(1) or f.component(4)


class ObxItem(NamedTuple):
    """What an OBX shares with every other result of the same test item: everything read
    from OBX-2/3/6/7/11.  Built once per distinct field texts (:func:`_item_std`); the
    dicts in it are templates, copied into each resource."""

    vt: str  # OBX-2, upper-cased
    code: Json  # Observation.code template
    key_code: str  # OBX-3.1 (else .4) for the identifier key
    units: tuple[tuple[str, str], ...]  # Quantity unit items of OBX-6
    status: str  # Observation.status from OBX-11
    range_q: Json | None  # referenceRange template for a Quantity value (with units)
    range_text: Json | None  # referenceRange template for any other value
    low: Decimal | None
    high: Decimal | None


def _item(vt: str, f3: str, f6: str, f7: str, f11: str, fac: str, d: Delimiters) -> ObxItem:
    obx3, obx6 = Field(f3, d), Field(f6, d)
    units = _units(obx6)
    text = Field(f7, d).text.strip()
    range_q = _range(text, units) if text else None
    range_text = (range_q if not units else _range(text, ())) if text else None
    return ObxItem(
        vt=Field(vt, d).component(1).upper(),
        code=dt.codeable(obx3, fac) or {"text": "(検査項目コードなし)"},
        key_code=obx3.component(1) or obx3.component(4),
        units=units,
        status=term.OBSERVATION_STATUS.get(Field(f11, d).component(1).upper(), "unknown"),
        range_q=range_q,
        range_text=range_text,
        low=range_q["low"]["value"] if range_q and "low" in range_q else None,
        high=range_q["high"]["value"] if range_q and "high" in range_q else None,
    )


@memo(8192, reads="ucum")
def _item_std(vt: str, f3: str, f6: str, f7: str, f11: str, fac: str) -> ObxItem:
    """Never hand its dicts out: :func:`observation` copies them.  Reads the UCUM table
    (OBX-6 units): emptied by ``datatypes.add_ucum_units``."""
    return _item(vt, f3, f6, f7, f11, fac, STANDARD_DELIMITERS)


def _copy_range(rr: Json) -> Json:
    out = rr.copy()
    if "low" in out:
        out["low"] = out["low"].copy()
    if "high" in out:
        out["high"] = out["high"].copy()
    return out


_LAB_PROFILE = term.PROFILE["ObservationLabResult"]
_OBX_WIDTH = 15  # OBX-1 .. OBX-14 read below


def observation(msg: Message, ctx: MapContext, rep: ReportRec, m: int, obx: Segment,
                notes: list[str], spec_ref: Json | None, issued: str | None,
                when: str | None, meta: Json, shared: Json) -> Json:
    """One OBX; ``when`` is the report's time (SPM-17/OBR-7), OBX-14 then MSH-7 fill in;
    ``shared`` holds what every OBX of the report repeats (key prefix, basedOn)."""
    fac = ctx.facility
    if "prefix" not in shared:
        orc_no = (rep.orc.get(2) if rep.orc is not None else "") or (
            rep.obr.get(2) if rep.obr is not None else "")
        shared["prefix"] = "_".join([orc_no, _code(rep.obr[4], ctx, rep) if rep.obr is not None else "",
                                     _code(rep.specimen.spm[4], ctx, rep) if rep.specimen else ""])
        shared["basedOn"] = based_on(ctx, rep.orc, rep.obr)
        shared["id"] = unhashed_id(ctx.name, f"r{rep.index}")
        shared["subject"] = dt.patient_ref(ctx.patient_id)
    fs = obx.fields
    if len(fs) < _OBX_WIDTH:
        fs = fs + [""] * (_OBX_WIDTH - len(fs))
    if msg.delimiters is STANDARD_DELIMITERS:
        item = _item_std(fs[2], fs[3], fs[6], fs[7], fs[11], fac)
    else:
        item = _item(fs[2], fs[3], fs[6], fs[7], fs[11], fac, msg.delimiters)
    sub_id = obx.get(4) if fs[4] else ""
    key = f"{shared['prefix']}_{item.key_code}" + (f"_{sub_id}" if sub_id else "")
    status = item.status
    rid = f"{shared['id']}.{m}"
    r_meta = meta.copy()
    r_meta["profile"] = [_LAB_PROFILE]
    r: Json = {
        "resourceType": "Observation",
        "id": rid if len(rid) <= 64 else resource_id(ctx.name, f"r{rep.index}", m),
        "meta": r_meta,
        "identifier": [{"system": term.RESOURCE_INSTANCE, "value": key}],
    }
    if shared["basedOn"]:
        r["basedOn"] = [{"type": b["type"], "identifier": b["identifier"].copy()}
                        for b in shared["basedOn"]]
    r["status"] = status
    r["category"] = lab_categories()
    r["code"] = dt.copy_concept(item.code)
    r["subject"] = shared["subject"].copy()
    eff = when or dt.datetime_(obx[14]) or dt.datetime_(msg["MSH"][7])
    if eff:
        r["effectiveDateTime"] = eff
    if issued:
        r["issued"] = issued
    value = _value(item.vt, obx[5], fac, item.units) if fs[5] else {}
    if value:
        r.update(value)
    else:
        reason = "not-performed" if status in ("cancelled", "entered-in-error") else "unknown"
        r["dataAbsentReason"] = {"coding": [{"system": term.DATA_ABSENT_REASON, "code": reason}]}
    rr = item.range_q if "valueQuantity" in value else item.range_text
    interp = _interpretation(obx[8] if fs[8] else None, value, rr is not None, item.low, item.high)
    if interp:
        r["interpretation"] = interp
    if notes:
        r["note"] = [{"text": t} for t in notes]
    if spec_ref:
        r["specimen"] = spec_ref.copy()
    if rr:
        r["referenceRange"] = [_copy_range(rr)]
    return r


def report_status(rep: ReportRec, obs_status: list[str]) -> str:
    if rep.obr is not None and rep.obr.get(25).upper() in term.REPORT_STATUS:
        return term.REPORT_STATUS[rep.obr.get(25).upper()]
    s = set(obs_status)
    if not s:
        return "registered"
    if s <= {"cancelled", "entered-in-error"}:
        return "cancelled"
    if "preliminary" in s or "registered" in s or "unknown" in s:
        return "partial" if s & {"final", "corrected", "amended"} else "preliminary"
    if s & {"corrected", "amended"}:
        return "corrected"
    return "final"


@register("OML-11")
def map_oml_11(msg: Message, ctx: MapContext) -> list[Json]:
    lab = walk(msg)
    out, spec_refs = specimens(ctx, lab)
    fac = ctx.facility
    meta = ctx.meta()
    for rep in lab.reports:
        spec_ref = spec_refs.get(rep.specimen.index) if rep.specimen else None
        issued = instant(rep.obr[22]) if rep.obr is not None else None
        when = report_time(rep)
        shared: Json = {}
        observations = [observation(msg, ctx, rep, m, obx, notes, spec_ref, issued, when, meta,
                                    shared)
                        for m, (obx, notes) in enumerate(rep.obxs, 1)]
        dr: Json = {
            "resourceType": "DiagnosticReport",
            "id": resource_id(ctx.name, f"r{rep.index}"),
            "meta": {**meta, "profile": [term.PROFILE["DiagnosticReportLabResult"]]},
        }
        ids = order_identifiers(ctx, None, rep.obr) or order_identifiers(ctx, rep.orc, None)
        if ids:
            dr["identifier"] = ids
        bo = based_on(ctx, rep.orc, rep.obr)
        if bo:
            dr["basedOn"] = bo
        dr["status"] = report_status(rep, [o["status"] for o in observations])
        dr["category"] = report_category() + [dt.concept(
            "OML-11", DATA_TYPES["OML-11"].name_ja, term.SSMIX2_DATA_TYPE)]
        dr["code"] = (dt.codeable(rep.obr[4], fac) if rep.obr is not None else None) or {
            "text": "検体検査"}
        dr["subject"] = dt.patient_ref(ctx.patient_id)
        eff = when or (observations[0].get("effectiveDateTime") if observations else None) \
            or dt.datetime_(msg["MSH"][7])
        if eff:
            dr["effectiveDateTime"] = eff
        if issued:
            dr["issued"] = issued
        if spec_ref:
            dr["specimen"] = [spec_ref.copy()]
        if observations:
            dr["result"] = [{"reference": f"Observation/{o['id']}"} for o in observations]
        conclusion = "\n".join(lab.header_notes + rep.notes)
        if conclusion:
            dr["conclusion"] = conclusion
        out.extend(observations)
        out.append(dr)
    return out
