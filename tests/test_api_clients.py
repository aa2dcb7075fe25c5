"""Independent FHIR client libraries read, search and page against a live server."""

from __future__ import annotations

import pytest

JLAC10 = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"


def test_fhirpy_read_search_and_page(server, hospital):
    fhirpy = pytest.importorskip("fhirpy")
    client = fhirpy.SyncFHIRClient(server.base, authorization=f"Bearer {server.token}")
    pid = hospital.facts["first"]
    patient = client.reference("Patient", pid).to_resource()
    assert patient["id"] == pid and patient["birthDate"] == "1965-04-15"
    found = client.resources("Patient").search(family="山田").fetch()
    assert [p["id"] for p in found] == [pid]
    labs = client.resources("Observation").search(patient=pid, category="laboratory") \
        .sort("date").limit(3)
    all_labs = labs.fetch_all()  # follows the signed `next` links
    assert len(all_labs) == 10
    assert len({o["id"] for o in all_labs}) == 10
    dates = [o["effectiveDateTime"] for o in all_labs]
    assert dates == sorted(dates)
    assert len(client.resources("Observation").search(
        patient=pid, code=f"{JLAC10}|3A010000002327101").fetch()) == 3
    # fhirpy's count() adds Aidbox's `_totalMethod`; strict servers refuse it, lenient ignores it
    lenient = fhirpy.SyncFHIRClient(server.base, authorization=f"Bearer {server.token}",
                                    extra_headers={"Prefer": "handling=lenient"})
    assert lenient.resources("Observation").search(
        patient=pid, code=f"{JLAC10}|3A010000002327101").count() == 3


def test_fhirclient_read_search_and_page(server, hospital):
    pytest.importorskip("fhirclient")
    from fhirclient import client
    from fhirclient.models.bundle import Bundle
    from fhirclient.models.patient import Patient
    smart = client.FHIRClient(settings={"app_id": "tests", "api_base": server.base})
    smart.server.session.headers["Authorization"] = f"Bearer {server.token}"
    pid = hospital.facts["first"]
    p = Patient.read(pid, smart.server)
    assert p.id == pid and p.gender == "male"
    assert p.birthDate.isostring == "1965-04-15"
    bundle = Bundle.read_from("Patient?gender=female", smart.server)
    # the storage's two women and the receipts' unmatched 佐藤花子 (Patient/uke-…)
    assert sorted(e.resource.id for e in bundle.entry)[:2] == ["0000000101", "0000000103"]
    assert [e.resource.id[:4] for e in bundle.entry if e.resource.id[:4] == "uke-"] == ["uke-"]
    # page through a search with the `next` links the server signed
    ids: list[str] = []
    data = smart.server.request_json(f"Observation?patient={pid}&category=laboratory&_count=4")
    while True:
        b = Bundle(data, strict=False)
        ids += [e.resource.id for e in b.entry if e.search.mode == "match"]
        nxt = [lk.url for lk in b.link if lk.relation == "next"]
        if not nxt:
            break
        data = smart.server.request_json(nxt[0].replace(server.base + "/", ""))
    assert len(ids) == 10 == len(set(ids))
