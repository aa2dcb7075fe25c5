"""The patient-level view (mappers.chart): admissions close with their discharge, cancel events
withdraw what they cancel, leaves end with the return, one AllergyIntolerance per allergen -
as a pure function and through the REST API."""

from __future__ import annotations

import requests

from conftest import build_hospital, make_token
from mappers.chart import assemble
from storage.names import parse_name
from tests import jahis_fixtures as J
from tests.mapper_testkit import by_type, map_bytes
from treebuilder import write


def _encounters() -> list[dict]:
    out = []
    for name, text in J.ENCOUNTERS:
        out.extend(map_bytes(J.encodings(text)["iso-2022-jp"], name))
    return out



def test_pairing_by_visit_number_dates_and_cancellations() -> None:
    resources = _encounters()
    before = [dict(r) for r in resources]
    keep, replaced = assemble(resources)
    assert resources == before  # pure: the mapped (cached) dicts are never changed
    view = [replaced.get(i, resources[i]) for i in keep]
    adm = {e["id"]: e for e in view if "/ADT-22/" in e["meta"]["source"]}
    first = next(e for e in adm.values() if e["period"]["start"].startswith("2016-08-01"))
    assert first["status"] == "finished"
    assert first["period"]["end"].startswith("2016-08-20T15:30")
    assert first["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "20"  # death
    second = next(e for e in adm.values() if e["period"]["start"].startswith("2016-09-01"))
    assert second["status"] == "finished" and second["period"]["end"].startswith("2016-09-10")
    third = next(e for e in adm.values() if e["period"]["start"].startswith("2016-10-01"))
    assert third["status"] == "in-progress" and "end" not in third["period"]  # A13: discharge cancelled
    fourth = [e for e in adm.values() if e["period"]["start"].startswith("2016-11-01")]
    assert {e["status"] for e in fourth} == {"cancelled"}  # A11 as its own record
    plans = {e["identifier"][0]["value"]: e["status"] for e in view if "/ADT-21/" in e["meta"]["source"]}
    assert plans == {"V1001": "finished", "V1009": "planned"}  # carried out / not yet
    leave = next(e for e in view if "/ADT-31/" in e["meta"]["source"])
    assert leave["status"] == "finished"
    assert all(loc["status"] == "completed" for loc in leave["location"])


def test_allergies_deduplicated_across_files() -> None:
    omp = map_bytes(J.encodings(J.OMP01)["iso-2022-jp"], J.OMP01_NAME)
    omp2 = map_bytes(J.encodings(J.OMP02)["iso-2022-jp"], J.OMP02_NAME)
    resources = omp + omp2
    allergies = by_type(resources, "AllergyIntolerance")
    assert len(allergies) == 4
    keep, _ = assemble(resources)
    kept = [resources[i] for i in keep if resources[i]["resourceType"] == "AllergyIntolerance"]
    assert len(kept) == 2 and {a["code"]["text"] for a in kept} == {"ロキソニン錠", "造影剤以外の検査薬"}
    view = [_ for _ in (assemble(resources)[1].get(i) for i in keep) if _]
    also = [e["valueString"] for a in view for e in a.get("extension", [])
            if e["url"].endswith("also-recorded-in")]
    assert len(also) == 2 and all("/OMP-02/" in s for s in also)  # where the copies were


def test_api_serves_closed_admission(tmp_path, server_factory) -> None:
    h = build_hospital(tmp_path, n_patients=1)
    for name, text in J.ENCOUNTERS + [(J.OMP01_NAME, J.OMP01)]:
        write(h.root, parse_name(name), raw=J.encodings(text)["iso-2022-jp"])
    # a lab result cut in its last OBX: what was written is served, with an outcome entry
    lab = J.OML11_ORU.replace("\rSPM|1|||019^全血^JC10|||||||||||||201608250900\r", "\r")
    cut = lab[: lab.rindex("|15.8-34.8")]
    write(h.root, parse_name(J.OML11_NAME), raw=J.encodings(cut)["iso-2022-jp"])
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))
    bundle = requests.get(f"{srv.base}/Encounter", params={"patient": J.PID8, "_count": 50},
                          headers=srv.headers, timeout=60).json()
    encs = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"]
    first = next(e for e in encs if "/ADT-22/" in e["meta"]["source"]
                 and e["period"]["start"].startswith("2016-08-01"))
    assert first["status"] == "finished" and first["period"]["end"].startswith("2016-08-20")
    one = requests.get(f"{srv.base}/Encounter/{first['id']}", headers=srv.headers, timeout=30).json()
    assert one["status"] == "finished" and one["period"] == first["period"]
    for url, params in ((f"{srv.base}/Observation", {"patient": J.PID8}),
                        (f"{srv.base}/Patient/{J.PID8}/$everything", {})):
        b = requests.get(url, params=params, headers=srv.headers, timeout=60).json()
        kinds = [e["resource"]["resourceType"] for e in b["entry"]]
        outcomes = [e for e in b["entry"] if e.get("search", {}).get("mode") == "outcome"]
        assert any("OML-11" in str(o["resource"]) and "cut short" in str(o["resource"])
                   for o in outcomes), url
        assert any(e["resource"].get("meta", {}).get("source", "").endswith(J.OML11_NAME)
                   for e in b["entry"] if e["resource"]["resourceType"] == "Observation"), kinds
    allergies = requests.get(f"{srv.base}/AllergyIntolerance", params={"patient": J.PID8},
                             headers=srv.headers, timeout=30).json()
    assert len([e for e in allergies.get("entry", [])
                if e["resource"]["resourceType"] == "AllergyIntolerance"]) == 2


