"""PPR-01 (PPR^ZD1) diagnoses -> one JP_Condition_Diagnosis per PRB.

One PPR-01 file holds the patient's whole disease list, so a Condition's id comes from the
diagnosis itself (PRB-4 problem instance id), not from the file: it survives every rewrite of
the list.  Decisions documented in docs/mapping/ppr_01.md:

* category = ``encounter-diagnosis`` (as JP-CLINS requires), plus the 病名区分 (PRB-10 second
  triplet, JHSD0004) and 主/副 (PRB-18, JHSD0007) codings as further categories, so
  ``Condition?category=...`` finds 主病名.
* 転帰 (PRB-14, HL7 0241 / JHSD0006) -> JP_Condition_DiseaseOutcome extension and clinicalStatus;
  abatement (PRB-9, else PRB-15) is only written when the status is resolved/remission/inactive
  (FHIR con-4).
* PRB-1 ``DE`` -> verificationStatus entered-in-error, no clinicalStatus (con-5).
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
    ("PID-3", "Condition.subject", "Patient/{patient id}"),
    ("PRB-1", "Condition.verificationStatus", "DE -> entered-in-error (clinicalStatus omitted)"),
    ("PRB-3", "Condition.code", "MDCDX2 8-digit 病名管理番号 -> master-disease-keyNumber; text = PRB-3.2 (full name)"),
    ("PRB-4", "Condition.identifier", "resourceInstance-identifier; also the id position"),
    ("PRB-7", "Condition.recordedDate", "診断日"),
    ("PRB-9", "Condition.abatementDateTime", "when the status is resolved/remission/inactive"),
    ("PRB-10", "Condition.code", "I10 triplet -> ICD10-2013-full coding; JHSD0004 病名区分 triplet -> category"),
    ("PRB-13", "Condition.verificationStatus", "1 (疑い, JHSD0005) -> unconfirmed, else confirmed"),
    ("PRB-14", "Condition.extension:JP_Condition_DiseaseOutcome", "also drives clinicalStatus (F resolved, S/M remission, D/I inactive, else active)"),
    ("PRB-15", "Condition.abatementDateTime", "転帰日 when PRB-9 is empty"),
    ("PRB-16", "Condition.onsetDateTime", ""),
    ("PRB-17", "Condition.onsetString", "only when PRB-16 is empty"),
    ("PRB-18", "Condition.category", "主/副 (JHSD0007) as a category coding"),
    ("ZPR-1", "Condition.extension:JP_Condition_DiseasePrefixModifier", "MEDIS 修飾語管理番号 (modKeyNumber)"),
    ("ZPR-2", "Condition.code", "病名管理番号 when it differs from PRB-3"),
    ("ZPR-3", "Condition.extension:JP_Condition_DiseasePostfixModifier", "MEDIS 修飾語管理番号 (modKeyNumber)"),
    ("ZPR-4", "Condition.extension:JP_Condition_DiseasePrefixModifier", "修飾語交換用コード (modExCode)"),
    ("ZPR-5", "Condition.code", "病名交換用コード (master-disease-exCode)"),
    ("ZPR-6", "Condition.extension:JP_Condition_DiseasePostfixModifier", "修飾語交換用コード (modExCode)"),
    ("ZPR-7", "Condition.note", ""),
    ("NTE-3", "Condition.note", ""),
    ("ORC-12", "Condition.recorder", "Practitioner display + identifier"),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("PRB-2", "action time; meta.lastUpdated comes from the file's 発生日時"),
    ("PRB-8", "anticipated resolution date; no Condition element"),
    ("PRB-25", "security label; not used by SS-MIX2 writers"),
    ("PV1", "visit snapshot; Encounters come from the ADT-1x..5x files"),
    ("PV2", "visit snapshot"),
    ("ZPD", "dental formula (歯式); JP Core dental body sites are out of scope"),
    ("ZI1", "insurance of the diagnosis; Coverage comes from ADT-00 IN1"),
    ("OBX", "observations attached to a problem are not written by SS-MIX2 sources seen"),
    ("ORC-1", "order control of the diagnosis registration; PRB-1 carries the action"),
    ("ORC-2", "the diagnosis order number; PRB-4 is the stable key"),
    ("ORC-17", "recording department; no Condition element"),
    ("ORC-29", "order type (inpatient/outpatient); no Condition element"),
    ("PRB-13.2", "display of the JHSD0005 certainty code; the code maps to verificationStatus"),
    ("PRB-13.3", "coding system name (JHSD0005)"),
    ("PRB-15", "転帰日: written as abatementDateTime only when PRB-9 is empty and the status is resolved/remission/inactive (an active problem has no abatement)"),
    ("PRB-17", "onset text: onsetString only when PRB-16 (the onset date) is empty; FHIR allows one onset[x]"),
    ("ZPR-3.3", "coding system name (MDCDX2) of the modifier; the MEDIS code is kept"),
    ("ZPR-5.3", "coding system name (MDCDX2)"),
    ("ZPR-6.3", "coding system name (MDCDX2)"),
]

_OUTCOME_SYSTEMS = ("HL70241", "JHSD0006")


def _codings_of(field: Field, facility: str) -> list[Json]:
    cc = dt.codeable(field, facility)
    return cc.get("coding", []) if cc else []


def _modifiers(zpr: Segment | None, key_field: int, ex_field: int) -> list[Json]:
    """ZPR modifier repetitions -> extension values (MEDIS key number / exchange code)."""
    if zpr is None:
        return []
    out = []
    for n, system in ((key_field, term.MODIFIER_KEY_NUMBER), (ex_field, term.MODIFIER_EXCHANGE)):
        for rep in zpr[n].repetitions:
            code, name = rep.component(1), rep.component(2)
            if code or name:
                c: Json = {"coding": [{"system": system, "code": code}]} if code else {}
                if name:
                    c["text"] = name
                    if code:
                        c["coding"][0]["display"] = name
                out.append(c)
    return out


def _condition(group: list[Segment], index: int, ctx: MapContext) -> Json:
    """One PRB group (PRB, ZPR, ORC, NTE) -> a Condition, elements in the MAPPING order."""
    prb = group[0]
    zpr = next((s for s in group if s.id == "ZPR"), None)
    orc = next((s for s in group if s.id == "ORC"), None)
    fac = ctx.facility
    instance = prb[4].component(1)
    rid = resource_id(ctx.name, "d", key_position(instance)) if instance else resource_id(ctx.name, index)
    c: Json = {"resourceType": "Condition", "id": rid,
               "meta": ctx.meta(term.PROFILE["ConditionDiagnosis"])}
    ext = _modifier_extensions(zpr)
    status = _outcome(prb[14], fac, ext)
    if ext:
        c["extension"] = ext
    if instance:
        c["identifier"] = [dt.identifier(term.RESOURCE_INSTANCE, instance)]
    resolved = dt.datetime_(prb[9])
    if status is None:
        status = "resolved" if resolved else "active"
    deleted = prb.get(1) == "DE"
    _statuses(c, prb, status, deleted)
    prb10 = prb[10].components() + [""] * 6
    c["category"] = _categories(prb, prb10, fac)
    c["code"] = _code(prb, prb10, zpr, fac)
    c["subject"] = dt.patient_ref(ctx.patient_id)
    _dates(c, prb, status, deleted, resolved)
    if orc is not None:
        recorder = dt.practitioner(orc[12], fac)
        if recorder:
            c["recorder"] = recorder
    notes = [s[3].text for s in group if s.id == "NTE" and s[3].text]
    if zpr is not None and zpr[7].text:
        notes.insert(0, zpr[7].text)
    if notes:
        c["note"] = [{"text": n} for n in notes]
    return c


def _modifier_extensions(zpr: Segment | None) -> list[Json]:
    """ZPR-1/4 prefix and ZPR-3/6 postfix modifiers -> JP_Condition_Disease*Modifier."""
    return ([{"url": term.CONDITION_PREFIX_EXT, "valueCodeableConcept": v} for v in _modifiers(zpr, 1, 4)]
            + [{"url": term.CONDITION_POSTFIX_EXT, "valueCodeableConcept": v}
               for v in _modifiers(zpr, 3, 6)])


def _outcome(outcome: Field, facility: str, ext: list[Json]) -> str | None:
    """PRB-14 転帰: appends the DiseaseOutcome extension; returns the clinicalStatus it implies."""
    if not outcome:
        return None
    ext.append({"url": term.CONDITION_OUTCOME_EXT,
                "valueCodeableConcept": dt.codeable(outcome, facility)})
    system = outcome.component(3)
    return term.CONDITION_OUTCOME_STATUS.get(
        system if system in _OUTCOME_SYSTEMS else "HL70241", {}).get(outcome.component(1))


def _statuses(c: Json, prb: Segment, status: str, deleted: bool) -> None:
    """clinicalStatus (none for PRB-1 DE, con-5) and verificationStatus (PRB-1, PRB-13)."""
    if not deleted:
        c["clinicalStatus"] = dt.concept(status, "", term.CONDITION_CLINICAL)
    suspected = prb.get(13) == "1" or "疑" in prb[13].component(2)
    verification = "entered-in-error" if deleted else ("unconfirmed" if suspected else "confirmed")
    c["verificationStatus"] = dt.concept(verification, "", term.CONDITION_VERIFICATION)


def _categories(prb: Segment, prb10: list[str], facility: str) -> list[Json]:
    """encounter-diagnosis, PRB-10's 病名区分 (JHSD0004, second triplet), PRB-18 主/副."""
    categories = [dt.concept("encounter-diagnosis", "", term.CONDITION_CATEGORY)]
    if prb10[3] and prb10[5]:
        categories.append(dt.concept(prb10[3], prb10[4], term.system_for(prb10[5], facility) or ""))
    rank = dt.codeable(prb[18], facility)
    if rank:
        categories.append(rank)
    return categories


