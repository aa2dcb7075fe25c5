"""Receipt-built Patients (``Patient/uke-…``) are in the Patient index (whoosh) like the storage's
patients: a real server answers Patient searches by name, kana, birth date, gender and
identifier through the index, and the answer is the folder walk's (same ids) — for the
storage's patients, the receipt Patients and a receipt file added while the server runs."""

from __future__ import annotations

import random

import pytest
import requests
from conftest import FACILITY, build_synth_hospital, make_token
from test_receipt_patients import STRANGERS, _write

from conformance import registry
from fhir_gateway import config as cfg
from fhir_gateway.index import PatientIndex
from fhir_gateway.services import FacilityService, MappedCache, WalkIndex
from fhir_gateway.services import match

LATE = [("7770009", "遅着　三郎", "チチャク　サブロウ", "1", "19700101")]


@pytest.fixture(scope="module")
def site(tmp_path_factory, server_factory):
    import subprocess

    from conftest import BIN
    h = build_synth_hospital(tmp_path_factory.mktemp("receipt-index"), patients=6, years=1)
    _write(h.receipts, "202401", STRANGERS)
    subprocess.run([str(BIN / "fhir-gateway"), "index", "--config", str(h.config),
                    "--no-progress"], check=True, capture_output=True)
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))
    fac = cfg.load(h.config).facilities[FACILITY]
    walked = FacilityService(fac, MappedCache(64 << 20), h.data_dir, index_factory=WalkIndex)
    return h, srv, walked


def _http_ids(srv, items: list[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    url, params = f"{srv.base}/Patient", items + [("_count", "500")]
    while url:
        r = requests.get(url, params=params, headers=srv.headers, timeout=60)
        assert r.status_code == 200, (items, r.text[:300])
        b = r.json()
        out += [e["resource"]["id"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]
        url, params = next((lk["url"] for lk in b["link"] if lk["relation"] == "next"), None), None
    return out


def _walk_ids(walked, items: list[tuple[str, str]]) -> set[str]:
    return {r["id"] for r in walked.search("Patient", registry().parse("Patient", items)).matches}


def _queries(patients: list[dict], rng: random.Random) -> list[list[tuple[str, str]]]:
    """Name / kana prefixes and substrings, birth dates with prefixes, gender, identifier."""
    params = registry().get("Patient").params
    out: list[list[tuple[str, str]]] = []
    for p in patients:
        for name in p.get("name", []):
            text = (name.get("family", "") + "".join(name.get("given", []))).replace("　", "")
            if text:
                out += [[("name", text[:1])], [("name", text[: rng.randint(2, len(text))])],
                        [("family", name.get("family", "")[:2])],
                        [("name:contains", text[1:3])]]
        for v in match.values(p, params["birthdate"]):
            out += [[("birthdate", v)], [("birthdate", "ge" + v[:7])],
                    [("birthdate", "lt" + v[:4])]]
        if p.get("gender"):
            out.append([("gender", p["gender"]), ("name", (p.get("name") or [{}])[0]
                                                   .get("family", "")[:1])])
        for ident in p.get("identifier", []):
            out.append([("identifier", ident["value"])])
    return out


def _agree(h, srv, walked, rng) -> int:
    everyone = [p for p in walked.search("Patient", registry().parse("Patient", [])).matches]
    assert any(p["id"].startswith("uke-") for p in everyone)
    queries = _queries(everyone, rng)
    for items in queries:
        got = _http_ids(srv, items)
        assert len(got) == len(set(got)), items  # no Patient twice
        assert set(got) == _walk_ids(walked, items), items
    return len(queries)


def test_receipt_patients_indexed_and_searched_like_the_walk(site) -> None:
    h, srv, walked = site
    n = _agree(h, srv, walked, random.Random(3))
    assert n > 50
    ix = PatientIndex(h.data_dir, FACILITY, [h.root])
    stub_ids = {s["id"] for s in ix.stubs([])}
    uke = {f"uke-{FACILITY}-7770001", f"uke-{FACILITY}-7770002"}
    assert uke <= stub_ids, "the receipt Patients are not in the whoosh index"
    assert not any(s.patient_id.startswith("uke-") for s in ix.search(name="ガイライ"))  # viewer
    ix.close()


def test_a_receipt_file_added_later_is_indexed(site) -> None:
    h, srv, walked = site
    _write(h.receipts, "202402", LATE)
    late = f"uke-{FACILITY}-7770009"
    assert _http_ids(srv, [("name", "チチャク")]) == [late]
    both = [("birthdate", "1970-01-01"), ("gender", "male")]
    assert late in _http_ids(srv, both) and set(_http_ids(srv, both)) == _walk_ids(walked, both)
    ix = PatientIndex(h.data_dir, FACILITY, [h.root])
    assert late in {s["id"] for s in ix.stubs([])}
    ix.close()
    _agree(h, srv, walked, random.Random(4))
