"""Issue 12 item 5: the conformance gaps real clients hit, each over HTTP against a real server."""

from __future__ import annotations

import pytest

from conformance import registry

LENIENT = {"Prefer": "handling=lenient"}


def _ids(bundle: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def _outcomes(bundle: dict) -> list[str]:
    return [i.get("diagnostics", "") for e in bundle.get("entry", [])
            if e["search"]["mode"] == "outcome" for i in e["resource"]["issue"]]


def test_compartment_search_equals_patient_parameter(api, hospital):
    pid = hospital.facts["first"]
    comp = api.get(api.base + f"/Patient/{pid}/Observation", params={"_count": "1000"})
    assert comp.status_code == 200, comp.text
    plain = api.get(api.base + "/Observation", params={"patient": pid, "_count": "1000"}).json()
    assert sorted(_ids(comp.json())) == sorted(_ids(plain)) and _ids(plain)
    # other parameters still apply inside the compartment
    some = api.get(api.base + f"/Patient/{pid}/Observation",
                   params={"code": "3A010000002327101"}).json()
    assert some["total"] == 3
    assert api.get(api.base + f"/Patient/{pid}/MedicationRequest").json()["total"] >= 1
    assert api.get(api.base + "/Patient/0000009999/Observation").status_code == 404
    assert api.get(api.base + f"/Patient/{pid}/Nonsense").status_code == 404
    assert api.get(api.base + f"/Patient/{pid}/_history").json()["type"] == "history"


def test_summary_and_elements_on_read_and_vread(api, hospital):
    pid = hospital.facts["first"]
    full = api.get(api.base + f"/Patient/{pid}").json()
    obs = api.get(api.base + "/Observation", params={"patient": pid, "code": "3A010000002327101"}
                  ).json()["entry"][0]["resource"]
    assert "referenceRange" in obs  # not a summary element
    summ = api.get(api.base + f"/Observation/{obs['id']}", params={"_summary": "true"})
    assert summ.status_code == 200
    s = summ.json()
    assert any(t.get("code") == "SUBSETTED" for t in s["meta"]["tag"])
    assert "referenceRange" not in s and s["code"] == obs["code"]
    el = api.get(api.base + f"/Patient/{pid}", params={"_elements": "birthDate"}).json()
    assert el["birthDate"] == full["birthDate"] and "name" not in el and "address" not in el
    vid = full["meta"]["versionId"]
    v = api.get(api.base + f"/Patient/{pid}/_history/{vid}", params={"_elements": "gender"}).json()
    assert v["gender"] == full["gender"] and "name" not in v
    assert api.get(api.base + f"/Patient/{pid}", params={"_summary": "count"}).status_code == 400
    assert api.get(api.base + f"/Patient/{pid}", params={"_summary": "bogus"}).status_code == 400


def test_options_and_allow_are_truthful(api):
    r = api.options(api.base + "/Patient")
    assert r.status_code in (200, 204)
    allow = {m.strip() for m in r.headers["Allow"].split(",")}
    assert allow == {"GET", "HEAD", "OPTIONS"}
    r = api.put(api.base + "/Patient/0000000100", json={"resourceType": "Patient"})
    assert r.status_code == 405
    assert not {"POST", "PUT", "PATCH", "DELETE"} & {m.strip() for m in r.headers["Allow"].split(",")}
    post = api.options(api.base + "/Patient/_search")
    assert "POST" in post.headers["Allow"]


def test_lenient_refuses_malformed_declared_parameters(api):
    r = api.get(api.base + "/Patient", params={"birthdate": "2020-13"}, headers=LENIENT)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = api.get(api.base + "/Patient", params={"gender:bogus": "male"}, headers=LENIENT)
    assert r.status_code == 400
    r = api.get(api.base + "/Patient", params={"gender": "male", "bogus": "1"}, headers=LENIENT)
    assert r.status_code == 200
    b = r.json()
    assert all(p["gender"] == "male" for p in (e["resource"] for e in b["entry"]
                                                if e["search"]["mode"] == "match"))
    assert any("bogus" in d for d in _outcomes(b)), b


def test_count_above_the_cap_is_reported(api):
    b = api.get(api.base + "/Patient", params={"_count": "5000"}).json()
    notes = _outcomes(b)
    assert any("_count=5000" in d and "1000" in d for d in notes), notes
    assert _ids(b)


def test_value_quantity_missing_reads_value_quantity(synth_api, synth_hospital):
    api = synth_api
    for pid in synth_hospital.patients:
        all_ = api.get(api.base + "/Observation", params={"patient": pid, "_count": "1000"}).json()
        obs = [e["resource"] for e in all_.get("entry", []) if e["search"]["mode"] == "match"]
        other = [o["id"] for o in obs if "valueQuantity" not in o and
                 any(k.startswith("value") for k in o)]
        if not other:
            continue
        missing = api.get(api.base + "/Observation", params={
            "patient": pid, "value-quantity:missing": "true", "_count": "1000"}).json()
        want = sorted(o["id"] for o in obs if "valueQuantity" not in o)
        assert sorted(_ids(missing)) == want
        assert set(other) <= set(_ids(missing))
        return
    pytest.fail("no patient has an Observation with a non-Quantity value")


def test_claim_parameter_definitions(api):
    cs = api.get(api.base + "/metadata").json()
    claim = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Claim")
    defs = {sp["name"]: sp["definition"] for sp in claim["searchParam"]}
    assert defs["identifier"].endswith("/Claim-identifier")
    assert defs["patient"].endswith("/Claim-patient")


def test_medication_request_authoredon_and_date(api, hospital):
    pid = hospital.facts["first"]
    by_auth = api.get(api.base + "/MedicationRequest",
                      params={"patient": pid, "authoredon": "2023-01-10"}).json()
    assert by_auth["total"] >= 1
    assert all(r["authoredOn"].startswith("2023-01-10") for r in
               (e["resource"] for e in by_auth["entry"] if e["search"]["mode"] == "match"))
    # date = when doses are taken: the course that starts on 2023-01-10 covers 2023-01-12
    by_date = api.get(api.base + "/MedicationRequest",
                      params=[("patient", pid), ("date", "ge2023-01-12"), ("date", "le2023-01-12")]
                      ).json()
    assert set(_ids(by_date)) == set(_ids(by_auth))
    assert api.get(api.base + "/MedicationRequest", params={
        "patient": pid, "date": "le2021-01-01"}).json()["total"] == 0


@pytest.mark.parametrize("rtype,key,element", [
    ("Patient", "birthdate", "birthDate"),
    ("MedicationRequest", "authoredon", "authoredOn"),
    ("Observation", "date", "effectiveDateTime"),
    ("Observation", "_lastUpdated", None),
])
def test_sort_on_common_keys(api, hospital, rtype, key, element):
    params = {"_count": "1000"}
    if registry().get(rtype).needs_patient:
        params["patient"] = hospital.facts["first"]
    for desc in (False, True):
        r = api.get(api.base + f"/{rtype}", params={**params, "_sort": ("-" if desc else "") + key})
        assert r.status_code == 200, r.text
        res = [e["resource"] for e in r.json()["entry"] if e["search"]["mode"] == "match"]
        vals = [x[element] if element else x["meta"]["lastUpdated"] for x in res
                if (x.get(element) if element else x["meta"].get("lastUpdated"))]
        assert len(vals) >= 2 and vals == sorted(vals, reverse=desc)


def test_total_accurate_and_estimate(api):
    n = api.get(api.base + "/Patient").json()["total"]
    for mode in ("accurate", "estimate"):
        assert api.get(api.base + "/Patient", params={"_total": mode}).json()["total"] == n
    assert "total" not in api.get(api.base + "/Patient", params={"_total": "none"}).json()


def test_fhirpy_count_and_sort_strict(server, hospital):
    fhirpy = pytest.importorskip("fhirpy")
    client = fhirpy.SyncFHIRClient(server.base, authorization=f"Bearer {server.token}")
    pid = hospital.facts["first"]
    assert client.resources("Observation").search(patient=pid, code="3A010000002327101") \
        .count() == 3
    # + 1: the receipts' unmatched 佐藤花子 is a Patient too (Patient/uke-…)
    assert client.resources("Patient").count() == len(hospital.patients) + 1
    pats = client.resources("Patient").sort("-birthdate").fetch_all()
    births = [p["birthDate"] for p in pats]
    assert births == sorted(births, reverse=True) and len(births) == len(hospital.patients) + 1
