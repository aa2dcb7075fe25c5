"""OMP-02 注射オーダ (RDE^O11) -> one JP_MedicationRequest_Injection per ORC group.

In injection orders RXE-2 is usually not a drug but the 注射種別 (JHSI0002 / local 99I02);
the drugs of one mix are the RXC lines, which become the ingredients of a contained
JP_Medication (strength = amount per 1 回).  When a vendor puts the drug in RXE-2 instead
(no RXC), that drug is the single ingredient.
"""

from __future__ import annotations

from storage.hl7 import Message

from .jsontypes import Json
from . import datatypes as dt
from . import embedded
from . import medication as med
from . import terminology as term
from .context import MapContext
from .registry import register

MAPPING: list[tuple[str, str, str]] = [
    ("ORC-1", "MedicationRequest.status", "NW active; CA cancelled; DC stopped; ORC-5 CM completed"),
    ("ORC-2", "MedicationRequest.identifier", "requestIdentifier; also groupIdentifier (施設処方箋ID)"),
    ("ORC-4", "MedicationRequest.identifier", "rpNumber (2nd part of ORC-4, zero-suppressed); orderInRp = the 3rd part, else the RXE's place in its Rp"),
    ("ORC-9", "MedicationRequest.authoredOn", "fallback RXE-32, then MSH-7"),
    ("ORC-10", "MedicationRequest.recorder", ""),
    ("ORC-12", "MedicationRequest.requester", "fallback RXE-13"),
    ("ORC-17", "MedicationRequest.extension", "JP-CLINS/eCS department extension (terminology.REQUEST_DEPARTMENT_EXT)"),
    ("ORC-29", "MedicationRequest.category", "SS-MIX2 data type, HL70482 I/O and inpatient/outpatient"),
    ("RXE-2", "MedicationRequest.category", "注射種別 (JHSI0002/99I02); a drug code here becomes the Medication ingredient"),
    ("RXE-3", "MedicationRequest.dosageInstruction.doseAndRate.doseQuantity", "total volume of the mix"),
    ("RXE-5", "MedicationRequest.dosageInstruction.doseAndRate.doseQuantity", "unit"),
    ("RXE-6", "MedicationRequest.contained.form", "剤形 of the contained Medication (MR9P -> JP_MedicationFormMERIT9_CS)"),
    ("RXE-7", "MedicationRequest.dosageInstruction.additionalInstruction", "one per repetition (緩徐に静注, できるだけ太い静脈を使用 ...)"),
    ("RXE-10", "MedicationRequest.dispenseRequest.quantity", "when written"),
    ("RXE-11", "MedicationRequest.dispenseRequest.quantity", "unit"),
    ("RXE-21", "MedicationRequest.category", "IHP (MERIT-9) / FTP (JHSI0001) ..."),
    ("RXE-23", "MedicationRequest.dosageInstruction.doseAndRate.rateRatio", "rate amount"),
    ("RXE-24", "MedicationRequest.dosageInstruction.doseAndRate.rateRatio", "ml/hr -> mL / 1 h"),
    ("RXE-27", "MedicationRequest.dosageInstruction.method", "手技 (JHSI0009) when RXR-4 is empty"),
    ("RXE-31", "MedicationRequest.contained.ingredient.itemCodeableConcept", "補足コード added to a RXE-2 drug"),
    ("TQ1-3", "MedicationRequest.dosageInstruction.timing.code", "first repetition"),
    ("TQ1-3", "MedicationRequest.dosageInstruction.additionalInstruction", "further repetitions (補足用法), as in OMP-01"),
    ("TQ1-4", "MedicationRequest.dosageInstruction.timing.repeat.timeOfDay", ""),
    ("TQ1-10", "MedicationRequest.dosageInstruction.asNeededCodeableConcept", "condition text"),
    ("TQ1-7", "MedicationRequest.dosageInstruction.timing.repeat.boundsPeriod", "start"),
    ("TQ1-8", "MedicationRequest.dosageInstruction.timing.repeat.boundsPeriod", "end"),
    ("TQ1-11", "MedicationRequest.dosageInstruction.additionalInstruction", ""),
    ("TQ1-13", "MedicationRequest.dosageInstruction.timing.repeat.duration", ""),
    ("TQ1-14", "MedicationRequest.dosageInstruction.timing.repeat.count", ""),
    ("RXR-1", "MedicationRequest.dosageInstruction.route", ""),
    ("RXR-2", "MedicationRequest.dosageInstruction.site", ""),
    ("RXR-3", "MedicationRequest.dosageInstruction.extension", "投薬装置 (点滴ポンプ ...): local extension dosage-administration-device (R4 Dosage has no device)"),
    ("RXR-4", "MedicationRequest.dosageInstruction.method", ""),
    ("RXR-5", "MedicationRequest.dosageInstruction.extension", "投与経路指示 (主管/側管): JP_MedicationDosage_Line"),
    ("RXR-6", "MedicationRequest.dosageInstruction.site", "部位修飾子 (左/右): codings added to the site, text prefixed"),
    ("RXC-2", "MedicationRequest.contained.ingredient.itemCodeableConcept", "one ingredient per RXC, DrugNo = position"),
    ("RXC-3", "MedicationRequest.contained.ingredient.strength.numerator", "denominator 1 回 (MERIT-9 TIME)"),
    ("RXC-4", "MedicationRequest.contained.ingredient.strength.numerator", "unit (MR9P)"),
    ("RXC-7", "MedicationRequest.contained.ingredient.extension", "補足コード: a drug code (HOT/YJ) is another coding of RXC-2; anything else (麻薬, 劇薬, text only) is the component's own property, local extension ingredient-supplementary-code"),
    ("NTE-3", "MedicationRequest.note", ""),
    ("OBX-3", "Observation.code", "OBX of the order (身長, 体重, 体表面積 the dose is based on; 病名, 感染症): one Observation each, referenced from MedicationRequest.supportingInformation; height/weight JP_Observation_BodyMeasurement, surface area vital-signs (LOINC 8277-6)"),
    ("OBX-5", "Observation.value[x]", "with OBX-2 and OBX-6 (mappers.datatypes.obx_value)"),
    ("OBX-11", "Observation.status", ""),
    ("OBX-14", "Observation.effectiveDateTime", "else the order's authoredOn"),
    ("AL1-3", "AllergyIntolerance.code", "AL1 in any message (mappers.embedded.allergies)"),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("RXC-1", "base (B) / additive (A) has no element in JP_Medication; ingredient order (DrugNo) keeps the base first as written"),
    ("PV1", "visit snapshot of the order (class, ward, attending, visit number); Encounters come from the ADT files and the order's class from ORC-29, else PV1-2"),
    ("ORC-27", "filler's expected availability time (some writers put the order type here); ORC-29 is the order type"),
    ("RXE-15", "処方箋番号: JP_MedicationRequest_Injection has no prescription-number slice; ORC-2 is the order identifier"),
    ("RXE-22", "give per (time unit): the rate unit is RXE-24"),
    ("RXE-24.3", "coding system name (ISO+) of the rate unit; RXE-24.1 is converted to UCUM"),
    ("RXE-42", "dispensing location (払出場所); not clinical content"),
    ("RXE-14", "verifier (監査者, the pharmacist who checked the order): no MedicationRequest element"),
    ("RXE-27", "手技 (JHSI0009): dosageInstruction.method only when RXR-4 is empty (RXR-4 wins)")
]


