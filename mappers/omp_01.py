"""OMP-01 処方オーダ (RDE^O11) -> one JP_MedicationRequest per RXE.

Each ``ORC RXE TQ1 RXR`` group is one drug line; drug lines sharing the Rp number of ORC-4
form one Rp.  The id is ``{record key}.{Rp}.{order in Rp}`` so re-sent orders keep their ids.
"""

from __future__ import annotations

from storage.hl7 import Message, Segment

from .jsontypes import Json
from . import datatypes as dt
from . import embedded
from . import medication as med
from . import terminology as term
from .context import MapContext
from .registry import register

MAPPING: list[tuple[str, str, str]] = [
    ("ORC-1", "MedicationRequest.status", "NW/XO/SC active; CA/OC/CR cancelled; DC/OD stopped; HD on-hold; ORC-5 CM completed"),
    ("ORC-2", "MedicationRequest.identifier", "requestIdentifier (resourceInstance-identifier)"),
    ("ORC-2", "MedicationRequest.groupIdentifier", "prescription: 施設処方箋ID system urn:oid:1.2.392.100495.20.3.11.1 + facility"),
    ("ORC-4", "MedicationRequest.identifier", "rpNumber (zero-suppressed) and orderInRp (3rd part of ORC-4 or position within the Rp)"),
    ("ORC-9", "MedicationRequest.authoredOn", "fallback RXE-32, then MSH-7"),
    ("ORC-10", "MedicationRequest.recorder", "XCN -> Practitioner reference (identifier + display)"),
    ("ORC-12", "MedicationRequest.requester", "XCN -> Practitioner reference; fallback RXE-13"),
    ("ORC-17", "MedicationRequest.extension", "JP-CLINS/eCS department extension (terminology.REQUEST_DEPARTMENT_EXT); JP Core has no MedicationRequest department"),
    ("ORC-29", "MedicationRequest.category", "SS-MIX2 data type, HL70482 order type and inpatient/outpatient (fallback PV1-2)"),
    ("PV1-2", "MedicationRequest.category", "inpatient/outpatient when ORC-29 is empty"),
    ("RXE-2", "MedicationRequest.medicationCodeableConcept", "HOT9/HOT/YJ and local triplets, text = drug name"),
    ("RXE-3", "MedicationRequest.dosageInstruction.doseAndRate.doseQuantity", "1回量; with RXE-4 a doseRange"),
    ("RXE-4", "MedicationRequest.dosageInstruction.doseAndRate.doseRange", "maximum dose when written"),
    ("RXE-5", "MedicationRequest.dosageInstruction.doseAndRate.doseQuantity", "unit: MR9P -> MERIT-9 unit system"),
    ("RXE-7", "MedicationRequest.dosageInstruction.additionalInstruction", "投薬指示 (JHSP0005 or text), one per repetition (不均等 4錠~2錠~1錠 keeps every step)"),
    ("RXE-10", "MedicationRequest.dispenseRequest.quantity", "調剤量"),
    ("RXE-11", "MedicationRequest.dispenseRequest.quantity", "unit"),
    ("RXE-12", "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed", "同一薬発行数 (Ver.1.2h)"),
    ("RXE-13", "MedicationRequest.requester", "only when ORC-12 is empty"),
    ("RXE-15", "MedicationRequest.identifier", "処方箋番号 under a local identifier system"),
    ("RXE-19", "MedicationRequest.dosageInstruction.doseAndRate.rateRatio", "1日量 / 1 日"),
    ("RXE-21", "MedicationRequest.category", "MR9P OHP/OHI/OHO/IHP... -> JP_MedicationCategoryMERIT9_CS"),
    ("RXE-27", "MedicationRequest.category", "JHSP0003 内服/頓用/外用; 22 頓用 also sets asNeededBoolean"),
    ("RXE-31", "MedicationRequest.medicationCodeableConcept", "補足コード (YJ) added as extra codings"),
    ("RXE-32", "MedicationRequest.authoredOn", "only when ORC-9 is empty"),
    ("TQ1-2", "MedicationRequest.dosageInstruction.doseAndRate.doseQuantity", "only when RXE-3 is empty"),
    ("TQ1-3", "MedicationRequest.dosageInstruction.timing.code", "first repetition: JAMI 用法コード (JAMISDP01) + text; also dosageInstruction.text"),
    ("TQ1-3", "MedicationRequest.dosageInstruction.additionalInstruction", "every further repetition (補足用法): coded; W+7 flags -> timing.repeat.dayOfWeek, I+on+off -> timing.repeat.frequency/period; text appended to dosageInstruction.text"),
    ("TQ1-4", "MedicationRequest.dosageInstruction.timing.repeat.timeOfDay", "explicit times (HHMM)"),
    ("TQ1-10", "MedicationRequest.dosageInstruction.asNeededCodeableConcept", "condition text (疼痛時 ...)"),
    ("TQ1-6", "MedicationRequest.dispenseRequest.expectedSupplyDuration", "日数; also UsageDuration extension"),
    ("TQ1-7", "MedicationRequest.dosageInstruction.extension", "PeriodOfUse.start"),
    ("TQ1-8", "MedicationRequest.dosageInstruction.extension", "PeriodOfUse.end"),
    ("TQ1-11", "MedicationRequest.dosageInstruction.additionalInstruction", "free-text instruction"),
    ("TQ1-14", "MedicationRequest.dispenseRequest.extension", "ExpectedRepeatCount (頓用回数)"),
    ("RXR-1", "MedicationRequest.dosageInstruction.route", "HL70162"),
    ("RXR-2", "MedicationRequest.dosageInstruction.site", ""),
    ("RXR-3", "MedicationRequest.dosageInstruction.extension", "投薬装置 (点滴ポンプ ...): local extension dosage-administration-device (R4 Dosage has no device)"),
    ("RXR-4", "MedicationRequest.dosageInstruction.method", ""),
    ("RXR-5", "MedicationRequest.dosageInstruction.extension", "投与経路指示 (主管/側管): JP_MedicationDosage_Line"),
    ("RXR-6", "MedicationRequest.dosageInstruction.site", "部位修飾子 (左/右): codings added to the site, text prefixed"),
    ("NTE-3", "MedicationRequest.note", ""),
    ("OBX-3", "Observation.code", "OBX after the RXE (身長, 体重, 体表面積, 感染症 ...): one Observation each, referenced from MedicationRequest.supportingInformation; body height/weight -> JP_Observation_BodyMeasurement, surface area -> vital-signs (LOINC 8277-6)"),
    ("OBX-5", "Observation.value[x]", "with OBX-2 and OBX-6 (mappers.datatypes.obx_value)"),
    ("OBX-11", "Observation.status", ""),
    ("OBX-14", "Observation.effectiveDateTime", "else the order's authoredOn"),
    ("AL1-3", "AllergyIntolerance.code", "AL1 in any message (mappers.embedded.allergies; de-duplicated per patient against ADT-61/ADT-00)"),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("MSH-10", "message control id identifies the transmission, not the order; meta.source names the file"),
    ("RXE-6", "JP_MedicationRequest allows only medicationCodeableConcept, which has no dosage form; the form is part of the HOT/YJ code"),
    ("PV1", "visit snapshot of the order (class, ward, attending, visit number); Encounters come from the ADT files and the order's class from ORC-29, else PV1-2"),
    ("ORC-27", "filler's expected availability time (some writers put the order type here); ORC-29 is the order type"),
    ("RXE-14", "verifier (監査者, the pharmacist who checked the order): no MedicationRequest element")
]


