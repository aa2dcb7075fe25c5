"""``GET [base]?_type=…`` (search across resource types, FHIR R4 3.1.1.3) over HTTP against the
real server on the synthetic hospital: the same matches as each type's own search, in
``_type`` order, paged; only parameters every listed type declares; declared in /metadata."""

from __future__ import annotations

import requests


def ids(bundle: dict) -> list[tuple[str, str]]:
    return [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle.get("entry", [])
            if e["search"]["mode"] == "match"]


def all_pages(api, url: str, params=None) -> tuple[list[tuple[str, str]], dict]:
    first = api.get(url, params=params)
    assert first.status_code == 200, first.text
    b = first.json()
    out = ids(b)
    nxt = next((lk["url"] for lk in b["link"] if lk["relation"] == "next"), None)
    while nxt:
        page = api.get(nxt).json()
        out += ids(page)
        nxt = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)
    return out, b


def test_system_search_is_the_union_of_the_type_searches_in_order(synth_api):
    api = synth_api
    pid = api.get(f"{api.base}/Patient", params={"_count": 1}).json()["entry"][0]["resource"]["id"]
    want = []
    for t in ("Encounter", "Observation", "Condition"):
        got, b = all_pages(api, f"{api.base}/{t}", {"patient": pid, "_count": 1000})
        want += got
    assert len(want) > 20
    # paged at 7 (pages cross type boundaries), base URL with and without the trailing slash
    for base in (api.base, api.base + "/"):
        got, b = all_pages(api, base, {"_type": "Encounter,Observation,Condition",
                                       "patient": pid, "_count": 7})
        assert got == want and b["total"] == len(want) and len(ids(b)) == 7
        assert b["type"] == "searchset"
    count = api.get(api.base, params={"_type": "Encounter,Condition", "patient": pid,
                                      "_summary": "count"}).json()
    assert count["total"] == sum(1 for t, _ in want if t in ("Encounter", "Condition"))
    assert "entry" not in count


def test_system_search_common_parameters(synth_api):
    api = synth_api
    patients, _ = all_pages(api, f"{api.base}/Patient", {"_count": 1000})
    one = patients[0][1]
    b = api.get(api.base, params={"_type": "Patient,Group", "_id": one}).json()
    assert ids(b) == [("Patient", one)]
    got, b = all_pages(api, api.base, {"_type": "Patient,Group", "_lastUpdated": "gt2000-01-01",
                                       "_count": 5})
    groups, _ = all_pages(api, f"{api.base}/Group", {"_lastUpdated": "gt2000-01-01"})
    pts, _ = all_pages(api, f"{api.base}/Patient", {"_lastUpdated": "gt2000-01-01",
                                                    "_count": 1000})
    assert got == pts + groups and len(got) > 5


def test_system_search_refuses_what_it_cannot_apply_to_every_type(synth_api):
    api = synth_api

    def outcome(params, status=400, headers=None):
        r = api.get(api.base, params=params, headers=headers or {})
        assert r.status_code == status, r.text
        body = r.json()
        assert body["resourceType"] == "OperationOutcome"
        return body["issue"][0]["diagnostics"]

    said = outcome({"_type": "Patient,Observation", "patient": "Patient/x"})
    assert "'patient'" in said and "Patient" in said
    said = outcome({"_type": "Observation,AllergyIntolerance", "subject": "Patient/x"})
    assert "'subject'" in said and "AllergyIntolerance" in said
    assert "_type" in outcome({"_id": "x"})
    assert "_type" in outcome({})  # the bare base URL too
    assert "Nonsense" in outcome({"_type": "Patient,Nonsense", "_id": "x"})
    assert "AuditEvent" in outcome({"_type": "AuditEvent", "_id": "x"})
    assert "_sort" in outcome({"_type": "Patient,Group", "_sort": "_lastUpdated"})
    assert "bogus" in outcome({"_type": "Patient,Group", "bogus": "1"})
    assert "_lastUpdated" in outcome({"_type": "Patient,Group", "_lastUpdated": "2020-13"})
    # lenient: a parameter no listed type knows is skipped, and the Bundle says so
    r = api.get(api.base, params={"_type": "Patient,Group", "bogus": "1", "_count": 1},
                headers={"Prefer": "handling=lenient"})
    assert r.status_code == 200
    notes = [e for e in r.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert any("bogus" in i["diagnostics"] for e in notes for i in e["resource"]["issue"])
    # … but one that some listed types declare is still refused
    outcome({"_type": "Patient,Observation", "patient": "Patient/x"},
            headers={"Prefer": "handling=lenient"})
    assert requests.get(api.base, params={"_type": "Patient"}).status_code == 401


def test_capability_statement_declares_search_system(synth_api):
    cs = synth_api.get(f"{synth_api.base}/metadata").json()
    rest = cs["rest"][0]
    assert {"code": "search-system"} in [{"code": i["code"]} for i in rest["interaction"]]
    assert {"_id", "_lastUpdated", "_type"} <= {p["name"] for p in rest["searchParam"]}
