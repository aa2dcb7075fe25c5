"""ADT-61 (ADT^A60) allergies -> one JP_AllergyIntolerance per IAM segment.

Also home of :func:`allergy`, the one AllergyIntolerance builder that ADT-00's AL1 uses too.
An IAM with action code D (IAM-6) or clinical status E (IAM-17) is kept, marked
``verificationStatus = entered-in-error`` (without clinicalStatus, as FHIR's ait-2 demands), so
a client can see that a once-recorded allergy was withdrawn.
"""

from __future__ import annotations

from storage.hl7 import Field, Message, Segment

from .jsontypes import Json
from . import datatypes as dt
from . import terminology as term
from .context import MapContext
from .ids import key_position, resource_id
from .registry import register

MAPPING: list[tuple[str, str, str]] = [
    ("PID-3", "AllergyIntolerance.patient", "Patient/{patient id}"),
    ("IAM-1", "AllergyIntolerance.id", "position of the IAM when IAM-7 is empty"),
    ("IAM-2", "AllergyIntolerance.category", "HL7 0127: DA medication, FA food, EA/LA/PA environment, AA biologic; MA/MC (miscellaneous) no category"),
    ("IAM-3", "AllergyIntolerance.code", "JLAC10 / HOT / local codes, text = allergen name"),
    ("IAM-4", "AllergyIntolerance.reaction.severity", "HL7 0128: MI mild, MO moderate, SV severe"),
    ("IAM-5", "AllergyIntolerance.reaction.manifestation", "text; also reaction.description"),
    ("IAM-6", "AllergyIntolerance.verificationStatus", "D (delete) -> entered-in-error; otherwise clinicalStatus active"),
    ("IAM-7", "AllergyIntolerance.identifier", "also the id position (stable across updates)"),
    ("IAM-9", "AllergyIntolerance.type", "HL7 0436: AL/DA/FA allergy, IN/FI/CT intolerance"),
    ("IAM-11", "AllergyIntolerance.onsetDateTime", "written precision kept (YYYYMM -> 1996-01)"),
    ("IAM-12", "AllergyIntolerance.onsetString", "when IAM-11 is empty; otherwise a note"),
    ("IAM-13", "AllergyIntolerance.recordedDate", ""),
    ("IAM-14", "AllergyIntolerance.asserter", "display of the reporting person (when IAM-18 is empty)"),
    ("IAM-17", "AllergyIntolerance.verificationStatus", "HL7 0438: C confirmed, U/P/S unconfirmed, D refuted, E entered-in-error"),
    ("IAM-18", "AllergyIntolerance.asserter", "XCN -> Practitioner display + identifier"),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("EVN", "event time; meta.lastUpdated comes from the file's 発生日時"),
    ("PV1", "visit snapshot; Encounters come from the ADT-1x..5x files"),
    ("PV2", "visit snapshot; Encounters come from the ADT-1x..5x files"),
    ("IAM-8", "free-text reason for the change; no AllergyIntolerance element"),
    ("IAM-10", "allergen group; the allergen itself is IAM-3"),
    ("IAM-15", "relationship of the reporter; no element for it on asserter"),
    ("IAM-16", "not used by SS-MIX2"),
    ("IAM-19", "organisation that confirmed; no AllergyIntolerance element"),
    ("IAM-20", "confirmation time; no AllergyIntolerance element (recordedDate is IAM-13)"),
    ("IAM-2.2", "display of the HL7 0127 allergen type; the type maps to category"),
    ("IAM-2.3", "coding system name (HL70127)"),
    ("IAM-4.2", "display of the HL7 0128 severity; the code maps to reaction.severity"),
    ("IAM-4.3", "coding system name (HL70128)"),
    ("IAM-6.2", "display of the HL7 0323 action code (追加/更新/削除); the code drives the status"),
    ("IAM-6.3", "coding system name (HL70323)"),
]


def allergy(ctx: MapContext, rid: str, category: Field, code: Field, severity: Field | None = None,
            reaction: Field | None = None, onset: Field | None = None) -> Json:
    """The common part of AL1 and IAM: category, code, reaction, onset; clinicalStatus active."""
    a: Json = {
        "resourceType": "AllergyIntolerance",
        "id": rid,
        "meta": ctx.meta(term.PROFILE["AllergyIntolerance"]),
        "clinicalStatus": dt.concept("active", "", term.ALLERGY_CLINICAL),
        "patient": dt.patient_ref(ctx.patient_id),
    }
    cat = term.ALLERGY_CATEGORY_0127.get(category.component(1)) if category else None
    if cat:
        a["category"] = [cat]
    a["code"] = dt.codeable(code, ctx.facility) or {"text": "(アレルゲン不明)"}
    sev = term.ALLERGY_SEVERITY_0128.get(severity.component(1)) if severity else None
    text = reaction.joined(" ").strip() if reaction else ""
    if text or sev:
        r: Json = {"manifestation": [{"text": text or "情報なし"}]}
        if text:
            r["description"] = text
        if sev:
            r["severity"] = sev
        a["reaction"] = [r]
    onset_dt = dt.datetime_(onset) if onset else None
    if onset_dt:
        a["onsetDateTime"] = onset_dt
    return a


def _iam(iam: Segment, index: int, ctx: MapContext) -> Json:
    unique = iam[7].component(1)
    rid = resource_id(ctx.name, "u", key_position(unique)) if unique else resource_id(ctx.name, index)
    a = allergy(ctx, rid, iam[2], iam[3], iam[4], iam[5], iam[11])
    if unique:
        a["identifier"] = [dt.identifier(term.RESOURCE_INSTANCE, unique)]
    kind = term.ALLERGY_TYPE_0436.get(iam.get(9))
    if kind:
        a["type"] = kind
    onset_text = iam[12].text
    if onset_text:
        if "onsetDateTime" in a:
            a["note"] = [{"text": f"発症時期: {onset_text}"}]
        else:
            a["onsetString"] = onset_text
    recorded = dt.datetime_(iam[13])
    if recorded:
        a["recordedDate"] = recorded
    asserter = dt.practitioner(iam[18], ctx.facility)
    if asserter is None and iam[14]:
        name = " ".join(x for x in (iam[14].component(1), iam[14].component(2)) if x)
        if name:
            asserter = {"display": name}
    if asserter:
        a["asserter"] = asserter
    verification = term.ALLERGY_VERIFICATION_0438.get(iam.get(17))
    if iam.get(6) == "D":
        verification = "entered-in-error"
    if verification:
        a["verificationStatus"] = dt.concept(verification, "", term.ALLERGY_VERIFICATION)
    if verification == "entered-in-error":
        a.pop("clinicalStatus", None)
    return a


@register("ADT-61")
def map_adt_61(msg: Message, ctx: MapContext) -> list[Json]:
    return [_iam(iam, i, ctx) for i, iam in enumerate(msg.segments("IAM"), 1)]
