"""OMD (OMD^O03) diet orders -> one NutritionOrder per ORC group.

ODS-1 says what an ODS line is: D (diet) -> oralDiet.type, S (supplement) -> supplement,
P (preference) -> foodPreferenceModifier.  TQ1 gives the schedule (HL7 0335 repeat pattern as
timing code) and the period of the diet.  FHIR R4 has no JP Core NutritionOrder profile, so no
meta.profile is written.
"""

from __future__ import annotations

from typing import Callable

from storage.hl7 import Message, Segment

from .jsontypes import Json
from . import datatypes as dt
from . import terminology as term
from .context import MapContext
from . import orders
from .ids import resource_id
from .registry import register

MAPPING: list[tuple[str, str, str]] = [
    ("PID-3", "NutritionOrder.patient", "Patient/{patient id}"),
    ("ORC-1", "NutritionOrder.status", "NW active; CA/OC/DC revoked; HD on-hold"),
    ("ORC-2", "NutritionOrder.identifier", "placer order number (local system placer-order-number)"),
    ("ORC-5", "NutritionOrder.status", "CM completed when ORC-1 is not a cancel"),
    ("ORC-9", "NutritionOrder.dateTime", "falls back to TQ1-7, then the file's 発生日時"),
    ("ORC-12", "NutritionOrder.orderer", "Practitioner display + identifier"),
    ("TQ1-3", "NutritionOrder.oralDiet.schedule.code", "HL7 0335 repeat pattern (TID ...)"),
    ("TQ1-7", "NutritionOrder.oralDiet.schedule.repeat.boundsPeriod.start", ""),
    ("TQ1-8", "NutritionOrder.oralDiet.schedule.repeat.boundsPeriod.end", ""),
    ("ODS-1", "NutritionOrder.oralDiet", "D diet -> oralDiet.type, S -> supplement, P -> foodPreferenceModifier"),
    ("ODS-2", "NutritionOrder.oralDiet.schedule", "service period (meal) as timing code text"),
    ("ODS-3", "NutritionOrder.oralDiet.type", "diet code (local codes kept under the local system)"),
    ("ODS-4", "NutritionOrder.oralDiet.instruction", "text instruction"),
    ("NTE-3", "NutritionOrder.note", ""),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("PV1", "visit snapshot; Encounters come from the ADT-1x..5x files"),
    ("ORC-10", "entered by; NutritionOrder has no enterer"),
    ("ORC-17", "ordering department; NutritionOrder has no element for it"),
    ("ORC-18", "entering device"),
    ("TQ1-1", "set id"),
    ("TQ1-9", "priority; NutritionOrder has no priority"),
    ("ODT", "tray instructions (配膳); no NutritionOrder element"),
    ("OBX", "observations with a diet order are not written by SS-MIX2 sources seen"),
    ("ORC-12.10", "see XCN in docs/mapping.md"),
    ("ORC-29", "order type I/O; NutritionOrder has no category for it (the data type is the category)"),
]


def _schedule(tq1: Segment | None, ods: Segment | None = None) -> list[Json]:
    timing: Json = {}
    if tq1 is not None:
        subs = tq1.get(3) and tq1[3].subcomponents(1)
        if subs and subs[0]:
            code: Json = {"code": subs[0]}
            if len(subs) > 1 and subs[1]:
                code["display"] = subs[1]
            if len(subs) > 2 and subs[2]:
                code["system"] = term.system_for(subs[2]) or ""
            timing["code"] = {"coding": [code], **({"text": subs[1]} if len(subs) > 1 and subs[1] else {})}
        bounds = dt.period(tq1[7], tq1[8])
        if bounds:
            timing["repeat"] = {"boundsPeriod": bounds}
    if ods is not None and ods[2] and "code" not in timing:
        cc = dt.codeable(ods[2])
        if cc:
            timing["code"] = cc
    return [timing] if timing else []


def _order(group: list[Segment], index: int, ctx: MapContext) -> Json:
    """One ORC group (ORC, TQ1, ODS*, NTE*) -> a NutritionOrder."""
    orc = group[0]
    tq1 = next((s for s in group if s.id == "TQ1"), None)
    n: Json = {"resourceType": "NutritionOrder", "id": resource_id(ctx.name, index),
               "meta": ctx.meta()}
    order_no = orc[2].component(1)
    if order_no:
        n["identifier"] = [dt.identifier(term.local_id_system(ctx.facility, "placer-order-number"),
                                         order_no)]
    n["status"] = term.request_status(orc.get(1), orc.get(5))
    n["intent"] = "order"
    n["patient"] = dt.patient_ref(ctx.patient_id)
    n["dateTime"] = (dt.datetime_(orc[9]) or (dt.datetime_(tq1[7]) if tq1 is not None else None)
                     or ctx.last_updated)
    orderer = dt.practitioner(orc[12], ctx.facility)
    if orderer:
        n["orderer"] = orderer
    diet: Json = {}
    for ods in (s for s in group if s.id == "ODS"):
        _ODS_KIND.get(ods.get(1), _diet)(n, diet, ods, tq1, ctx.facility)
    if not diet and tq1 is not None and "supplement" not in n:
        sched = _schedule(tq1)
        if sched:
            diet["schedule"] = sched
    if diet:
        n["oralDiet"] = diet
    notes = orders.nte_notes(group)
    if notes:
        n["note"] = [{"text": t} for t in notes]
    return n


def _supplement(n: Json, diet: Json, ods: Segment, tq1: Segment | None, facility: str) -> None:
    """ODS-1 S: a supplement (ODS-3 type, ODS-4 instruction)."""
    code, text = dt.codeable(ods[3], facility), ods[4].text
    sup: Json = {}
    if code:
        sup["type"] = code
    if text:
        sup["instruction"] = text
    n.setdefault("supplement", []).append(sup or {"instruction": "補助食品"})


def _preference(n: Json, diet: Json, ods: Segment, tq1: Segment | None, facility: str) -> None:
    """ODS-1 P: a food preference (ODS-3, else the ODS-4 text)."""
    code, text = dt.codeable(ods[3], facility), ods[4].text
    if code:
        n.setdefault("foodPreferenceModifier", []).append(code)
    elif text:
        n.setdefault("foodPreferenceModifier", []).append({"text": text})


def _diet(n: Json, diet: Json, ods: Segment, tq1: Segment | None, facility: str) -> None:
    """ODS-1 D (or empty/other): the oral diet (ODS-3 types, ODS-4 instructions, schedule)."""
    code, text = dt.codeable(ods[3], facility), ods[4].text
    if code:
        diet.setdefault("type", []).append(code)
    if text:
        diet["instruction"] = "\n".join(x for x in (diet.get("instruction"), text) if x)
    if "schedule" not in diet:
        sched = _schedule(tq1, ods)
        if sched:
            diet["schedule"] = sched


# ODS-1 type of the ODS segment -> where it goes (anything else is a diet).
_ODS_KIND: dict[str, Callable[[Json, Json, Segment, Segment | None, str], None]] = {
    "S": _supplement, "P": _preference,
}


@register("OMD")
def map_omd(msg: Message, ctx: MapContext) -> list[Json]:
    return [_order(g, i, ctx) for i, g in enumerate(msg.groups("ORC"), 1)]
