"""OMP-12 注射実施通知 (RAS^O17) -> JP_MedicationAdministration_Injection, or Immunization.

RXA lines of one ORC that share the administration counter (RXA-2) and start time (RXA-3)
are one administration event: the drugs mixed into one drip.  Each event becomes one
MedicationAdministration whose contained JP_Medication lists every RXA drug as an ingredient.
When the 注射種別 in RXE-2 is 06 (予防接種) or an RXA drug is coded in CVX, each RXA is a
vaccination and becomes an Immunization instead.
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
    ("ORC-2", "MedicationAdministration.request", "logical reference by identifier to the OMP-02 order"),
    ("ORC-4", "MedicationAdministration.identifier", "rpNumber (zero-suppressed)"),
    ("ORC-9", "MedicationAdministration.extension", "JP_MedicationAdministration_RequestAuthoredOn"),
    ("ORC-12", "MedicationAdministration.extension", "JP_MedicationAdministration_Requester"),
    ("ORC-17", "MedicationAdministration.extension", "JP_MedicationAdministration_RequestDepartment"),
    ("ORC-29", "MedicationAdministration.category", "inpatient/outpatient (fallback PV1-2)"),
    ("RXE-2", "Immunization", "注射種別 06 (予防接種) switches the target to Immunization"),
    ("RXE-3", "MedicationAdministration.dosage.dose", "total volume when the RAS carries the order's RXE"),
    ("RXE-23", "MedicationAdministration.dosage.rateRatio", "when RXA-12 is empty"),
    ("RXA-2", "MedicationAdministration.id", "with RXA-3 groups RXA lines into one administration event"),
    ("RXA-3", "MedicationAdministration.effectiveDateTime", "effectivePeriod.start when RXA-4 differs; Immunization.occurrenceDateTime"),
    ("RXA-4", "MedicationAdministration.effectivePeriod", "end"),
    ("RXA-5", "MedicationAdministration.contained.ingredient.itemCodeableConcept", "one ingredient per RXA; Immunization.vaccineCode"),
    ("RXA-6", "MedicationAdministration.contained.ingredient.strength.numerator", "per 1 回; dosage.dose for a single drug; Immunization.doseQuantity"),
    ("RXA-7", "MedicationAdministration.contained.ingredient.strength.numerator", "unit (MR9P)"),
    ("RXA-9", "MedicationAdministration.note", "Immunization.note"),
    ("RXA-10", "MedicationAdministration.performer.actor", "every RXA line of the event, de-duplicated; Immunization.performer (function AP)"),
    ("ORC-12", "Immunization.performer", "function OP (ordering provider); MedicationAdministration: extension Requester"),
    ("RXA-12", "MedicationAdministration.dosage.rateRatio", "102ml/hr -> 102 mL / 1 h"),
    ("RXA-15", "Immunization.lotNumber", ""),
    ("RXA-16", "Immunization.expirationDate", ""),
    ("RXA-17", "Immunization.manufacturer", "display = RXA-17.2 (else .1); the code as identifier (local system manufacturer)"),
    ("RXA-18", "MedicationAdministration.statusReason", "when not-done; Immunization.statusReason"),
    ("RXA-20", "MedicationAdministration.status", "CP completed, PA stopped, NA/RE not-done"),
    ("RXA-21", "MedicationAdministration.status", "D -> entered-in-error"),
    ("RXA-22", "Immunization.recorded", ""),
    ("RXR-1", "MedicationAdministration.dosage.route", "Immunization.route"),
    ("RXR-2", "MedicationAdministration.dosage.site", "Immunization.site"),
    ("RXR-3", "MedicationAdministration.device", "display only"),
    ("RXR-4", "MedicationAdministration.dosage.method", ""),
    ("RXR-5", "MedicationAdministration.dosage.extension", "投与経路指示 (主管/側管): JP_MedicationDosage_Line"),
    ("RXR-6", "MedicationAdministration.dosage.site", "部位修飾子 (左/右): codings added to the site, text prefixed; also Immunization.site"),
    ("OBX-3", "Observation.code", "OBX after an RXA: one Observation each (mappers.embedded), referenced from MedicationAdministration.supportingInformation"),
    ("OBX-5", "Observation.value[x]", "with OBX-2 and OBX-6 (mappers.datatypes.obx_value)"),
    ("OBX-11", "Observation.status", ""),
    ("OBX-14", "Observation.effectiveDateTime", "else the administration's time"),
]

NOT_MAPPED: list[tuple[str, str]] = [
    ("RXA-1", "give sub-ID counter only numbers the lines; ids use the Rp and RXA-2 instead"),
    ("RXA-11", "LA2 ward/bed location: JP Core's Location extension needs a Location resource that the storage does not hold"),
    ("ORC-1", "administration status comes from RXA-20/21, not from the order control code"),
    ("PV1", "visit snapshot of the order (class, ward, attending, visit number); Encounters come from the ADT files and the order's class from ORC-29, else PV1-2"),
    ("RXE", "the order's own segment repeated in the administration (RAS^O17): the MedicationRequest comes from the OMP-02 file, referenced by ORC-2; RXE-2/3/5/23/24 are read for vaccination and dose/rate fallbacks"),
    ("TQ1", "the order's own segment repeated in the administration (RAS^O17): the MedicationRequest comes from the OMP-02 file, referenced by ORC-2; RXE-2/3/5/23/24 are read for vaccination and dose/rate fallbacks"),
    ("RXC", "the order's own segment repeated in the administration (RAS^O17): the MedicationRequest comes from the OMP-02 file, referenced by ORC-2; RXE-2/3/5/23/24 are read for vaccination and dose/rate fallbacks"),
    ("ORC-10", "entered by; the administration's performer is RXA-10"),
    ("ORC-29", "order type; MedicationAdministration.category comes from ORC-29.1 / PV1-2"),
    ("RXA-4", "end of a vaccination: R4 Immunization has one occurrenceDateTime (RXA-3)"),
    ("RXA-12", "rate of a vaccination: Immunization has no rate"),
    ("ORC-2", "order number of a vaccination: R4 Immunization has no basedOn (MedicationAdministration.request carries it)"),
    ("ORC-9", "order time of a vaccination: R4 Immunization has no authoredOn"),
    ("ORC-17", "department of a vaccination: JP Core Immunization has no department extension"),
    ("RXR", "the order-side RXR (after RXE) repeats the order's route: each administration maps the RXR after its RXA (else the group's first RXR)"),
    ("RXA-22", "system entry time of the record; meta.lastUpdated is the file's 発生日時"),
    ("RXA-9.3", "coding system name of the administration note; its text is the note"),
    ("RXA-17.3", "coding system name of the manufacturer; its name is kept"),
]


def _is_vaccination(rxe: Segment | None, rxas: list[Segment]) -> bool:
    itype, _ = med.injection_type(rxe)
    return itype == med.VACCINATION or any(r[5].component(3).upper() == "CVX" for r in rxas)


def _immunization(msg: Message, ctx: MapContext, orc: Segment, rxa: Segment, rxr: Segment | None,
                  pos: tuple[str, ...], rp: str) -> Json:
    fac = ctx.facility
    status = med.administration_status([rxa])
    r: Json = {
        "resourceType": "Immunization",
        "id": med.rid(ctx, *pos),
        "meta": ctx.meta(term.PROFILE["Immunization"]),
        "identifier": med.rp_identifiers(rp, None),
        "status": status if status in ("completed", "entered-in-error", "not-done") else "completed",
    }
    if r["status"] == "not-done":
        reason = dt.codeable(rxa[18], fac)
        if reason:
            r["statusReason"] = reason
    r["vaccineCode"] = dt.codeable(rxa[5], fac) or {"text": "(ワクチンコードなし)"}
    r["patient"] = dt.patient_ref(ctx.patient_id)
    r["occurrenceDateTime"] = (dt.datetime_(rxa[3]) or dt.datetime_(rxa[4])
                               or dt.datetime_(msg["MSH"][7]) or ctx.last_updated)
    recorded = dt.datetime_(rxa[22])
    if recorded:
        r["recorded"] = recorded
    if rxa.get(15):
        r["lotNumber"] = rxa.get(15)
    expiry = dt.date_(rxa[16])
    if expiry:
        r["expirationDate"] = expiry
    maker_code, maker = rxa[17].component(1), rxa[17].component(2)
    if maker or maker_code:
        r["manufacturer"] = {"display": maker or maker_code}
        if maker_code and maker:
            r["manufacturer"]["identifier"] = {
                "system": term.local_id_system(fac, "manufacturer"), "value": maker_code}
    parts = med.route_parts(rxr, fac)
    if "site" in parts:
        r["site"] = parts["site"]
    if "route" in parts:
        r["route"] = parts["route"]
    dose = med.field_quantity(rxa.get(6), rxa[7], fac)
    if dose:
        r["doseQuantity"] = dose
    performers = []
    performer = dt.practitioner(rxa[10], fac)
    if performer:
        performers.append({"function": dt.concept("AP", "Administering Provider", term.V2_0443),
                           "actor": performer})
    orderer = dt.practitioner(orc[12], fac)
    if orderer:
        performers.append({"function": dt.concept("OP", "Ordering Provider", term.V2_0443),
                           "actor": orderer})
    if performers:
        r["performer"] = performers
    note = med.rxa_note(rxa)
    if note:
        r["note"] = note
    return r


@register("OMP-12")
def map_omp_12(msg: Message, ctx: MapContext) -> list[Json]:
    out: list[Json] = []
    numbering = med.Numbering()
    n_obs = 0
    fac = ctx.facility
    for group in med.order_groups(msg):
        orc = group.orc
        rxe = group.first("RXE")
        rp, seq = med.group_rp(group)
        line = numbering.line(rp, seq)
        events = med.administration_groups(group)
        for n, (rxas, rxr) in enumerate(events, 1):
            rxr = rxr or group.first("RXR")
            if _is_vaccination(rxe, rxas):
                for k, rxa in enumerate(rxas, 1):
                    pos = numbering.unique(rp, line, f"{n}", f"v{k}")
                    out.append(_immunization(msg, ctx, orc, rxa, rxr, pos, rp))
                continue
            pos = numbering.unique(rp, line, str(n))
            r = med.administration_base(msg, ctx, orc, rxas, "MedicationAdministration",
                                        "MedicationAdministrationInjection", pos)
            r["identifier"] = med.rp_identifiers(rp, None)
            ingredients = []
            for k, rxa in enumerate(rxas, 1):
                item = dt.codeable(rxa[5], fac)
                if item:
                    ingredients.append(
                        med.ingredient(item, med.field_quantity(rxa.get(6), rxa[7], fac), k))
            r["contained"] = [med.contained_medication(ctx, ingredients)]
            r["medicationReference"] = {"reference": "#med"}
            dosage, devices = med.administration_dosage(rxr, fac)
            dose = med.field_quantity(rxe.get(3), rxe[5], fac) if rxe is not None else None
            if dose is None and len(rxas) == 1:
                dose = med.field_quantity(rxas[0].get(6), rxas[0][7], fac)
            if dose:
                dosage["dose"] = dose
            rate = next((q for q in (med.rate_ratio(x.get(12), "") for x in rxas) if q), None)
            if rate is None and rxe is not None:
                rate = med.rate_ratio(rxe.get(23), rxe.get(24), rxe[24].component(2))
            if rate:
                dosage["rateRatio"] = rate
            if dosage:
                r["dosage"] = dosage
            if devices:
                r["device"] = devices
            obs = embedded.supporting(r, med.obx_after(group.segments, rxas[-1]), ctx,
                                      med.effective_start(r), n_obs + 1)
            n_obs += len(obs)
            out.append(_reorder(r))
            out.extend(obs)
    return out


_ORDER = ("resourceType", "id", "meta", "contained", "extension", "identifier", "status",
          "statusReason", "category", "medicationReference", "subject")


def _reorder(r: Json) -> Json:
    """Keep the conventional element order in the JSON (contained first) for readability."""
    head = {k: r[k] for k in _ORDER if k in r}
    head.update((k, v) for k, v in r.items() if k not in head)
    return head
