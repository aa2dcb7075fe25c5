"""What each SS-MIX2 data type means to the gateway: which resource types it can yield (so a
search reads only those folders) and which clinical category its records belong to (the viewer's
tabs, the summaries).  The one table of data types above ``storage.names``.

A superset in :data:`SOURCES` is harmless (the extra files are mapped and filtered out, and
cached); a missing entry would hide data, so when a mapper starts emitting a new resource type,
add its data type here."""

from __future__ import annotations

from storage.names import DATA_TYPES

_ADT_VISITS = ("ADT-12", "ADT-21", "ADT-22", "ADT-31", "ADT-32", "ADT-41", "ADT-42", "ADT-51",
               "ADT-52")
_OMG = ("OMG-01", "OMG-02", "OMG-03", "OMG-11", "OMG-12", "OMG-13")

SOURCES: dict[str, tuple[str, ...]] = {
    "Patient": ("ADT-00",),
    "Coverage": ("ADT-00",),
    "RelatedPerson": ("ADT-00",),
    # OBX in orders and administrations, AL1 in any message (mappers.embedded)
    "Observation": ("ADT-00", "OML-11", "ADT-61", "OMP-01", "OMP-02", "OMP-11", "OMP-12") + _OMG,
    "AllergyIntolerance": ("ADT-61", "ADT-00", "OMP-01", "OMP-02", "OMP-11", "OMP-12", "OML-01",
                           "OMD") + _ADT_VISITS,
    "Condition": ("PPR-01",),
    "Encounter": _ADT_VISITS + ("ADT-01",),
    "CareTeam": ("ADT-01",),
    "MedicationRequest": ("OMP-01", "OMP-02"),
    "MedicationAdministration": ("OMP-11", "OMP-12"),
    "MedicationDispense": ("OMP-11",),
    "Immunization": ("OMP-12",),
    "Medication": ("OMP-01", "OMP-02", "OMP-11", "OMP-12"),
    "DiagnosticReport": ("OML-11",) + _OMG,
    "Specimen": ("OML-01", "OML-11"),
    "ServiceRequest": ("OML-01",) + _OMG,
    "ImagingStudy": _OMG,
    "Procedure": _OMG,
    "NutritionOrder": ("OMD",),
    "Practitioner": tuple(DATA_TYPES),
    "Organization": tuple(DATA_TYPES),
    "Location": _ADT_VISITS,
}
# data type -> clinical category of its records (the viewer's tabs; other data types are
# categorised by resource type, see fhir_gateway.viewer.models.category_of)
CATEGORY: dict[str, str] = {
    "PPR-01": "conditions", "ADT-61": "allergies",
    "OMP-01": "prescriptions", "OMP-11": "prescriptions",
    "OMP-02": "injections", "OMP-12": "administrations",
    "OML-01": "lab-orders", "OML-11": "lab-results",
}


def category_of_data_type(data_type: str) -> str | None:
    return CATEGORY.get(data_type)


# Types that never come from SS-MIX2 standardized-storage files (UKE receipts, extended storage).
NON_STORAGE = {"Claim", "DocumentReference"}


def data_types_for(types: set[str] | None) -> list[str] | None:
    """Data types to read for ``types`` (None = every type = every folder)."""
    if types is None:
        return None
    out: set[str] = set()
    for t in types:
        if t in NON_STORAGE:
            continue
        src = SOURCES.get(t)
        if src is None:
            return None  # unknown: read everything rather than miss data
        out.update(src)
    return sorted(out)