def test_closed_admission_versions_agree(tmp_path, server_factory) -> None:
    """read, vread and _history of a closed admission agree: the closed Encounter is the
    newest version (stored + 1, naming the discharge file), the stored versions stay as written."""
    h = build_hospital(tmp_path, n_patients=1)
    for name, text in J.ENCOUNTERS:
        write(h.root, parse_name(name), raw=J.encodings(text)["iso-2022-jp"])
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))

    def get(path: str, **params) -> dict:
        r = requests.get(f"{srv.base}/{path}", params=params, headers=srv.headers, timeout=60)
        assert r.status_code == 200, (path, r.text[:300])
        return r.json()

    encs = [e["resource"] for e in get("Encounter", patient=J.PID8, _count=100)["entry"]
            if e["resource"]["resourceType"] == "Encounter"]
    changed = [e for e in encs if any(x["url"].endswith("/changed-by")
                                      for x in e.get("extension", []))]
    assert {e["status"] for e in changed} >= {"finished", "cancelled"}
    first = next(e for e in changed if "/ADT-22/" in e["meta"]["source"]
                 and e["period"]["start"].startswith("2016-08-01"))
    assert any("/ADT-52/" in x["valueString"] for x in first["extension"]
               if x["url"].endswith("/changed-by"))
    for enc in changed:
        vid = enc["meta"]["versionId"]
        one = get(f"Encounter/{enc['id']}")
        assert one == enc
        assert get(f"Encounter/{enc['id']}/_history/{vid}") == enc
        hist = [e["resource"] for e in get(f"Encounter/{enc['id']}/_history")["entry"]]
        assert hist[0] == enc
        stored = hist[1:]
        assert [int(r["meta"]["versionId"]) for r in stored] == \
            list(range(int(vid) - 1, 0, -1))  # every stored version, newest first
        for r in stored:
            assert not any(x["url"].endswith("/changed-by") for x in r.get("extension", []))
            assert get(f"Encounter/{enc['id']}/_history/{r['meta']['versionId']}") == r
        assert stored[0]["status"] != enc["status"]  # the file as written: not yet closed
        assert requests.get(f"{srv.base}/Encounter/{enc['id']}/_history/{int(vid) + 1}",
                            headers=srv.headers, timeout=30).status_code == 404
        if enc is first:
            assert stored[0]["status"] == "in-progress" and "end" not in stored[0]["period"]
            assert enc["meta"]["lastUpdated"] >= stored[0]["meta"]["lastUpdated"]
