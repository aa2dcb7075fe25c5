"""ADT-00 (ADT^A08 update, ADT^A23 delete) -> JP_Patient + Observation + AllergyIntolerance + Coverage.

The Patient's id is the patient id itself, so every other resource's ``Patient/{pid}`` resolves.
OBX height/weight become JP_Observation_BodyMeasurement (JLAC10 coding plus JP Core's MEDIS
body-measurement code); ABO/Rh blood type becomes a laboratory Observation carrying the JP-CLINS
core-lab code; any other OBX a JP_Observation_Common.  AL1 -> AllergyIntolerance, IN1 -> Coverage.

ADT^A23 (patient deleted) is mapped to the Patient alone with ``active: false``: the record stays
readable (a deleted patient's history is still evidence) and the server decides whether to
answer 410 Gone; the OBX/AL1/IN1 of a deletion message are not emitted.
"""

from __future__ import annotations

from storage.hl7 import Message, Segment

from .jsontypes import Json
from . import datatypes as dt
from . import terminology as term
from .adt_61 import allergy
from .embedded import observation
from .context import MapContext
from .ids import resource_id
from .registry import register

READS_SEGMENTS = ("PID", "NK1", "IN1", "AL1")  # the Patient's own segments (mappers.audit)

MAPPING: list[tuple[str, str, str]] = [
    ("MSH-9", "Patient.active", "ADT^A23 (deletion) -> false, Patient only"),
    ("PID-3", "Patient.identifier", "system urn:oid:1.2.392.100495.20.3.51.1 + facility code; value PID-3.1"),
    ("PID-5", "Patient.name", "one HumanName per repetition; XPN.8 I/P -> iso21090-EN-representation IDE/SYL, use usual"),
    ("PID-7", "Patient.birthDate", ""),
    ("PID-8", "Patient.gender", "HL7 0001: M male, F female, O other, U unknown"),
    ("PID-11", "Patient.address", "XAD.8 full text -> text; XAD.5 postalCode; XAD.7 H home / B work"),
    ("PID-13", "Patient.telecom", "XTN.2 PRN home / WPN work; number from XTN.12 or XTN.1"),
    ("PID-14", "Patient.telecom", "use work"),
    ("PID-29", "Patient.deceasedDateTime", ""),
    ("PID-30", "Patient.deceasedBoolean", "Y -> true when PID-29 is empty"),
    ("NK1-2", "Patient.contact.name", "first (kanji) repetition"),
    ("NK1-3", "Patient.contact.relationship", "HL7 0063"),
    ("NK1-4", "Patient.contact.address", "first repetition"),
    ("NK1-5", "Patient.contact.telecom", ""),
    ("NK1-6", "Patient.contact.telecom", "use work"),
    ("NK1-13", "Patient.contact.organization", "display of the employer"),
    ("DB1-2", "Patient.extension:patient-disability", "disabled person code as the concept"),
    ("DB1-4", "Patient.extension:patient-disability", "only when Y"),
    ("OBX-3", "Observation.code", "JLAC10 9N001 身長 / 9N006 体重 add JP Core MEDIS 31000298 / 31000296; 5H010 / 5H020 add the JP-CLINS ABO / Rh code"),
    ("OBX-2", "Observation.value[x]", "NM -> valueQuantity, CWE -> valueCodeableConcept, ST -> valueString"),
    ("OBX-5", "Observation.value[x]", ""),
    ("OBX-6", "Observation.valueQuantity.unit", "UCUM code when known (cm, kg)"),
    ("OBX-7", "Observation.referenceRange.text", ""),
    ("OBX-8", "Observation.interpretation", ""),
    ("OBX-11", "Observation.status", "F final, C corrected, P preliminary, X cancelled, D/W entered-in-error"),
    ("OBX-14", "Observation.effectiveDateTime", "falls back to EVN-2, then the file's 発生日時"),
    ("AL1-2", "AllergyIntolerance.category", "HL7 0127"),
    ("AL1-3", "AllergyIntolerance.code", ""),
    ("AL1-4", "AllergyIntolerance.reaction.severity", "HL7 0128"),
    ("AL1-5", "AllergyIntolerance.reaction.manifestation", "text"),
    ("AL1-6", "AllergyIntolerance.onsetDateTime", ""),
    ("IN1-2", "Coverage.type", "保険種別 JHSD0001"),
    ("IN1-3", "Coverage.payor", "Organization identifier: 保険者番号 (InsurerNumber system)"),
    ("IN1-4", "Coverage.payor.display", ""),
    ("IN1-10", "Coverage.extension:InsuredPersonSymbol", "被保険者証 記号; also subscriberId"),
    ("IN1-11", "Coverage.extension:InsuredPersonNumber", "被保険者証 番号; also subscriberId"),
    ("IN1-12", "Coverage.period.start", ""),
    ("IN1-13", "Coverage.period.end", ""),
    ("IN1-15", "Coverage.class", "plan type (JHSD0002) as class type plan"),
    ("IN1-17", "Coverage.relationship", "HL7 0063 SEL self, SPO spouse, CHD child, PAR parent, others other"),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("EVN", "event times; meta.lastUpdated comes from the file's 発生日時 (EVN-2 only as OBX fallback time)"),
    ("PID-33", "last update time; meta.lastUpdated comes from the file's 発生日時"),
    ("PV1", "ADT-00 carries the current visit only; Encounters come from the ADT-1x..5x files"),
    ("PV2", "as PV1"),
    ("IN1-1", "set id; the position gives the Coverage id"),
    ("IN2", "not used by SS-MIX2"),
    ("IN3", "not used by SS-MIX2"),
    ("PID-3.5", "identifier type code (PI): the JP_Patient identifier system already says it is the patient id"),
    ("AL1-2.2", "display of the HL7 0127 allergen type; the type maps to category"),
    ("AL1-2.3", "coding system name (HL70127) of AL1-2"),
    ("NK1-13.2", "organization name type code (D = display name)"),
    ("IN1-17.2", "display of the HL7 0063 relationship; the code maps to Coverage.relationship (its text is kept)"),
    ("IN1-17.3", "coding system name (HL70063) of IN1-17"),
]

