"""The service layer's answer to "where did this resource come from" (services.origin): for every
resource a real server serves, the 診療日 folder, data type and file it names are the file on disk
the resource was mapped from, and the category the data-type table gives is the viewer's tab."""

from __future__ import annotations

from fhir_gateway.services.origin import folder_of, origin, origin_of
from fhir_gateway.services.sources import CATEGORY, SOURCES
from fhir_gateway.viewer import models
from storage.names import parse_name

# resource types whose viewer category is the data type's (vitals/echoes are categorised apart)
BY_TABLE = {"Condition", "MedicationRequest", "MedicationAdministration", "MedicationDispense",
            "Immunization", "ServiceRequest", "DiagnosticReport"}


def _everything(api, pid: str) -> list[dict]:
    out, url = [], f"{api.base}/Patient/{pid}/$everything?_count=500"
    while url:
        bundle = api.get(url).json()
        out += [e["resource"] for e in bundle.get("entry") or []]
        url = next((lk["url"] for lk in bundle.get("link") or [] if lk["relation"] == "next"), None)
    return out


def test_every_served_resource_names_its_file(synth_hospital, synth_api):
    checked: dict[str, int] = {}
    for pid in synth_hospital.patients[:4]:
        for r in _everything(synth_api, pid):
            o = origin(r)
            src = (r.get("meta") or {}).get("source") or ""
            if not o.data_type:  # extended storage, receipts, derived: no SS-MIX2 file to name
                assert (o.date, o.file, o.day) == ("", "", "")
                assert not src or src.startswith(("extended/", "receipts/")) or "/" not in src, src
                continue
            assert o.path == src
            assert (synth_hospital.root / o.path).is_file(), o.path
            name = parse_name(o.file)
            assert (name.patient_id, name.date, name.data_type) == (pid, o.date, o.data_type)
            assert o.day == ("" if o.date == "-" else f"{o.date[:4]}-{o.date[4:6]}-{o.date[6:]}")
            assert folder_of(o.path) == (o.date, o.data_type)
            if r["resourceType"] in BY_TABLE and o.category is not None \
                    and not (o.data_type == "OML-11" and r["resourceType"] == "ServiceRequest"):
                assert models.category_of(r) == o.category, (r["resourceType"], o.data_type)
                checked[o.data_type] = checked.get(o.data_type, 0) + 1
    # outpatients and inpatients of the generator: orders, results, injections, diagnoses
    assert {"PPR-01", "OMP-01", "OMP-02", "OMP-12", "OML-01", "OML-11"} <= set(checked), checked


def test_category_table_covers_only_data_types_the_sources_table_knows():
    known = {d for types in SOURCES.values() for d in types}
    assert set(CATEGORY) <= known
    assert set(CATEGORY.values()) <= set(models.CATEGORIES)
    assert origin_of("") == origin({}) and origin({}).category is None
    assert origin_of("extended/000/000/x/20240101/L-DS/f/main.xml").data_type == ""