@register("OMP-02")
def map_omp_02(msg: Message, ctx: MapContext) -> list[Json]:
    out: list[Json] = []
    numbering = med.Numbering()
    fac = ctx.facility
    n_obs = 0
    for group in med.order_groups(msg):
        orc = group.orc
        rxe = group.first("RXE")
        rxcs = group.all("RXC")
        if rxe is None and not rxcs:
            continue
        rp, seq = med.group_rp(group)
        line = numbering.line(rp, seq)
        pos = numbering.unique(rp, line)
        tq1 = group.first("TQ1")
        rxr = group.first("RXR")

        itype, _ = med.injection_type(rxe)
        ingredients = []
        for n, rxc in enumerate(rxcs, 1):
            item, props = med.component_item(rxc, fac)
            if item:
                ing = med.ingredient(item, med.field_quantity(rxc.get(3), rxc[4], fac), n)
                ing["extension"].extend(props)
                ingredients.append(ing)
        if not ingredients and rxe is not None and not itype and rxe[2]:
            item = med.medication_concept(rxe[2], rxe[31], fac)
            if item:
                ingredients.append(med.ingredient(item, med.field_quantity(rxe.get(3), rxe[5], fac), 1))
        medication = med.contained_medication(ctx, ingredients,
                                              form=med.dosage_form(rxe[6], fac) if rxe is not None else None)

        # JP_MedicationRequestBase: rpNumber 1..1 and orderInRp 1..1 (injections too)
        identifiers = med.rp_identifiers(rp, line)
        oid = med.order_identifier(ctx, orc)
        if oid:
            identifiers.append(oid)
        r: Json = {
            "resourceType": "MedicationRequest",
            "id": med.rid(ctx, *pos),
            "meta": ctx.meta(term.PROFILE["MedicationRequestInjection"]),
            "contained": [medication],
            "identifier": identifiers,
            "status": med.request_status(orc),
            "intent": "order",
        }
        cats = med.categories(msg, orc, rxe, fac, "OMP-02")
        route = dt.codeable(rxe[2], fac) if itype and rxe is not None else None
        if route is not None:
            cats.insert(1, route)
        if cats:
            r["category"] = cats
        r["medicationReference"] = {"reference": "#med"}
        r["subject"] = dt.patient_ref(ctx.patient_id)
        med.request_parts(r, msg, ctx, orc, rxe, group.segments)

        dose = rate = instruction = None
        if rxe is not None:
            dose = med.field_quantity(rxe.get(3), rxe[5], fac) if (itype or rxcs) else None
            rate = med.rate_ratio(rxe.get(23), rxe.get(24), rxe[24].component(2))
            instruction = med.instructions(rxe[7], fac)
        d = med.dosage(tq1, rxr, fac, dose=dose, rate_ratio_=rate, injection=True,
                       instruction=instruction)
        if "method" not in d and rxe is not None:
            technique = dt.codeable(rxe[27], fac)
            if technique:
                d["method"] = technique
        r["dosageInstruction"] = [d]
        if rxe is not None:
            total = med.field_quantity(rxe.get(10), rxe[11], fac)
            if total:
                r["dispenseRequest"] = {"quantity": total}
        out.append(r)
        obs = embedded.supporting(r, group.all("OBX"), ctx, r.get("authoredOn"), n_obs + 1)
        n_obs += len(obs)
        out.extend(obs)
    return out