_DELETE_EVENT = "A23"


def _patient(msg: Message, ctx: MapContext) -> Json:
    pid = msg["PID"]
    p: Json = {"resourceType": "Patient", "id": ctx.patient_id,
               "meta": ctx.meta(term.PROFILE["Patient"])}
    value = pid[3].component(1) or ctx.patient_id
    p["identifier"] = [{"system": term.patient_identifier_system(ctx.facility), "value": value}]
    if msg.message_type[1] == _DELETE_EVENT:
        p["active"] = False
    names = dt.human_names(pid[5])
    if names:
        p["name"] = names
    telecom = dt.contact_points(pid[13], "home") + dt.contact_points(pid[14], "work")
    if telecom:
        p["telecom"] = telecom
    gender = term.GENDER.get(pid.get(8))
    if gender:
        p["gender"] = gender
    birth = dt.date_(pid[7])
    if birth:
        p["birthDate"] = birth
    died = dt.datetime_(pid[29])
    if died:
        p["deceasedDateTime"] = died
    elif pid.get(30) == "Y":
        p["deceasedBoolean"] = True
    addresses = dt.address(pid[11])
    if addresses:
        p["address"] = addresses
    contacts = [c for c in (_contact(nk1, ctx) for nk1 in msg.segments("NK1")) if c]
    if contacts:
        p["contact"] = contacts
    for db1 in msg.segments("DB1"):
        if db1.get(4) == "Y":
            code = db1.get(2)
            concept = (dt.concept(code, "", term.system_for("HL70334") or "") if code
                       else {"text": "障害あり"})
            p.setdefault("extension", []).append(
                {"url": term.PATIENT_DISABILITY, "valueCodeableConcept": concept})
    return p