def _rxe_blocks(group: med.OrderGroup) -> list[tuple[Segment, list[Segment]]]:
    """Each RXE with the segments after it (TQ1, RXR, NTE ...) up to the next RXE."""
    blocks: list[tuple[Segment, list[Segment]]] = []
    for seg in group.segments:
        if seg.id == "RXE":
            blocks.append((seg, []))
        elif blocks:
            blocks[-1][1].append(seg)
    return blocks


def _request(msg: Message, ctx: MapContext, group: med.OrderGroup, rxe: Segment,
             rest: list[Segment], rp: str, order_in_rp: str, pos: tuple[str, ...]) -> Json:
    orc, fac = group.orc, ctx.facility
    tq1s = [s for s in rest if s.id == "TQ1"]
    rxr = next((s for s in rest if s.id == "RXR"), None)
    identifiers = med.rp_identifiers(rp, order_in_rp)
    oid = med.order_identifier(ctx, orc)
    if oid:
        identifiers.append(oid)
    if rxe.get(15):
        identifiers.append({"system": term.local_id_system(fac, "prescription-number"),
                            "value": rxe.get(15)})
    r: Json = {
        "resourceType": "MedicationRequest",
        "id": med.rid(ctx, *pos),
        "meta": ctx.meta(term.PROFILE["MedicationRequest"]),
        "identifier": identifiers,
        "status": med.request_status(orc),
        "intent": "order",
    }
    cats = med.categories(msg, orc, rxe, fac, "OMP-01")
    kind = dt.codeable(rxe[27], fac)
    if kind:
        cats.append(kind)
    if cats:
        r["category"] = cats
    r["medicationCodeableConcept"] = (med.medication_concept(rxe[2], rxe[31], fac)
                                      or {"text": "(薬剤コードなし)"})
    r["subject"] = dt.patient_ref(ctx.patient_id)
    med.request_parts(r, msg, ctx, orc, rxe, rest)

    # dosage
    dose = med.field_quantity(rxe.get(3), rxe[5], fac)
    if dose is None and tq1s:
        dose = med.cq_quantity(tq1s[0][2], fac)
    high = med.field_quantity(rxe.get(4), rxe[5], fac)
    daily = med.cq_quantity(rxe[19], fac)
    as_needed = rxe.get(27) == "22" and rxe[27].component(3).upper() == "JHSP0003"
    instruction = med.instructions(rxe[7], fac)
    dosages = []
    for i, tq1 in enumerate(tq1s or [None], 1):
        d = med.dosage(tq1, rxr, fac, sequence=i, dose=None if high else dose,
                       rate_ratio_=med.per_day(daily) if daily else None, as_needed=as_needed,
                       instruction=instruction)
        if high and dose:
            d.setdefault("doseAndRate", [{}])[0]["doseRange"] = {"low": dose, "high": high}
        dosages.append(d)
    r["dosageInstruction"] = dosages

    # dispense
    disp: Json = {}
    total = med.field_quantity(rxe.get(10), rxe[11], fac)
    if total:
        disp["quantity"] = total
    if tq1s:
        days = med.duration(tq1s[0][6])
        if days:
            disp["expectedSupplyDuration"] = days
        count = dt.decimal_value(tq1s[0].get(14))
        if count is not None and count == int(count) and count > 0:
            disp["extension"] = [{"url": med.EXT_REPEAT_COUNT, "valueInteger": int(count)}]
    repeats = dt.decimal_value(rxe.get(12))
    if repeats is not None and repeats == int(repeats) and repeats >= 0:
        disp["numberOfRepeatsAllowed"] = int(repeats)
    if disp:
        r["dispenseRequest"] = disp
    return r


@register("OMP-01")
def map_omp_01(msg: Message, ctx: MapContext) -> list[Json]:
    out: list[Json] = []
    numbering = med.Numbering()
    n_obs = 0
    for group in med.order_groups(msg):
        rp, seq = med.group_rp(group)
        for rxe, rest in _rxe_blocks(group):
            pos = numbering.unique(rp, numbering.line(rp, seq))
            r = _request(msg, ctx, group, rxe, rest, rp, pos[1], pos)
            out.append(r)
            obs = embedded.supporting(r, [s for s in rest if s.id == "OBX"], ctx,
                                      r.get("authoredOn"), n_obs + 1)
            n_obs += len(obs)
            out.extend(obs)
    return out
