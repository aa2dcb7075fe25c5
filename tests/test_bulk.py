"""Bulk Data export (issue 12 item 2) over HTTP against real servers: kick-off, polling,
manifest, files (split, gzip), filters, errors as OperationOutcome lines, cancel, Groups, the
per-client limit, clean-up after the retention time, and a job that survives a restart."""

from __future__ import annotations

import gzip
import json
import subprocess
import time

import pytest
import requests

from conftest import BIN, build_hospital, make_token, start_server
from fhir_gateway.bulk.export import CHUNK

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def kick(s, path="/$export", headers=None, **params):
    return requests.get(s.base + path, params=params, headers={**s.headers, **ASYNC,
                                                               **(headers or {})})


def wait(s, url, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = requests.get(url, headers=s.headers)
        if r.status_code != 202:
            return r
        assert r.headers["X-Progress"] and int(r.headers["Retry-After"]) > 0
        time.sleep(0.3)
    raise AssertionError("export did not finish")


def export(s, path="/$export", **params) -> dict:
    r = kick(s, path, **params)
    assert r.status_code == 202, r.text
    done = wait(s, r.headers["Content-Location"])
    assert done.status_code == 200, done.text
    return done.json()


def lines(s, url, gz=False) -> list[dict]:
    r = requests.get(url, headers={**s.headers, "Accept-Encoding": "gzip" if gz else "identity"},
                     stream=True)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/fhir+ndjson")
    raw = r.raw.read()
    if gz:
        assert r.headers["Content-Encoding"] == "gzip"
        raw = gzip.decompress(raw)
    return [json.loads(x) for x in raw.splitlines() if x.strip()]


def everything(s, pids) -> set[tuple[str, str]]:
    out = set()
    for pid in pids:
        url = f"{s.base}/Patient/{pid}/$everything?_count=1000"
        while url:
            b = requests.get(url, headers=s.headers).json()
            out |= {(e["resource"]["resourceType"], e["resource"]["id"])
                    for e in b.get("entry", []) if e["search"]["mode"] == "match"}
            url = next((lk["url"] for lk in b["link"] if lk["relation"] == "next"), None)
    return out


def group_create(h, name, pids, tmp_path) -> str:
    f = tmp_path / f"{name}.txt"
    f.write_text("\n".join(pids) + "\n")
    out = subprocess.run([str(BIN / "fhir-gateway"), "group", "create", "--config",
                          str(h.config), "--facility", h.facility, "--name", name,
                          "--patients", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def bulk(tmp_path_factory):
    h = build_hospital(tmp_path_factory.mktemp("bulk"))
    with h.config.open("a") as f:
        f.write("\n[export]\nprocesses = 1\nmax_file_mb = 0.004\n")
    s = start_server(["--config", str(h.config)], token=make_token(h.data_dir), workers=2)
    yield s, h
    s.stop()


def test_kick_off_is_checked(bulk):
    s, _ = bulk
    assert requests.get(s.base + "/$export", headers=s.headers).status_code == 400  # no Prefer
    assert kick(s, bogus="1").status_code == 400
    assert kick(s, _type="Nonsense").status_code == 400
    assert kick(s, _since="yesterday").status_code == 400
    assert kick(s, _outputFormat="text/csv").status_code == 400
    assert kick(s, _typeFilter="Observation?bogus=1").status_code == 400
    assert requests.get(s.base + "/$export", headers=ASYNC).status_code == 401
    assert kick(s, "/Group/grp-nope/$export").status_code == 404


def test_system_export_matches_everything(bulk):
    s, h = bulk
    m = export(s)
    assert m["requiresAccessToken"] is True and m["transactionTime"]
    assert m["request"].startswith(s.base + "/$export")
    got: list[dict] = []
    per_type: dict[str, int] = {}
    for o in m["output"]:
        rs = lines(s, o["url"])
        assert len(rs) == o["count"] and {r["resourceType"] for r in rs} == {o["type"]}
        per_type[o["type"]] = per_type.get(o["type"], 0) + 1
        got += rs
    assert max(per_type.values()) > 1  # split at the (tiny) size limit
    ids = [(r["resourceType"], r["id"]) for r in got]
    assert len(ids) == len(set(ids))
    assert set(ids) == everything(s, h.patients)
    # the broken file is an OperationOutcome line, not a silent gap
    errs = [r for e in m["error"] for r in lines(s, e["url"])]
    assert any(h.facts["broken_file"] in json.dumps(r) for r in errs)
    assert all(r["resourceType"] == "OperationOutcome" for r in errs)
    # the files need the token, and only the manifest's names are served
    assert requests.get(m["output"][0]["url"]).status_code == 401
    bad = m["output"][0]["url"].rsplit("/", 1)[0] + "/..%2F..%2Fapi-tokens.json"
    assert requests.get(bad, headers=s.headers).status_code == 404
    gz = lines(s, m["output"][0]["url"], gz=True)
    assert gz == lines(s, m["output"][0]["url"])


def test_filters(bulk):
    s, h = bulk
    m = export(s, "/Patient/$export", _type="Observation,Patient",
               _typeFilter="Observation?code=3A010000002327101",
               _elements="Observation.code,Observation.subject")
    rs = [r for o in m["output"] for r in lines(s, o["url"])]
    obs = [r for r in rs if r["resourceType"] == "Observation"]
    assert len(obs) == len(h.patients) * 3
    assert all(r["code"]["coding"][0]["code"] == "3A010000002327101" for r in obs)
    assert all("valueQuantity" not in r and "subject" in r for r in obs)
    assert {r["resourceType"] for r in rs} == {"Observation", "Patient"}
    assert len([r for r in rs if r["resourceType"] == "Patient"]) == len(h.patients)
    future = export(s, _since="2099-01-01T00:00:00Z")
    assert future["output"] == []
    old = export(s, _type="Observation", _until="2000-01-01T00:00:00Z")
    assert old["output"] == []
    until_now = export(s, _type="Observation", _until="2099-01-01T00:00:00Z")
    assert sum(o["count"] for o in until_now["output"]) > 0


def test_post_kick_off_with_a_parameters_body(bulk):
    """Bulk Data 2.0 POST kick-off: the same export as the GET with those parameters."""
    s, h = bulk
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Observation,Patient"},
        {"name": "_typeFilter", "valueString": "Observation?code=3A010000002327101"},
        {"name": "_since", "valueInstant": "2000-01-01T00:00:00Z"},
        {"name": "_outputFormat", "valueString": "application/fhir+ndjson"}]}
    hdr = {**s.headers, **ASYNC, "Content-Type": "application/fhir+json"}
    r = requests.post(s.base + "/Patient/$export", json=body, headers=hdr)
    assert r.status_code == 202, r.text
    done = wait(s, r.headers["Content-Location"]).json()
    got = sorted(json.dumps(x, sort_keys=True) for o in done["output"] for x in lines(s, o["url"]))
    via_get = export(s, "/Patient/$export", _type="Observation,Patient",
                     _typeFilter="Observation?code=3A010000002327101",
                     _since="2000-01-01T00:00:00Z")
    assert got == sorted(json.dumps(x, sort_keys=True) for o in via_get["output"]
                         for x in lines(s, o["url"]))
    assert len(got) == len(h.patients) * 4
    bad = [({"resourceType": "Bundle"}, 400),
           ({"resourceType": "Parameters", "parameter": [{"name": "_type"}]}, 400),
           ({"resourceType": "Parameters", "parameter": [
               {"name": "patient", "valueReference": {"reference": "Patient/x"}}]}, 400),
           ({"resourceType": "Parameters", "parameter": [
               {"name": "_type", "valueString": "Nonsense"}]}, 400)]
    for b, status in bad:
        r = requests.post(s.base + "/$export", json=b, headers=hdr)
        assert r.status_code == status and r.json()["resourceType"] == "OperationOutcome", r.text
    r = requests.post(s.base + "/$export", data="_type=Patient", headers={
        **s.headers, **ASYNC, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert "POST" in requests.options(s.base + "/$export").headers["Allow"]


def test_group_export_and_group_resource(bulk, tmp_path):
    s, h = bulk
    members = h.patients[1:3]
    gid = group_create(h, "cohort-a", members, tmp_path)
    g = requests.get(s.base + f"/Group/{gid}", headers=s.headers).json()
    assert g["resourceType"] == "Group" and g["quantity"] == 2
    found = requests.get(s.base + "/Group", params={"name": "cohort-a"}, headers=s.headers).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [gid]
    by_member = requests.get(s.base + "/Group", params={"member": f"Patient/{members[0]}"},
                             headers=s.headers).json()
    assert gid in [e["resource"]["id"] for e in by_member["entry"]]
    assert requests.get(s.base + "/Group", params={"member": f"Patient/{h.patients[0]}"},
                        headers=s.headers).json()["total"] == 0
    m = export(s, f"/Group/{gid}/$export")
    got = {(r["resourceType"], r["id"]) for o in m["output"] for r in lines(s, o["url"])}
    assert got == everything(s, members)
    bad = tmp_path / "bad.txt"
    bad.write_text("0000009999\n")
    r = subprocess.run([str(BIN / "fhir-gateway"), "group", "create", "--config", str(h.config),
                        "--facility", h.facility, "--name", "x", "--patients", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "0000009999" in r.stderr


def test_cancel(bulk):
    s, _ = bulk
    r = kick(s)
    url = r.headers["Content-Location"]
    assert requests.delete(url, headers=s.headers).status_code == 202
    assert requests.get(url, headers=s.headers).status_code == 404
    assert requests.delete(url, headers=s.headers).status_code == 404


def test_other_clients_cannot_see_a_job(bulk):
    s, h = bulk
    r = kick(s, _type="Patient")
    other = {"Authorization": f"Bearer {make_token(h.data_dir, name='other')}"}
    assert requests.get(r.headers["Content-Location"], headers=other).status_code == 404
    wait(s, r.headers["Content-Location"])


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """Worker processes, one job at a time per client, files kept ~2 s.  More patients than
    one chunk holds: a single chunk is mapped inline, with no worker processes to start, and
    could finish (and expire) before the test sees it running."""
    h = build_hospital(tmp_path_factory.mktemp("bulk-slow"), CHUNK + 1)
    with h.config.open("a") as f:
        f.write("\n[export]\nprocesses = 2\njobs_per_client = 1\nkeep_hours = 0.0006\n")
    tok = make_token(h.data_dir)
    return h, tok


def test_restart_resumes_and_limits_and_expiry(slow):
    h, tok = slow
    s = start_server(["--config", str(h.config)], token=tok, workers=1)
    try:
        r = kick(s)
        assert r.status_code == 202
        url = r.headers["Content-Location"]
        again = kick(s)
        assert again.status_code == 429 and again.headers["Retry-After"]
        jid = url.rsplit("/", 1)[1]
        job_file = h.data_dir / "bulk-jobs" / f"{jid}.json"
        deadline = time.monotonic() + 10
        while json.loads(job_file.read_text())["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        s.crash()  # the job is interrupted: killed with the server, the moment it runs
    state = json.loads(job_file.read_text())
    assert state["status"] == "running" and state["attempts"] == 1
    s2 = start_server(["--config", str(h.config)], token=tok, workers=1)
    try:
        url2 = url.replace(url.split("/fhir/")[0], s2.url)
        done = wait(s2, url2)
        assert done.status_code == 200
        state = json.loads((h.data_dir / "bulk-jobs" / f"{jid}.json").read_text())
        assert state["attempts"] == 2
        got = {(r["resourceType"], r["id"]) for o in done.json()["output"]
               for r in lines(s2, o["url"].replace(url.split("/fhir/")[0], s2.url))}
        assert got == everything(s2, h.patients)
        deadline = time.monotonic() + 20
        while requests.get(url2, headers=s2.headers).status_code != 404:
            assert time.monotonic() < deadline, "the export was not deleted"
            time.sleep(0.5)
        assert not (h.data_dir / "bulk-export" / jid).exists()
    finally:
        s2.stop()
