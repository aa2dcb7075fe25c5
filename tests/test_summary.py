"""Patient summaries: IPS ``$summary``, JP-CLINS ``$jp-clins`` and SMART Health Links.

Over a real server on the synthetic hospital: every patient's documents are checked against the
IPS document rules and the JP-CLINS bundle rules we can express (profiles via fhir.resources R4B,
``bdl-*``, required sections, ``meta.tag`` type rules, identifiers, institution numbers).  The
SHL is created by the real CLI, fetched over HTTP and decrypted with jwcrypto - a different JOSE
library from the one (joserfc) that encrypted it."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle
from lxml import etree

from conftest import BIN, FACILITY

from fhir_gateway.summary import select

IPS_REQUIRED = {"11450-4", "48765-2", "10160-0"}
CLINS_TYPES = {"AllergyIntolerance", "Condition", "Observation", "MedicationRequest"}
INSTITUTION_EXT = "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber"
BUNDLE_ID = re.compile(r"^[0-4][0-9][1-3][0-9]{7}\^[0-9]{8}:[^:\s　]*:[^:\s　]*:[0-9]{0,2}"
                       r"\^[A-Z0-9\-]{1,128}$")


# -- pure rules ---------------------------------------------------------------------------------
USAGE = ("http://jpfhir.jp/fhir/core/Extension/StructureDefinition/"
         "JP_MedicationRequest_DosageInstruction_UsageDuration")


def _rx(rid: str, authored: str, days: int, status: str = "active") -> dict:
    return {"resourceType": "MedicationRequest", "id": rid, "status": status,
            "authoredOn": authored, "subject": {"reference": "Patient/p1"},
            "meta": {"source": f"000/000/p1/{authored[:10].replace('-', '')}/OMP-01/f_{rid}"},
            "medicationCodeableConcept": {"text": f"薬{rid}"},
            "dosageInstruction": [{"text": "1日1回", "extension": [
                {"url": USAGE, "valueDuration": {"value": days, "code": "d"}}]}]}


def test_ips_medication_is_judged_at_the_newest_data_date_not_today():
    from fhir_gateway.summary import ips
    res = [_rx("long", "2020-03-01", 60), _rx("short", "2020-03-20", 3),
           _rx("old", "2019-01-01", 30), _rx("void", "2020-03-25", 30, "cancelled"),
           {"resourceType": "Observation", "id": "o", "status": "final",
            "code": {"text": "x"}, "effectiveDateTime": "2020-03-28",
            "meta": {"source": "000/000/p1/20200328/OML-11/f"}}]
    doc = ips.build({"resourceType": "Patient", "id": "p1", "meta": {"source": "s"}}, res,
                    facility_code="1310000017", facility_name="病院", base_url="http://x/fhir/1")
    assert select.newest_data_date(res) == date(2020, 3, 28)   # years before "today"
    meds = next(s for s in doc["entry"][0]["resource"]["section"]
                if s["code"]["coding"][0]["code"] == "10160-0")
    refs = [e["reference"] for e in meds["entry"]]
    assert refs[0] == "MedicationRequest/long"                  # running first
    assert "MedicationRequest/old" not in refs and "MedicationRequest/void" not in refs
    assert "最終データ日 2020-03-28 時点" in meds["text"]["div"]
    assert "継続中" in meds["text"]["div"]


# -- IPS over HTTP -------------------------------------------------------------------------------
def _references(value, out: list[str]) -> list[str]:
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            out.append(value["reference"])
        for k, v in value.items():
            if k != "contained":
                _references(v, out)
    elif isinstance(value, list):
        for v in value:
            _references(v, out)
    return out


def _check_ips(doc: dict, pid: str) -> None:
    Bundle.model_validate(doc)                                   # R4B structure and datatypes
    assert doc["type"] == "document" and doc["identifier"]["value"] and doc["timestamp"]
    urls = [e["fullUrl"] for e in doc["entry"]]
    assert len(urls) == len(set(urls))                      # bdl-7
    comp = doc["entry"][0]["resource"]
    assert comp["resourceType"] == "Composition"            # bdl-11
    assert comp["type"]["coding"][0]["code"] == "60591-5"
    codes = {s["code"]["coding"][0]["code"] for s in comp["section"]}
    assert IPS_REQUIRED <= codes
    by_url = {e["fullUrl"]: e["resource"] for e in doc["entry"]}
    base = next(u for u in urls if u.endswith(f"/Patient/{pid}"))[:-len(f"/Patient/{pid}")]

    def resolve(ref: str):
        return by_url.get(ref) or by_url.get(f"{base}/{ref}")

    assert resolve(comp["subject"]["reference"])["id"] == pid
    assert resolve(comp["author"][0]["reference"])["resourceType"] == "Organization"
    for s in comp["section"]:
        div = etree.fromstring(s["text"]["div"].encode())    # well-formed XHTML
        assert not div.xpath("//*[local-name()='script']")
        if s.get("entry"):
            assert "emptyReason" not in s
            for ref in s["entry"]:
                assert resolve(ref["reference"]), ref       # every section entry is in the doc
        else:
            assert s["emptyReason"]["coding"][0]["code"] == "unavailable"
    for e in doc["entry"][1:]:
        r = e["resource"]
        if r["resourceType"] not in ("Organization",):
            assert r["meta"]["source"], r["id"]             # the file it came from is kept


def test_ips_summary_for_every_patient(synth_api, synth_hospital):
    checked = 0
    for pid in synth_hospital.patients:
        r = synth_api.get(f"{synth_api.base}/Patient/{pid}/$summary")
        assert r.status_code == 200, (pid, r.text[:300])
        _check_ips(r.json(), pid)
        checked += 1
    assert checked == len(synth_hospital.patients) > 0


def test_ips_medication_section_is_relative_to_the_newest_data(synth_api, synth_hospital):
    pid = synth_hospital.patients[0]
    doc = synth_api.get(f"{synth_api.base}/Patient/{pid}/$summary").json()
    comp = doc["entry"][0]["resource"]
    meds = next(s for s in comp["section"] if s["code"]["coding"][0]["code"] == "10160-0")
    ever = synth_api.get(f"{synth_api.base}/Patient/{pid}/$everything",
                         params={"_count": 5000}).json()
    newest = select.newest_data_date([e["resource"] for e in ever["entry"]
                                      if e.get("search", {}).get("mode") != "outcome"])
    assert f"最終データ日 {newest.isoformat()} 時点" in meds["text"]["div"]


def test_summary_errors_are_operation_outcomes(synth_api):
    for path, status in [("Patient/0999999999/$summary", 404),
                         ("Patient/..%5Cetc/$summary", 404),
                         ("Patient/%FF%FE../$jp-clins", 404),
                         ("Patient/0000000001/$jp-clins?type=Encounter", 400),
                         ("Patient/0000000001/$jp-clins?days=abc", 400),
                         ("Patient/0000000001/$summary?bogus=1", 400)]:
        r = synth_api.get(f"{synth_api.base}/{path}")
        assert r.status_code in (status, 400, 404), (path, r.status_code)
        assert r.status_code < 500
        assert r.json()["resourceType"] == "OperationOutcome", path


def test_summary_needs_a_token(synth_server):
    pid = "0000000001"
    r = requests.get(f"{synth_server.base}/Patient/{pid}/$summary")
    assert r.status_code == 401


# -- JP-CLINS ------------------------------------------------------------------------------------
def _check_clins_bundle(b: dict, strict_identifier: bool = True) -> str:
    Bundle.model_validate(b)
    assert b["type"] == "collection"
    assert b["meta"]["profile"] == ["http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_CLINS|1"]
    tags = [t for t in b["meta"]["tag"]
            if t["system"] == "http://jpfhir.jp/fhir/clins/CodeSystem/BundleResourceType_CS"]
    assert len(tags) == 1 and tags[0]["code"] in CLINS_TYPES                  # R02141/R02142
    rtype = tags[0]["code"]
    entries = b["entry"]
    assert entries[0]["resource"]["resourceType"] == "Patient"               # R0211
    assert len(entries) >= 2                                                 # R02143
    assert {e["resource"]["resourceType"] for e in entries[1:]} == {rtype}   # R02144
    assert b["identifier"]["system"] == "http://jpfhir.jp/fhir/clins/bundle-identifier"
    if strict_identifier:                 # needs insurance data; otherwise "not submittable"
        assert BUNDLE_ID.match(b["identifier"]["value"]), b["identifier"]["value"]
    urls = [e["fullUrl"] for e in entries]
    assert len(set(urls)) == len(urls) and all(u.startswith("urn:uuid:") for u in urls)
    for e in entries:
        r = e["resource"]
        inst = [x for x in r.get("extension", []) if x["url"] == INSTITUTION_EXT]
        assert len(inst) == 1 and re.fullmatch(r"[0-4][0-9][1-3][0-9]{7}",
                                                inst[0]["valueIdentifier"]["value"])  # R9011/12
        if r["resourceType"] != "Patient":
            assert r["meta"]["profile"][0].startswith("http://jpfhir.jp/fhir/eCS/StructureDefinition/")
            subject = r.get("subject") or r.get("patient")
            assert subject["reference"] == urls[0]                           # Patient by fullUrl
    if rtype == "Observation":
        for e in entries[1:]:
            systems = [c.get("system") for c in e["resource"]["code"]["coding"]]
            if strict_identifier:                 # our own data always has an item code
                assert "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS" \
                    in systems
            assert ("urn:oid:1.2.392.200119.4.504" in systems or
                    "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_Uncoded_CS" in systems)
    return rtype


def test_jp_clins_for_every_patient(synth_api, synth_hospital):
    kinds: set[str] = set()
    for pid in synth_hospital.patients:
        r = synth_api.get(f"{synth_api.base}/Patient/{pid}/$jp-clins", params={"days": 3650})
        assert r.status_code == 200, r.text[:300]
        outer = r.json()
        Bundle.model_validate(outer)
        outcome = outer["entry"][-1]["resource"]
        assert outcome["resourceType"] == "OperationOutcome"
        assert "JP-CLINS IG 1.11.0" in outcome["issue"][0]["diagnostics"]
        ids = set()
        for e in outer["entry"][:-1]:
            kinds.add(_check_clins_bundle(e["resource"]))
            ids.add(e["resource"]["identifier"]["value"])
        assert len(ids) == len(outer["entry"]) - 1     # one identifier per report unit
    assert {"Condition", "Observation", "MedicationRequest"} <= kinds


def test_jp_clins_type_filter_and_size_split(synth_api, synth_hospital):
    pid = synth_hospital.patients[0]
    one = synth_api.get(f"{synth_api.base}/Patient/{pid}/$jp-clins",
                        params={"type": "Observation", "days": 3650}).json()
    labs = [e["resource"] for e in one["entry"][:-1]]
    assert labs and all(b["meta"]["tag"][0]["code"] == "Observation" for b in labs)
    small = synth_api.get(f"{synth_api.base}/Patient/{pid}/$jp-clins",
                          params={"type": "Observation", "days": 3650,
                                  "max-bytes": 10000}).json()
    parts = [e["resource"] for e in small["entry"][:-1]]
    assert len(parts) > len(labs)                          # big reports split into parts
    assert sum(len(b["entry"]) - 1 for b in parts) == sum(len(b["entry"]) - 1 for b in labs)
    assert any(b["identifier"]["value"].endswith("-P2") for b in parts)


# -- SMART Health Links ---------------------------------------------------------------------------
def _shl(args: list[str], config, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "fhir-gateway"), "shl", *args, "--config", str(config)],
                          capture_output=True, text=True, **kw)


def _payload(link: str) -> dict:
    assert link.startswith("shlink:/")
    raw = link[len("shlink:/"):]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


def _decrypt(token: str, key_b64: str) -> dict:
    from jwcrypto import jwe, jwk
    key = jwk.JWK(kty="oct", k=key_b64)
    obj = jwe.JWE()
    obj.deserialize(token, key=key)
    header = json.loads(obj.objects["protected"])
    assert header["alg"] == "dir" and header["enc"] == "A256GCM"
    assert header["cty"] == "application/fhir+json"
    return json.loads(obj.payload)


@pytest.fixture(scope="module")
def shl_link(synth_server, synth_hospital, tmp_path_factory):
    pid = synth_hospital.patients[1]
    out = tmp_path_factory.mktemp("shl")
    res = _shl(["create", "--facility", FACILITY, "--patient", pid, "--base-url",
                synth_server.url, "--passcode-stdin", "--expires", "2d", "--label",
                "患者サマリー", "--out", str(out)], synth_hospital.config, input="sakura-1234\n")
    assert res.returncode == 0, res.stderr
    return pid, res.stdout.strip(), out


def test_shl_end_to_end_decrypted_by_another_library(synth_server, shl_link):
    pid, link, out = shl_link
    p = _payload(link)
    assert p["flag"] == "P" and len(p["key"]) == 43 and p["label"] == "患者サマリー"
    assert p["url"].startswith(f"{synth_server.url}/shl/") and len(p["url"]) <= 128
    assert (out / "shl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (out / "shl.svg").read_text()
    r = requests.post(p["url"], json={"recipient": "救護所A", "passcode": "sakura-1234"})
    assert r.status_code == 200, r.text
    files = r.json()["files"]
    assert files[0]["contentType"] == "application/fhir+json"
    token = requests.get(files[0]["location"]).text
    doc = _decrypt(token, p["key"])
    _check_ips(doc, pid)
    # the embedded form, when the client allows it
    r = requests.post(p["url"], json={"recipient": "x", "passcode": "sakura-1234",
                                      "embeddedLengthMax": 10_000_000})
    assert _decrypt(r.json()["files"][0]["embedded"], p["key"])["type"] == "document"
    # a tampered location is refused
    bad = files[0]["location"][:-3] + ("AAA" if not files[0]["location"].endswith("AAA") else "BBB")
    assert requests.get(bad).status_code == 404


def test_shl_passcode_budget_holds_under_parallel_guessing(synth_server, synth_hospital):
    res = _shl(["create", "--facility", FACILITY, "--patient", synth_hospital.patients[2],
                "--base-url", synth_server.url, "--passcode", "right-one"], synth_hospital.config)
    assert res.returncode == 0, res.stderr
    url = _payload(res.stdout.strip())["url"]
    r = requests.post(url, json={"recipient": "x", "passcode": "wrong"})
    assert r.status_code == 401 and r.json()["remainingAttempts"] == 9

    def guess(i: int) -> int:
        return requests.post(url, json={"recipient": "x", "passcode": f"w{i}"}).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(guess, range(30)))
    assert codes.count(401) <= 8                      # 9 left: at most 8 more 401s, then 404
    assert requests.post(url, json={"recipient": "x", "passcode": "right-one"}).status_code == 404


def test_shl_revoke_and_list(synth_server, synth_hospital):
    res = _shl(["create", "--facility", FACILITY, "--patient", synth_hospital.patients[3],
                "--base-url", synth_server.url], synth_hospital.config)
    url = _payload(res.stdout.strip())["url"]
    link_id = url.rsplit("/", 1)[1]
    assert requests.post(url, json={"recipient": "x"}).status_code == 200
    listed = _shl(["list"], synth_hospital.config).stdout
    assert link_id in listed and "passcode=no" in listed
    assert _shl(["revoke", link_id], synth_hospital.config).returncode == 0
    assert requests.post(url, json={"recipient": "x"}).status_code == 404
    assert requests.post(f"{synth_server.url}/shl/../etc", json={"recipient": "x"}).status_code \
        in (404, 405)


def test_shl_cli_errors_are_one_line(synth_hospital, synth_server):
    base = ["create", "--facility", FACILITY, "--base-url", synth_server.url]
    bad = _shl([*base, "--patient", "0999999999"], synth_hospital.config)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    bad = _shl([*base, "--patient", synth_hospital.patients[0], "--expires", "soon"],
               synth_hospital.config)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    bad = _shl(["create", "--facility", "9999999999", "--patient", "1", "--base-url",
                "ftp://x"], synth_hospital.config)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


# -- other kinds of patients and data nobody here wrote ------------------------------------------
def test_summary_for_a_patient_without_adt00(tmp_path, server_factory):
    import shutil

    from conftest import build_hospital, make_token
    from storage.layout import Storage
    h = build_hospital(tmp_path)
    pid = h.patients[0]
    shutil.rmtree(Storage(h.root).patient_dir(pid) / "-" / "ADT-00")
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))
    doc = requests.get(f"{srv.base}/Patient/{pid}/$summary", headers=srv.headers, timeout=60)
    assert doc.status_code == 200, doc.text[:300]
    _check_ips(doc.json(), pid)
    patient = next(e["resource"] for e in doc.json()["entry"]
                   if e["resource"]["resourceType"] == "Patient")
    assert patient["meta"]["tag"][0]["code"] == "derived-from-pid"
    out = requests.get(f"{srv.base}/Patient/{pid}/$jp-clins", headers=srv.headers, timeout=60)
    assert out.status_code == 200
    for e in out.json()["entry"][:-1]:
        _check_clins_bundle(e["resource"], strict_identifier=False)


def test_summaries_over_the_guideline_sample_tree(tmp_path, server_factory):
    from pathlib import Path
    nho = (Path(__file__).resolve().parents[2] / "shared" / "samples" / "ssmix2" /
           "nhoHQ__SSMIX2DataTestingTool" / "sampleData")
    if not nho.is_dir():
        pytest.skip(f"public samples not found at {nho}")
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n\n[[facility]]\ncode = "1319999999"\n'
                   f'name = "ガイドライン見本"\nstorage = ["{nho}"]\n', encoding="utf-8")
    srv = server_factory(["--config", str(cfg), "--no-auth"], facility="1319999999", timeout=120)
    found = requests.get(f"{srv.base}/Patient", params={"_count": 100}, timeout=60).json()
    pids = [e["resource"]["id"] for e in found.get("entry", [])
            if e.get("search", {}).get("mode") == "match"]
    assert pids
    for pid in pids:
        r = requests.get(f"{srv.base}/Patient/{pid}/$summary", timeout=60)
        assert r.status_code == 200, (pid, r.text[:300])
        _check_ips(r.json(), pid)
        c = requests.get(f"{srv.base}/Patient/{pid}/$jp-clins", params={"days": 36500},
                         timeout=60)
        assert c.status_code == 200
        for e in c.json()["entry"][:-1]:
            _check_clins_bundle(e["resource"], strict_identifier=False)
            for x in e["resource"]["entry"][1:]:
                coded = [k.get("system") for k in x["resource"].get("code", {}).get("coding", [])]
                if x["resource"]["resourceType"] == "Observation" and not any(
                        "LocalCode" in (k or "") for k in coded):
                    said = json.dumps(c.json()["entry"][-1]["resource"], ensure_ascii=False)
                    assert "検査項目コード (LocalCode)" in said   # the gap is told, not hidden




def test_summary_for_a_receipt_only_patient(api):
    claims = api.get(f"{api.base}/Claim", params={"_count": 1000}).json()
    uke = sorted({e["resource"]["patient"]["reference"].split("/", 1)[1] for e in claims["entry"]
                  if e.get("search", {}).get("mode") == "match"
                  and e["resource"]["patient"]["reference"].startswith("Patient/uke-")})
    assert uke, "the test hospital has a receipt for a person without an SS-MIX2 folder"
    for pid in uke:
        r = api.get(f"{api.base}/Patient/{pid}/$summary")
        assert r.status_code == 200, (pid, r.text[:300])
        _check_ips(r.json(), pid)
        c = api.get(f"{api.base}/Patient/{pid}/$jp-clins")
        assert c.status_code == 200
        for e in c.json()["entry"][:-1]:
            _check_clins_bundle(e["resource"], strict_identifier=False)