def _contact(nk1: Segment, ctx: MapContext) -> Json | None:
    c: Json = {}
    rel = dt.codeable(nk1[3], ctx.facility)
    if rel:
        c["relationship"] = [rel]
    names = dt.human_names(nk1[2])
    if names:
        c["name"] = names[0]
    telecom = dt.contact_points(nk1[5], "home") + dt.contact_points(nk1[6], "work")
    if telecom:
        c["telecom"] = telecom
    addresses = dt.address(nk1[4])
    if addresses:
        c["address"] = addresses[0]
    org = nk1[13].component(1)
    if org:
        c["organization"] = {"display": org}
    return c or None


def _coverage(in1: Segment, index: int, ctx: MapContext) -> Json:
    c: Json = {"resourceType": "Coverage", "id": resource_id(ctx.name, "cov", index),
               "meta": ctx.meta(term.PROFILE["Coverage"]), "status": "active"}
    symbol, number = in1[10].component(1), in1[11].component(1)
    ext = []
    if symbol:
        ext.append({"url": term.COVERAGE_INSURED_SYMBOL, "valueString": symbol})
    if number:
        ext.append({"url": term.COVERAGE_INSURED_NUMBER, "valueString": number})
    if ext:
        c["extension"] = ext
        c["subscriberId"] = " ".join(x for x in (symbol, number) if x)
    kind = dt.codeable(in1[2], ctx.facility)
    if kind:
        c["type"] = kind
    c["beneficiary"] = dt.patient_ref(ctx.patient_id)
    rel = term.RELATIONSHIP_0063.get(in1.get(17))
    if rel:
        c["relationship"] = dt.concept(rel, "", term.SUBSCRIBER_RELATIONSHIP)
        if in1[17].component(2):
            c["relationship"]["text"] = in1[17].component(2)
    span = dt.period(in1[12], in1[13])
    if span:
        c["period"] = span
    payor: Json = {"type": "Organization"}
    insurer = in1[3].component(1)
    if insurer:
        payor["identifier"] = {"system": term.INSURER_NUMBER, "value": insurer}
    payor["display"] = in1[4].component(1) or (kind or {}).get("text") or "保険者不明"
    c["payor"] = [payor]
    plan = in1[15]
    if plan:
        cls: Json = {"type": dt.concept("plan", "", term.COVERAGE_CLASS), "value": plan.component(1)}
        if plan.component(2):
            cls["name"] = plan.component(2)
        c["class"] = [cls]
    return c


# meta.tag of a Patient built from a clinical message's PID (no usable ADT-00 for the folder).
DERIVED_TAG = {"system": term.ORIGIN_TAG_SYSTEM, "code": "derived-from-pid",
               "display": "ADT-00 がないため診療メッセージの PID から作成 (no ADT-00: built from PID)"}


def patient_from_pid(msg: Message, ctx: MapContext) -> Json:
    """The Patient of a folder that has clinical data but no usable ADT-00, from the PID of one of
    its messages: the chart stays reachable and references to ``Patient/{id}`` never dangle.
    ``ctx`` is the context of that message's file (meta.source names it); meta.tag says so."""
    p = _patient(msg, ctx)
    p.pop("active", None)
    p["identifier"][0]["value"] = ctx.patient_id  # the filing decides whose chart this is
    p["meta"]["tag"] = [dict(DERIVED_TAG)]
    return p


@register("ADT-00")
def map_adt_00(msg: Message, ctx: MapContext) -> list[Json]:
    patient = _patient(msg, ctx)
    if patient.get("active") is False:
        return [patient]
    out = [patient]
    fallback = dt.datetime_(msg["EVN"][2]) or ctx.last_updated
    for i, obx in enumerate(msg.segments("OBX"), 1):
        out.append(observation(obx, resource_id(ctx.name, "obs", i), ctx, fallback))
    for i, al1 in enumerate(msg.segments("AL1"), 1):
        out.append(allergy(ctx, resource_id(ctx.name, "alg", i), al1[2], al1[3], al1[4],
                           al1[5], al1[6]))
    for i, in1 in enumerate(msg.segments("IN1"), 1):
        out.append(_coverage(in1, i, ctx))
    return out
