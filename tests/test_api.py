"""The FHIR API over HTTP against a real `fhir-gateway serve` process (2 workers)."""

from __future__ import annotations

import gzip
import subprocess

import pytest
import requests
from lxml import etree

from conftest import BIN, FACILITY, make_token

JLAC10 = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"


def bundle_ids(b: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in b.get("entry", []) if e["search"]["mode"] == mode]


def get(api, path: str, **params) -> requests.Response:
    return api.get(api.base + path, params=params)


# -- read / vread / history / errors ------------------------------------------------------------
def test_read_patient_with_etag_and_304(api, hospital):
    pid = hospital.facts["first"]
    r = get(api, f"/Patient/{pid}")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    p = r.json()
    assert p["id"] == pid and p["meta"]["source"].endswith("_1")
    assert r.headers["ETag"] == 'W/"1"' and r.headers["Last-Modified"]
    assert r.headers["X-Storage-Root"] == "primary"
    r2 = api.get(api.base + f"/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert r2.status_code == 304
    r3 = api.get(api.base + f"/Patient/{pid}",
                 headers={"If-Modified-Since": r.headers["Last-Modified"]})
    assert r3.status_code == 304
    r4 = api.get(api.base + f"/Patient/{pid}", headers={"If-None-Match": 'W/"7"'})
    assert r4.status_code == 200


def test_versions_history_and_vread(api, hospital):
    pid = hospital.facts["first"]
    b = get(api, "/Observation", patient=pid, code=f"{JLAC10}|3A016000002327102").json()
    assert b["total"] == 1
    obs = b["entry"][0]["resource"]
    assert obs["meta"]["versionId"] == "2" and obs["valueQuantity"]["value"] == 3.3
    h = get(api, f"/Observation/{obs['id']}/_history").json()
    assert h["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in h["entry"]] == ["2", "1"]
    v1 = get(api, f"/Observation/{obs['id']}/_history/1")
    assert v1.status_code == 200 and v1.json()["valueQuantity"]["value"] == 3.1
    assert v1.json()["meta"]["source"].endswith("_2")
    assert get(api, f"/Observation/{obs['id']}/_history/9").status_code == 404


def test_deleted_record_is_410(api, hospital):
    pid = hospital.facts["first"]
    rid = f"{pid}.20230301.OMP-01.{hospital.facts['deleted_order']}.1.1"
    r = get(api, f"/MedicationRequest/{rid}")
    assert r.status_code == 410
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("path,status", [
    ("/Foo", 404), ("/Foo/1", 404), ("/Patient/9999999999", 404),
    ("/Observation/not-an-id", 404), ("/Observation/..%2F..%2Fetc", 404),
    # the client resolves "/Patient/.." to the base itself: a search of all types without _type
    ("/Patient/..", 400), ("/Patient/%2E%2E", 404),
    ("/Observation?patient=0000000100&bogus=1", 400),
    ("/Observation?patient=0000000100&date=yesterday", 400),
    ("/Observation?patient=0000000100&code:exact=x", 400),
    ("/Observation?patient=0000000100&_sort=color", 400),
    ("/Observation?patient=0000000100&_include=Observation:performer", 400),
    ("/Observation", 400), ("/Observation?code=x", 400),
])
def test_errors_are_operation_outcomes(api, path, status):
    r = api.get(api.base + path)
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_lenient_ignores_unknown_parameters(api, hospital):
    pid = hospital.facts["first"]
    r = api.get(api.base + "/Observation", params={"patient": pid, "bogus": "1"},
                headers={"Prefer": "handling=lenient"})
    assert r.status_code == 200
    self_link = [lk["url"] for lk in r.json()["link"] if lk["relation"] == "self"][0]
    assert "bogus" not in self_link and "patient" in self_link


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_writes_are_405(api, method):
    r = getattr(api, method)(api.base + "/Patient/0000000100", json={"resourceType": "Patient"})
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"
    r = api.post(api.base + "/Patient", json={"resourceType": "Patient"})
    assert r.status_code == 405


def test_post_search_form_and_415(api, hospital):
    pid = hospital.facts["first"]
    r = api.post(api.base + "/Condition/_search", data={"patient": pid})
    assert r.status_code == 200 and r.json()["total"] == 1
    r = api.post(api.base + "/Condition/_search", json={"patient": pid})
    assert r.status_code == 415


# -- auth -----------------------------------------------------------------------------------------
def test_auth_401_403(server, hospital):
    url = server.base + "/Patient/" + hospital.facts["first"]
    r = requests.get(url)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"
    r = requests.get(url, headers={"Authorization": "Bearer fgw_0000_nope"})
    assert r.status_code == 401 and "invalid_token" in r.headers["WWW-Authenticate"]
    other = make_token(hospital.data_dir, "9999999999", "other")
    r = requests.get(url, headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 403
    assert requests.get(server.base + "/metadata").status_code == 200  # discovery stays open


def test_token_revoke_takes_effect(server, hospital):
    tok = make_token(hospital.data_dir, FACILITY, "short-lived")
    url = server.base + "/Patient/" + hospital.facts["first"]
    # one kept-alive connection: the worker that remembered the verified token is asked again
    sess = requests.Session()
    for _ in range(3):
        assert sess.get(url, headers={"Authorization": f"Bearer {tok}"}).status_code == 200
    _, tid, secret = tok.split("_", 2)  # the secret itself may contain "_"
    subprocess.run([str(BIN / "fhir-gateway"), "token", "revoke", "--data-dir",
                    str(hospital.data_dir), tid], check=True, capture_output=True)
    listing = subprocess.run([str(BIN / "fhir-gateway"), "token", "list", "--data-dir",
                              str(hospital.data_dir)], capture_output=True, text=True).stdout
    assert secret not in listing and "revoked" in listing
    assert sess.get(url, headers={"Authorization": f"Bearer {tok}"}).status_code == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {tok}"}).status_code == 401
    stored = (hospital.data_dir / "api-tokens.json").read_text()
    assert secret not in stored


def test_no_auth_refused_off_loopback(hospital):
    r = subprocess.run([str(BIN / "fhir-gateway"), "serve", "--config", str(hospital.config),
                        "--host", "0.0.0.0", "--port", "1", "--no-auth"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "loopback" in r.stderr


def test_no_auth_on_loopback_warns_and_serves(hospital, server_factory):
    s = server_factory(["--config", str(hospital.config), "--no-auth"], workers=1)
    assert requests.get(s.base + "/Patient/" + hospital.facts["first"]).status_code == 200


# -- formats --------------------------------------------------------------------------------------
def test_xml_format_and_negotiation(api, hospital):
    pid = hospital.facts["first"]
    r = api.get(api.base + f"/Patient/{pid}", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/fhir+xml")
    root = etree.fromstring(r.content)
    ns = {"f": "http://hl7.org/fhir"}
    assert root.tag == "{http://hl7.org/fhir}Patient"
    assert root.find("f:id", ns).get("value") == pid
    assert root.find("f:name/f:extension", ns).get("url").endswith("EN-representation")
    b = get(api, "/Observation", patient=pid, _format="xml", _count="2")
    tree = etree.fromstring(b.content)
    assert tree.tag == "{http://hl7.org/fhir}Bundle"
    assert len(tree.findall("f:entry/f:resource/f:Observation", ns)) == 2
    r = api.get(api.base + f"/Patient/{pid}", headers={"Accept": "text/html"})
    assert r.status_code == 406
    assert get(api, f"/Patient/{pid}", _format="yaml").status_code == 406
    pretty = get(api, f"/Patient/{pid}", _pretty="true").text
    assert "\n  " in pretty


def test_gzip(api, hospital):
    r = api.get(api.base + "/Observation", params={"patient": hospital.facts["first"]},
                headers={"Accept-Encoding": "gzip"}, stream=True)
    assert r.headers["Content-Encoding"] == "gzip"
    raw = r.raw.read()
    assert gzip.decompress(raw).startswith(b"{")


# -- search semantics -----------------------------------------------------------------------------
def test_broken_file_is_an_outcome_entry(api, hospital):
    b = get(api, "/Observation", patient=hospital.facts["first"]).json()
    outcomes = [e["resource"] for e in b["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcomes) == 1
    assert hospital.facts["broken_file"] in outcomes[0]["issue"][0]["diagnostics"]
    assert b["total"] == hospital.facts["labs_per_patient"] + 3  # + A/G, height, weight


def test_clinical_search_needs_patient_and_statement_says_so(api):
    r = get(api, "/Observation", code="x")
    assert r.status_code == 400 and "patient" in r.json()["issue"][0]["diagnostics"]
    cs = get(api, "/metadata").json()
    obs = [x for x in cs["rest"][0]["resource"] if x["type"] == "Observation"][0]
    assert "patient" in obs["documentation"]


def test_patient_search_name_kana_birthdate_gender(api, hospital):
    assert bundle_ids(get(api, "/Patient", name="ヤマ").json()) == ["0000000100", "0000000103"]
    assert bundle_ids(get(api, "/Patient", family="やまだ").json()) == ["0000000100"]
    assert bundle_ids(get(api, "/Patient", **{"jp-kana-sort": "ｻﾄｳ"}).json()) == ["0000000101"]
    assert bundle_ids(get(api, "/Patient", **{"name:exact": "山田"}).json()) == ["0000000100"]
    assert bundle_ids(get(api, "/Patient", **{"name:contains": "郎"}).json()) == \
        ["0000000100", "0000000102"]
    # the receipts' unmatched 佐藤花子 (female, 1950) is a Patient too (Patient/uke-…)
    receipt = [i for i in bundle_ids(get(api, "/Patient", name="佐藤花子").json())
               if i.startswith("uke-")]
    assert len(receipt) == 1
    assert bundle_ids(get(api, "/Patient", birthdate="lt1970").json()) == \
        ["0000000100", "0000000102"] + receipt
    assert bundle_ids(get(api, "/Patient", birthdate="1980-01").json()) == ["0000000101"]
    assert bundle_ids(get(api, "/Patient", gender="female").json()) == \
        ["0000000101", "0000000103"] + receipt
    assert bundle_ids(get(api, "/Patient", **{"gender:not": "male"}).json()) == \
        ["0000000101", "0000000103", "0000000104"] + receipt
    assert bundle_ids(get(api, "/Patient", identifier="0000000102").json()) == ["0000000102"]


def test_date_prefixes(api, hospital):
    pid = hospital.facts["first"]
    n = lambda **kw: get(api, "/Observation", patient=pid, category="laboratory", **kw).json()["total"]  # noqa: E731
    assert n() == 10
    assert n(date="2023-05-15") == 3
    assert n(date="eq2023-05") == 3
    assert n(date="ne2023-05-15") == 7
    assert n(date="gt2023-05-15") == 3
    assert n(date="ge2023-05-15") == 6
    assert n(date="lt2023-05-15") == 4
    assert n(date="le2023-05-15T09:00:00+09:00") == 7
    assert n(date="sa2023-05-15") == 3
    assert n(date="eb2023-02") == 3
    assert n(date=["ge2023-02", "lt2023-06"]) == 4  # repeated = AND
    assert n(date="2023-01-10,2023-11-20") == 6  # comma = OR


def test_tokens_and_quantity(api, hospital):
    pid = hospital.facts["first"]
    code = "3A010000002327101"

    def ids(**kw):
        return get(api, "/Observation", patient=pid, **kw).json()["total"]

    assert ids(code=f"{JLAC10}|{code}") == 3
    assert ids(code=code) == 3
    assert ids(code=f"|{code}") == 0  # no system-less coding exists
    assert ids(code=f"{JLAC10}|") == 12
    assert ids(**{"code:text": "総蛋"}) == 3
    assert ids(**{"code:not": f"{JLAC10}|{code}"}) == 9
    assert ids(code=f"{JLAC10}|{code}", **{"value-quantity": "gt6"}) == 1  # 5.0, 6.0, 7.0
    assert ids(code=f"{JLAC10}|{code}", **{"value-quantity": "5.0"}) == 1
    assert ids(code=f"{JLAC10}|{code}", **{"value-quantity": "le6||g/dl"}) == 2
    assert ids(**{"specimen:missing": "true"}) == 2  # height and weight


def test_sort_count_paging_cursor(api, hospital):
    pid = hospital.facts["first"]
    b = get(api, "/Observation", patient=pid, category="laboratory", _sort="-date",
            _count="4").json()
    assert b["total"] == 10 and len(bundle_ids(b)) == 4
    dates = [e["resource"]["effectiveDateTime"] for e in b["entry"]
             if e["search"]["mode"] == "match"]
    assert dates == sorted(dates, reverse=True)
    seen = bundle_ids(b)
    links = {lk["relation"]: lk["url"] for lk in b["link"]}
    while "next" in links:
        nxt = api.get(links["next"]).json()
        seen += bundle_ids(nxt)
        links = {lk["relation"]: lk["url"] for lk in nxt["link"]}
    assert len(seen) == 10 == len(set(seen))
    prev = api.get(links["previous"]).json()
    assert bundle_ids(prev) == seen[4:8]
    tampered = links["self"].replace("_cursor=", "_cursor=x")
    assert api.get(tampered).status_code == 400
    token = links["self"].split("_cursor=")[1]
    body, sig = token.split(".")
    assert api.get(api.base + "/Observation?_cursor=" + body[:-2] + "AA." + sig).status_code == 400


def test_count_is_capped_and_total_none(api, hospital):
    b = get(api, "/Observation", patient=hospital.facts["first"], _count="5000",
            _total="none").json()
    assert "total" not in b and len(bundle_ids(b)) == 12


def test_include_revinclude(api, hospital):
    pid = hospital.facts["first"]
    b = get(api, "/DiagnosticReport", patient=pid, date="2023-01-10",
            _include=["DiagnosticReport:result", "DiagnosticReport:patient"]).json()
    inc = [(e["resource"]["resourceType"]) for e in b["entry"] if e["search"]["mode"] == "include"]
    assert inc.count("Observation") == 3 and inc.count("Patient") == 1
    b = get(api, "/Patient", _id=pid, _revinclude="Condition:patient").json()
    modes = [(e["search"]["mode"], e["resource"]["resourceType"]) for e in b["entry"]]
    assert ("match", "Patient") in modes and ("include", "Condition") in modes
    b = get(api, "/Observation", patient=pid, date="2023-01-10",
            _include="Observation:specimen").json()
    assert [e["resource"]["resourceType"] for e in b["entry"]
            if e["search"]["mode"] == "include"] == ["Specimen"]


def test_summary_and_elements(api, hospital):
    pid = hospital.facts["first"]
    c = get(api, "/Observation", patient=pid, _summary="count").json()
    assert c["total"] == 12 and "entry" not in c
    s = get(api, "/Observation", patient=pid, _summary="true", _count="1").json()
    obs = s["entry"][0]["resource"]
    assert "referenceRange" not in obs and "code" in obs
    assert obs["meta"]["tag"][0]["code"] == "SUBSETTED"
    e = get(api, "/Observation", patient=pid, _elements="code,effective", _count="1").json()
    obs = e["entry"][0]["resource"]
    assert set(obs) <= {"resourceType", "id", "meta", "code", "effectiveDateTime", "status"}
    assert "effectiveDateTime" in obs
    d = get(api, "/Patient", _id=pid, _summary="data").json()
    assert "text" not in d["entry"][0]["resource"]


def test_id_search_reads_one_record(api, hospital):
    pid = hospital.facts["first"]
    b = get(api, "/Observation", patient=pid, _count="1").json()
    rid = b["entry"][0]["resource"]["id"]
    b2 = get(api, "/Observation", _id=rid).json()
    assert bundle_ids(b2) == [rid]


def test_claims_per_facility_and_in_everything(api, hospital):
    b = get(api, "/Claim").json()
    assert b["total"] == 2
    assert get(api, "/Claim", use="claim", created="2023-03").json()["total"] == 2
    b = get(api, "/Claim", patient=hospital.facts["first"]).json()
    assert b["total"] == 1
    cid = bundle_ids(b)[0]
    assert get(api, f"/Claim/{cid}").json()["patient"]["reference"] == \
        f"Patient/{hospital.facts['first']}"


def test_everything_paged_and_filtered(api, hospital):
    pid = hospital.facts["first"]
    first = get(api, f"/Patient/{pid}/$everything", _count="7").json()
    total = first["total"]
    types = [e["resource"]["resourceType"] for e in first["entry"] if e["search"]["mode"] == "match"]
    assert types[0] == "Patient"
    got = bundle_ids(first)
    links = {lk["relation"]: lk["url"] for lk in first["link"]}
    while "next" in links:
        page = api.get(links["next"]).json()
        got += bundle_ids(page)
        links = {lk["relation"]: lk["url"] for lk in page["link"]}
    assert len(got) == total == len(set(got))
    all_types = {x.split(".")[2] if "." in x else x for x in got}
    assert any(x.startswith("uke-") for x in got)  # the patient's Claim
    assert all_types
    only = get(api, f"/Patient/{pid}/$everything", _type="MedicationRequest,Claim").json()
    assert {e["resource"]["resourceType"] for e in only["entry"]
            if e["search"]["mode"] == "match"} == {"MedicationRequest", "Claim"}
    win = get(api, f"/Patient/{pid}/$everything", start="2023-05-01", end="2023-06-30",
              _type="Observation").json()
    assert win["total"] == 3
    since = get(api, f"/Patient/{pid}/$everything", _since="2023-11-01",
                _type="Observation").json()
    assert since["total"] == 3
    assert get(api, f"/Patient/{pid}/$everything", bogus="1").status_code == 400
    assert get(api, "/Patient/9999999999/$everything").status_code == 404


def test_versions_of_the_report_and_specimen_of_a_versioned_record(api, hospital):
    """The preliminary (flag 2) and final (flag 1) files of one OML-11 record give two versions
    of each resource type mapped from it, read as types of their own."""
    pid, order = hospital.facts["first"], hospital.facts["versioned_order"]
    for rtype in ("DiagnosticReport", "Specimen"):
        b = get(api, f"/{rtype}", patient=pid, _count="1000").json()
        rec = [e["resource"] for e in b["entry"]
               if e["search"]["mode"] == "match" and f".{order}." in e["resource"]["id"]]
        assert len(rec) == 1 and rec[0]["meta"]["versionId"] == "2", rtype
        h = get(api, f"/{rtype}/{rec[0]['id']}/_history").json()
        assert [e["resource"]["meta"]["versionId"] for e in h["entry"]] == ["2", "1"]
        v1 = get(api, f"/{rtype}/{rec[0]['id']}/_history/1").json()
        assert v1["meta"]["source"].endswith("_2")
    # the broken file of the same patient is reported beside the reports, not a 500
    b = get(api, "/DiagnosticReport", patient=pid).json()
    assert any(hospital.facts["broken_file"] in str(e["resource"]) for e in b["entry"]
               if e["search"]["mode"] == "outcome")