def _code(prb: Segment, prb10: list[str], zpr: Segment | None, facility: str) -> Json:
    """PRB-3 病名管理番号, PRB-10 ICD-10, ZPR-2 and ZPR-5 exchange code; text PRB-3.2."""
    codings = list(_codings_of(prb[3], facility))
    if prb10[0] and prb10[2] in ("I10", ""):
        icd: Json = {"system": term.CODE_SYSTEMS["I10"], "code": prb10[0]}
        if prb10[1]:
            icd["display"] = prb10[1]
        codings.append(icd)
    if zpr is not None:
        _add_zpr_codings(codings, zpr, prb[3].component(1), facility)
    code: Json = {}
    if codings:
        code["coding"] = codings
    name = prb[3].component(2) or (zpr[2].component(2) if zpr is not None else "")
    if name:
        code["text"] = name
    return code or {"text": "(病名なし)"}


def _add_zpr_codings(codings: list[Json], zpr: Segment, prb3_code: str, facility: str) -> None:
    """ZPR-2 (when it differs from PRB-3 and is not there yet) and the ZPR-5 exchange code."""
    for coding in _codings_of(zpr[2], facility):
        if coding not in codings and coding.get("code") != prb3_code:
            codings.append(coding)
    ex = zpr[5]
    if ex.component(1):
        e = {"system": term.DISEASE_EXCHANGE, "code": ex.component(1)}
        if ex.component(2):
            e["display"] = ex.component(2)
        codings.append(e)


def _dates(c: Json, prb: Segment, status: str, deleted: bool, resolved: str | None) -> None:
    """onset (PRB-16, else PRB-17 text), abatement (PRB-9 else PRB-15, only when no longer
    active: con-4), recordedDate (PRB-7)."""
    onset = dt.datetime_(prb[16])
    if onset:
        c["onsetDateTime"] = onset
    elif prb[17].text:
        c["onsetString"] = prb[17].text
    if status in ("resolved", "remission", "inactive") and not deleted:
        abatement = resolved or dt.datetime_(prb[15])
        if abatement:
            c["abatementDateTime"] = abatement
    recorded = dt.datetime_(prb[7])
    if recorded:
        c["recordedDate"] = recorded


@register("PPR-01")
def map_ppr_01(msg: Message, ctx: MapContext) -> list[Json]:
    return [_condition(g, i, ctx) for i, g in enumerate(msg.groups("PRB"), 1)]
