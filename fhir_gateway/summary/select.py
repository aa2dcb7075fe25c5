"""What a patient summary shows, chosen from a patient's mapped resources (pure functions).

A disaster-time backup is behind by definition, so "current" is judged against the chart's
**newest data date**, never against today.  Medication uses the viewer's own rules
(:mod:`fhir_gateway.services.medication_summary`); this module chooses problems, allergies and
the latest results the same way for the IPS document, the JP-CLINS bundles and the handout."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from fhir_gateway.services.medication_summary import last_data_date

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

LATEST_RESULT_DATES = 3        # result/vital columns shown: the newest three dates per item


def _get(resource: dict, path: str) -> object:
    cur: object = resource
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


def newest_data_date(resources: list[dict]) -> date | None:
    """The chart's newest data date, as the viewer states it (the newest SS-MIX2 date folder,
    :func:`fhir_gateway.services.medication_summary.last_data_date`), else the latest clinical
    date of any resource (receipt-only patients have no date folders)."""
    text = last_data_date(resources)
    if text:
        return date.fromisoformat(text)
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
