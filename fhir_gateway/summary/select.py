"""What a patient summary shows, chosen from a patient's mapped resources (pure functions).

A disaster-time backup is behind by definition, so "current" is judged against the chart's
**newest data date** (the latest clinical date of any resource), never against today: the
medication a patient was on is the medication running on that date.  The same rules serve the
IPS document, the JP-CLINS bundles and the printable handout."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

# The clinical date of each resource type: the first element present wins.
_DATE_PATHS: dict[str, tuple[str, ...]] = {
    "AllergyIntolerance": ("recordedDate", "onsetDateTime", "onsetPeriod.start"),
    "Condition": ("recordedDate", "onsetDateTime", "onsetPeriod.start", "abatementDateTime"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "Encounter": ("period.end", "period.start"),
    "Immunization": ("occurrenceDateTime",),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod.start"),
    "MedicationRequest": ("authoredOn",),
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "ServiceRequest": ("authoredOn", "occurrenceDateTime"),
    "ImagingStudy": ("started",),
}

USAGE_DURATION = ("http://jpfhir.jp/fhir/core/Extension/StructureDefinition/"
                  "JP_MedicationRequest_DosageInstruction_UsageDuration")
PERIOD_OF_USE = ("http://jpfhir.jp/fhir/core/Extension/StructureDefinition/"
                 "JP_MedicationRequest_DosageInstruction_PeriodOfUse")

RECENT_MEDICATION_DAYS = 100   # JP-CLINS keeps about 100 days of prescriptions
RECENT_ADMINISTRATION_DAYS = 14  # administrations: what was given in the last two weeks
LATEST_RESULT_DATES = 3        # result/vital columns shown: the newest three dates per item


def _get(resource: dict, path: str):
    cur = resource
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def clinical_date(resource: dict) -> date | None:
    """The calendar date (Japan time, as written) a resource is about, or None."""
    for path in _DATE_PATHS.get(resource.get("resourceType", ""), ()):
        value = _get(resource, path)
        if isinstance(value, str) and len(value) >= 10:
            try:
                return date.fromisoformat(value[:10])
            except ValueError:
                continue
    return None


def newest_data_date(resources: Iterable[dict]) -> date | None:
    """The latest clinical date in the chart: what "as of" means for a backup."""
    dates = [d for d in (clinical_date(r) for r in resources) if d]
    return max(dates) if dates else None


def of_type(resources: Iterable[dict], *types: str) -> list[dict]:
    return [r for r in resources if r.get("resourceType") in types]


def _coded(concept: dict | None, systems: tuple[str, ...]) -> str | None:
    for c in (concept or {}).get("coding", []):
        if c.get("system") in systems:
            return c.get("code")
    return None


def has_category(resource: dict, code: str) -> bool:
    cats = resource.get("category") or []
    if isinstance(cats, dict):
        cats = [cats]
    return any(c.get("code") == code for cat in cats for c in cat.get("coding", []))


# -- problems and allergies --------------------------------------------------------------------
_ACTIVE = {"active", "recurrence", "relapse"}


def clinical_status(resource: dict) -> str | None:
    return _coded(resource.get("clinicalStatus"), (
        "http://terminology.hl7.org/CodeSystem/condition-clinical",
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"))


def is_refuted(resource: dict) -> bool:
    return _coded(resource.get("verificationStatus"), (
        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
    )) in ("refuted", "entered-in-error")


def active_problems(resources: Iterable[dict]) -> list[dict]:
    """Conditions still open: clinical status active (or unknown and not abated)."""
    out = []
    for r in of_type(resources, "Condition"):
        if is_refuted(r):
            continue
        status = clinical_status(r)
        if status in _ACTIVE or (status is None and "abatementDateTime" not in r):
            out.append(r)
    return _newest_first(out)


def past_problems(resources: Iterable[dict]) -> list[dict]:
    active = {id(r) for r in active_problems(resources)}
    return _newest_first([r for r in of_type(resources, "Condition")
                          if id(r) not in active and not is_refuted(r)])


def allergies(resources: Iterable[dict]) -> list[dict]:
    """One AllergyIntolerance per allergen (the newest record of it), refuted ones left out."""
    seen: dict[str, dict] = {}
    for r in _newest_first(of_type(resources, "AllergyIntolerance")):
        if is_refuted(r):
            continue
        key = concept_key(r.get("code"))
        seen.setdefault(key, r)
    return list(seen.values())


def concept_key(concept: dict | None) -> str:
    """A stable key for "the same thing": the first coding, else the normalised text."""
    concept = concept or {}
    for c in concept.get("coding", []):
        if c.get("code"):
            return f"{c.get('system', '')}|{c['code']}"
    return "text|" + "".join((concept.get("text") or "").split())


# -- medication --------------------------------------------------------------------------------
def _duration_days(request: dict) -> int | None:
    for dose in request.get("dosageInstruction", []):
        for ext in dose.get("extension", []):
            if ext.get("url") == USAGE_DURATION:
                value = ext.get("valueDuration", {}).get("value")
                if isinstance(value, (int, float)) and value > 0:
                    return int(value)
        bounds = (dose.get("timing", {}).get("repeat") or {}).get("boundsDuration") or {}
        if bounds.get("code") == "d" and isinstance(bounds.get("value"), (int, float)):
            return int(bounds["value"])
    supply = (request.get("dispenseRequest") or {}).get("expectedSupplyDuration") or {}
    if supply.get("code") == "d" and isinstance(supply.get("value"), (int, float)):
        return int(supply["value"])
    return None


def _start(request: dict) -> date | None:
    for dose in request.get("dosageInstruction", []):
        for ext in dose.get("extension", []):
            if ext.get("url") == PERIOD_OF_USE:
                start = (ext.get("valuePeriod") or {}).get("start")
                if start:
                    try:
                        return date.fromisoformat(start[:10])
                    except ValueError:
                        pass
    return clinical_date(request)


@dataclass
class MedicationLine:
    """One ordered drug with the dates that decide whether it was running at the data date."""
    resource: dict
    start: date | None
    end: date | None          # last day of intake (start + days - 1), None when unknown
    running: bool             # running at the newest data date
    group: str                # the order and Rp it belongs to (re-issue unit)


@dataclass
class MedicationSummary:
    as_of: date | None
    running: list[MedicationLine] = field(default_factory=list)
    ended: list[MedicationLine] = field(default_factory=list)

    @property
    def resources(self) -> list[dict]:
        return [m.resource for m in self.running + self.ended]


def _group(resource: dict) -> str:
    order = (resource.get("groupIdentifier") or {}).get("value") or resource.get("id", "")
    rp = next((i.get("value") for i in resource.get("identifier", [])
               if i.get("system", "").endswith("Medication-RPGroupNumber")), "")
    return f"{order}/{rp}"


def last_known_medication(resources: list[dict], as_of: date | None = None,
                          recent_days: int = RECENT_MEDICATION_DAYS) -> MedicationSummary:
    """Prescriptions and injections of the last ``recent_days`` before the newest data date.

    ``running`` holds the orders whose intake period covers ``as_of`` (or, when the period is
    unknown, that were ordered on the newest prescribing date); ``ended`` the rest of the window.
    Cancelled and entered-in-error orders never count."""
    as_of = as_of or newest_data_date(resources)
    summary = MedicationSummary(as_of)
    if as_of is None:
        return summary
    window = as_of - timedelta(days=recent_days)
    given_window = as_of - timedelta(days=RECENT_ADMINISTRATION_DAYS)
    meds = [r for r in of_type(resources, "MedicationRequest", "MedicationAdministration")
            if r.get("status") not in ("cancelled", "entered-in-error", "stopped", "not-done")]
    dated = [(r, _start(r)) for r in meds]
    dated = [(r, d) for r, d in dated if d and d <= as_of and d >= (
        window if r["resourceType"] == "MedicationRequest" else given_window)]
    dated = _newest_administration_per_drug(dated)
    latest: dict[str, date] = {}
    for r, d in dated:
        if r["resourceType"] == "MedicationRequest":
            latest[order_kind(r)] = max(d, latest.get(order_kind(r), d))
    for r, start in sorted(dated, key=lambda t: (t[1], t[0].get("id", "")), reverse=True):
        days = _duration_days(r) if r["resourceType"] == "MedicationRequest" else 1
        end = start + timedelta(days=days - 1) if days else None
        if end is not None:
            running = end >= as_of
        else:
            running = r["resourceType"] == "MedicationRequest" and start == latest.get(order_kind(r))
        line = MedicationLine(r, start, end, running, _group(r))
        (summary.running if running else summary.ended).append(line)
    return summary


SSMIX2_DATA_TYPE = "http://fhir-gateway.example.org/CodeSystem/ssmix2-data-type"
KIND_JA = {"OMP-01": "処方", "OMP-11": "処方実施", "OMP-02": "注射", "OMP-12": "注射実施"}


def order_kind(resource: dict) -> str:
    """The SS-MIX2 data type an order came from (OMP-01 prescription, OMP-02 injection, ...)."""
    for cat in resource.get("category") or []:
        for c in cat.get("coding", []) if isinstance(cat, dict) else []:
            if c.get("system") == SSMIX2_DATA_TYPE:
                return c.get("code", "")
    return resource.get("resourceType", "")


def _drug_key(resource: dict) -> str:
    if resource.get("medicationCodeableConcept"):
        return concept_key(resource["medicationCodeableConcept"])
    meds = [m for m in resource.get("contained", []) if m.get("resourceType") == "Medication"]
    return "|".join(concept_key(i.get("itemCodeableConcept")) for m in meds
                    for i in m.get("ingredient", [])) or resource.get("id", "")


def _newest_administration_per_drug(dated: list[tuple[dict, date]]) -> list[tuple[dict, date]]:
    """Keep every order, but only the newest administration of each drug (a ward gives the
    same drug daily; the summary needs the last time, not every time)."""
    newest: dict[str, tuple[dict, date]] = {}
    out = []
    for r, d in dated:
        if r["resourceType"] != "MedicationAdministration":
            out.append((r, d))
            continue
        key = _drug_key(r)
        if key not in newest or (d, r.get("id", "")) > (newest[key][1], newest[key][0].get("id", "")):
            newest[key] = (r, d)
    return out + list(newest.values())


# -- results -----------------------------------------------------------------------------------
def latest_observations(resources: Iterable[dict], category: str,
                        dates: int = LATEST_RESULT_DATES) -> list[dict]:
    """Observations of one category from its newest ``dates`` dates, newest first."""
    obs = [r for r in of_type(resources, "Observation") if has_category(r, category)
           and r.get("status") not in ("cancelled", "entered-in-error")]
    days = sorted({d for d in (clinical_date(r) for r in obs) if d}, reverse=True)[:dates]
    keep = set(days)
    return _newest_first([r for r in obs if clinical_date(r) in keep])


def _newest_first(resources: list[dict]) -> list[dict]:
    return sorted(resources, key=lambda r: (clinical_date(r) or date.min, r.get("id", "")),
                  reverse=True)
