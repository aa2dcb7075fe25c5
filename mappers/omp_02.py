"""OMP-02 注射オーダ (RDE^O11) -> one JP_MedicationRequest_Injection per ORC group.

In injection orders RXE-2 is usually not a drug but the 注射種別 (JHSI0002 / local 99I02);
the drugs of one mix are the RXC lines, which become the ingredients of a contained
JP_Medication (strength = amount per 1 回).  When a vendor puts the drug in RXE-2 instead
(no RXC), that drug is the single ingredient.
"""

from __future__ import annotations

from storage.hl7 import Message

from . import datatypes as dt
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
    ("RXE-7", "MedicationRequest.dosageInstruction.additionalInstruction", ""),
    ("RXE-10", "MedicationRequest.dispenseRequest.quantity", "when written"),
    ("RXE-11", "MedicationRequest.dispenseRequest.quantity", "unit"),
    ("RXE-21", "MedicationRequest.category", "IHP (MERIT-9) / FTP (JHSI0001) ..."),
    ("RXE-23", "MedicationRequest.dosageInstruction.doseAndRate.rateRatio", "rate amount"),
    ("RXE-24", "MedicationRequest.dosageInstruction.doseAndRate.rateRatio", "ml/hr -> mL / 1 h"),
    ("RXE-27", "MedicationRequest.dosageInstruction.method", "手技 (JHSI0009) when RXR-4 is empty"),
    ("RXE-31", "MedicationRequest.contained.ingredient.itemCodeableConcept", "補足コード added to a RXE-2 drug"),
    ("TQ1-3", "MedicationRequest.dosageInstruction.timing.code", ""),
    ("TQ1-7", "MedicationRequest.dosageInstruction.timing.repeat.boundsPeriod", "start"),
    ("TQ1-8", "MedicationRequest.dosageInstruction.timing.repeat.boundsPeriod", "end"),
    ("TQ1-11", "MedicationRequest.dosageInstruction.additionalInstruction", ""),
    ("TQ1-13", "MedicationRequest.dosageInstruction.timing.repeat.duration", ""),
    ("TQ1-14", "MedicationRequest.dosageInstruction.timing.repeat.count", ""),
    ("RXR-1", "MedicationRequest.dosageInstruction.route", ""),
    ("RXR-2", "MedicationRequest.dosageInstruction.site", ""),
    ("RXR-4", "MedicationRequest.dosageInstruction.method", ""),
    ("RXC-2", "MedicationRequest.contained.ingredient.itemCodeableConcept", "one ingredient per RXC, DrugNo = position"),
    ("RXC-3", "MedicationRequest.contained.ingredient.strength.numerator", "denominator 1 回 (MERIT-9 TIME)"),
    ("RXC-4", "MedicationRequest.contained.ingredient.strength.numerator", "unit (MR9P)"),
    ("NTE-3", "MedicationRequest.note", ""),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("RXC-1", "base (B) / additive (A) has no element in JP_Medication; ingredient order (DrugNo) keeps the base first as written"),
]


@register("OMP-02")
def map_omp_02(msg: Message, ctx: MapContext) -> list[dict]:
    out: list[dict] = []
    numbering = med.Numbering()
    fac = ctx.facility
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
            item = med.medication_concept(rxc[2], rxc[7], fac)
            if item:
                ingredients.append(med.ingredient(item, med.field_quantity(rxc.get(3), rxc[4], fac), n))
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
        r: dict = {
            "resourceType": "MedicationRequest",
            "id": med.rid(ctx, *pos),
            "meta": ctx.meta(term.PROFILE["MedicationRequestInjection"]),
            "contained": [medication],
            "identifier": identifiers,
            "status": med.request_status(orc),
            "intent": "order",
        }
        cats = med.categories(msg, orc, rxe, fac, "OMP-02")
        if itype and rxe is not None:
            cats.insert(1, dt.codeable(rxe[2], fac))
        if cats:
            r["category"] = cats
        r["medicationReference"] = {"reference": "#med"}
        r["subject"] = dt.patient_ref(ctx.patient_id)
        med.request_parts(r, msg, ctx, orc, rxe, group.segments)

        dose = rate = instruction = None
        if rxe is not None:
            dose = med.field_quantity(rxe.get(3), rxe[5], fac) if (itype or rxcs) else None
            rate = med.rate_ratio(rxe.get(23), rxe.get(24), rxe[24].component(2))
            instruction = dt.codeable(rxe[7], fac)
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
    return out
