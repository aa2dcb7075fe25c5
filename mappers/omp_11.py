"""OMP-11 処方実施通知 (RAS^O17) -> one JP_MedicationAdministration per RXA.

Why MedicationAdministration and not MedicationDispense: the message is HL7's RAS
(pharmacy/treatment *administration*), its RXA segment records a dose given to the patient
(RXA-3/4 time of administration, RXA-10 the nurse who gave it, RXA-11 the ward/bed), and
RXA-20 says whether it was completed.  A dispense would be RDS^O13 with RXD, which SS-MIX2 does
not store.  See docs/mapping/omp_11.md.
"""

from __future__ import annotations

from storage.hl7 import Message

from .jsontypes import Json
from . import datatypes as dt
from . import embedded
from . import medication as med
from .context import MapContext
from .registry import register

MAPPING: list[tuple[str, str, str]] = [
    ("ORC-2", "MedicationAdministration.request", "logical reference by identifier to the OMP-01 order"),
    ("ORC-4", "MedicationAdministration.identifier", "rpNumber (zero-suppressed) + orderInRp (position of the RXA in the Rp)"),
    ("ORC-9", "MedicationAdministration.extension", "JP_MedicationAdministration_RequestAuthoredOn"),
    ("ORC-12", "MedicationAdministration.extension", "JP_MedicationAdministration_Requester"),
    ("ORC-17", "MedicationAdministration.extension", "JP_MedicationAdministration_RequestDepartment"),
    ("ORC-29", "MedicationAdministration.category", "inpatient/outpatient (fallback PV1-2)"),
    ("RXA-3", "MedicationAdministration.effectiveDateTime", "effectivePeriod.start when RXA-4 differs"),
    ("RXA-4", "MedicationAdministration.effectivePeriod", "end"),
    ("RXA-5", "MedicationAdministration.medicationCodeableConcept", "HOT/YJ/local triplets"),
    ("RXA-6", "MedicationAdministration.dosage.dose", ""),
    ("RXA-7", "MedicationAdministration.dosage.dose", "unit (MR9P)"),
    ("RXA-9", "MedicationAdministration.note", ""),
    ("RXA-10", "MedicationAdministration.performer.actor", ""),
    ("RXA-18", "MedicationAdministration.statusReason", "when not-done"),
    ("RXA-20", "MedicationAdministration.status", "CP completed, PA stopped, NA/RE not-done"),
    ("RXA-21", "MedicationAdministration.status", "D -> entered-in-error"),
    ("RXR-1", "MedicationAdministration.dosage.route", ""),
    ("RXR-2", "MedicationAdministration.dosage.site", ""),
    ("RXR-3", "MedicationAdministration.device", "投薬装置 as display"),
    ("RXR-4", "MedicationAdministration.dosage.method", ""),
    ("RXR-5", "MedicationAdministration.dosage.extension", "投与経路指示 (主管/側管): JP_MedicationDosage_Line"),
    ("RXR-6", "MedicationAdministration.dosage.site", "部位修飾子 (左/右): codings added to the site, text prefixed"),
    ("OBX-3", "Observation.code", "OBX after an RXA: one Observation each (mappers.embedded), referenced from MedicationAdministration.supportingInformation"),
    ("OBX-5", "Observation.value[x]", "with OBX-2 and OBX-6 (mappers.datatypes.obx_value)"),
    ("OBX-11", "Observation.status", ""),
    ("OBX-14", "Observation.effectiveDateTime", "else the administration's time"),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("RXA-1", "give sub-ID counter only numbers the lines; ids use the Rp and the RXA position"),
    ("RXA-2", "administration counter: each RXA is already its own MedicationAdministration"),
    ("RXA-11", "LA2 ward/bed location: no Location resource exists to reference"),
    ("ORC-1", "administration status comes from RXA-20/21, not from the order control code"),
    ("PV1", "visit snapshot of the order (class, ward, attending, visit number); Encounters come from the ADT files and the order's class from ORC-29, else PV1-2"),
    ("RXE", "the order's own segment repeated in the administration (RAS^O17): the MedicationRequest comes from the OMP-01 file, referenced by ORC-2"),
    ("TQ1", "the order's own segment repeated in the administration (RAS^O17): the MedicationRequest comes from the OMP-01 file, referenced by ORC-2"),
    ("RXC", "the order's own segment repeated in the administration (RAS^O17): the MedicationRequest comes from the OMP-01 file, referenced by ORC-2"),
    ("ORC-10", "entered by; the administration's performer is RXA-10"),
    ("ORC-29", "order type; MedicationAdministration.category comes from ORC-29.1 / PV1-2"),
    ("RXR", "the order-side RXR (after RXE) repeats the order's route: each administration maps the RXR after its RXA (else the group's first RXR)"),
    ("RXA-22", "system entry time of the record; meta.lastUpdated is the file's 発生日時"),
]


@register("OMP-11")
def map_omp_11(msg: Message, ctx: MapContext) -> list[Json]:
    out: list[Json] = []
    numbering = med.Numbering()
    n_obs = 0
    fac = ctx.facility
    for group in med.order_groups(msg):
        orc = group.orc
        rp, _ = med.group_rp(group)
        for i, seg in enumerate(group.segments):
            if seg.id != "RXA":
                continue
            rxr = med.first_rxr_after(group.segments, i + 1)
            if rxr is None:
                rxr = group.first("RXR")
            order_in_rp = str(numbering.next_in_rp(rp))
            pos = numbering.unique(rp, order_in_rp)
            r = med.administration_base(msg, ctx, orc, [seg], "MedicationAdministration",
                                        "MedicationAdministration", pos)
            r["identifier"] = med.rp_identifiers(rp, pos[1])
            r["medicationCodeableConcept"] = dt.codeable(seg[5], fac) or {"text": "(薬剤コードなし)"}
            dosage, devices = med.administration_dosage(rxr, fac)
            if devices:
                r["device"] = devices
            dose = med.field_quantity(seg.get(6), seg[7], fac)
            if dose:
                dosage["dose"] = dose
            if dosage:
                r["dosage"] = dosage
            out.append(r)
            obs = embedded.supporting(r, med.obx_after(group.segments, seg), ctx,
                                      med.effective_start(r), n_obs + 1)
            n_obs += len(obs)
            out.extend(obs)
    return out
