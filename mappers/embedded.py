"""Segments any message may carry beside its own content: AL1 allergies and OBX observations.

SS-MIX2 writers put the patient's allergies (AL1) into order messages too (RDE^O11, OML^O33,
OMD^O03 and RAS^O17 all allow ``AL1*`` after PID), and the data a dose or a test is based on
(身長, 体重, 体表面積, 感染症, 病名) into OBX segments of the order.  Both are mapped wherever
they occur: AL1 -> AllergyIntolerance (duplicates of the same allergen across files are merged
by :func:`dedupe_allergies` when a patient's resources are gathered), OBX with a value ->
Observation, referenced from the order (``supportingInformation`` / ``supportingInfo``).
Body height, weight and surface area become vital-sign Observations.
"""

from __future__ import annotations

from storage.hl7 import Message, Segment

from .jsontypes import Json
from . import datatypes as dt
from . import terminology as term
from .adt_61 import allergy
from .context import MapContext
from .ids import resource_id
from .registry import register_al1

# OBX-3 texts of body measurements when the code is not JLAC10 (local codes in orders).
_BODY_BY_NAME = {"身長": "9N001", "体重": "9N006"}
# Body surface area: no JP Core body-measurement code; LOINC 8277-6 marks it a vital sign.
_BSA_NAMES = ("体表面積", "BSA")
_LOINC = "http://loinc.org"


def _body_prefix(obx: Segment) -> str:
    code = obx[3].component(1)
    prefix = code[:5]
    if prefix in term.BODY_MEASUREMENTS:
        return prefix
    name = obx[3].component(2) or obx[3].component(5)
    if name in _BODY_BY_NAME:
        return _BODY_BY_NAME[name]
    if any(n in name for n in _BSA_NAMES):
        return "BSA"
    return ""


def observation(obx: Segment, rid: str, ctx: MapContext, fallback: str | None) -> Json:
    """One OBX -> JP_Observation_BodyMeasurement (height/weight, + MEDIS and LOINC codes),
    a vital-sign Observation (body surface area), a lab result (ABO/Rh) or JP_Observation_Common."""
    prefix = _body_prefix(obx)
    if prefix == "BSA":
        category = [{"coding": [{"system": term.OBSERVATION_CATEGORY, "code": "vital-signs"}]}]
        obs = dt.obx_observation(obx, ctx, rid, category, term.PROFILE["ObservationVitalSigns"],
                                 fallback)
        obs["code"].setdefault("coding", []).append(
            {"system": _LOINC, "code": "8277-6", "display": "Body surface area"})
        return obs
    if prefix:
        medis, display, cat = term.BODY_MEASUREMENTS[prefix]
        category = [
            {"coding": [{"system": term.JP_OBSERVATION_CATEGORY, "code": "body-measurement"}]},
            {"coding": [{"system": term.OBSERVATION_CATEGORY, "code": "vital-signs"}]},
            {"coding": [{"system": term.BODY_MEASUREMENT_CATEGORY, "code": cat}]},
        ]
        obs = dt.obx_observation(obx, ctx, rid, category,
                                 term.PROFILE["ObservationBodyMeasurement"], fallback)
        obs["code"].setdefault("coding", []).append(
            {"system": term.BODY_MEASUREMENT_CODE, "code": medis, "display": display})
        return obs
    code = obx[3].component(1)
    lab = [{"coding": [{"system": term.JP_OBSERVATION_CATEGORY, "code": "laboratory"}]}]
    if code[:5] in term.BLOOD_TYPES:
        obs = dt.obx_observation(obx, ctx, rid, lab, term.PROFILE["ObservationLabResult"], fallback)
        clins, display = term.BLOOD_TYPES[code[:5]]
        if code != clins:
            obs["code"].setdefault("coding", []).append(
                {"system": term.CLINS_CORE_LAB, "code": clins, "display": display})
        return obs
    return dt.obx_observation(obx, ctx, rid, lab, term.PROFILE["ObservationCommon"], fallback)


def order_observations(obxs: list[Segment], ctx: MapContext, fallback: str | None,
                       start: int = 1) -> list[Json]:
    """The OBX segments of an order (in message order) -> Observations ``{key}.obs.{n}``."""
    return [observation(obx, resource_id(ctx.name, "obs", n), ctx, fallback)
            for n, obx in enumerate(obxs, start)]


def references(observations: list[Json]) -> list[Json]:
    return [{"reference": f"Observation/{o['id']}"} for o in observations]


def supporting(r: Json, obxs: list[Segment], ctx: MapContext, fallback: str | None,
               start: int) -> list[Json]:
    """An order's OBX (身長, 体重 ... it rests on) -> Observations numbered from ``start``,
    referenced from ``r.supportingInformation``; [] (and ``r`` unchanged) when there are none."""
    if not obxs:
        return []
    obs = order_observations(obxs, ctx, fallback, start)
    r["supportingInformation"] = references(obs)
    return obs


@register_al1
def allergies(msg: Message, ctx: MapContext) -> list[Json]:
    """Every AL1 of the message -> AllergyIntolerance ``{key}.alg.{n}``."""
    return [allergy(ctx, resource_id(ctx.name, "alg", i), al1[2], al1[3], al1[4], al1[5], al1[6])
            for i, al1 in enumerate(msg.segments("AL1"), 1)]


# An allergen: its sorted (system, code) pairs, else ("text", the written name).
AllergenKey = tuple[str, ...] | tuple[tuple[str, str], ...]


def allergen_key(a: Json) -> AllergenKey | None:
    codes = sorted((c.get("system", ""), c.get("code", ""))
                   for c in a.get("code", {}).get("coding", []) if c.get("code"))
    if codes:
        return tuple(codes)
    text = a.get("code", {}).get("text", "")
    return ("text", text) if text and text != "(アレルゲン不明)" else None


def dedupe_allergies(resources: list[Json]) -> list[Json]:
    """Drop AllergyIntolerances that repeat an allergen already recorded for the patient.

    ADT-61 (IAM, the allergy register) wins over ADT-00's AL1, which wins over the AL1 copies
    in order messages; within one source the newest file (meta.lastUpdated) wins.  The kept
    resource is not changed; the order of ``resources`` is kept.  Pure: the service layer
    calls it when it gathers a patient's resources.
    """
    def rank(a: Json) -> tuple[int, tuple[int, ...]]:
        src = a.get("meta", {}).get("source", "")
        kind = 0 if "/ADT-61/" in src else 1 if "/ADT-00/" in src else 2
        return (kind, _neg(a.get("meta", {}).get("lastUpdated", "")))

    best: dict[AllergenKey, Json] = {}
    for a in resources:
        if a.get("resourceType") != "AllergyIntolerance":
            continue
        key = allergen_key(a)
        if key is None:
            continue
        status = a.get("verificationStatus", {}).get("coding", [{}])[0].get("code")
        if status == "entered-in-error":
            continue
        cur = best.get(key)
        if cur is None or rank(a) < rank(cur):
            best[key] = a
    keep = {id(a) for a in best.values()}
    return [r for r in resources if r.get("resourceType") != "AllergyIntolerance"
            or id(r) in keep or allergen_key(r) is None
            or r.get("verificationStatus", {}).get("coding", [{}])[0].get("code") == "entered-in-error"]


def _neg(ts: str) -> tuple[int, ...]:
    """Sort key putting the newest timestamp first."""
    return tuple(-ord(ch) for ch in ts)
