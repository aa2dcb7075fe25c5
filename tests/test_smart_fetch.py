"""Independent clients (issue 12 item 6): smart-fetch (PyPI), started only with the FHIR base
URL, a client id and a key file, authenticates with SMART Backend Services (a JWKS this test
generates) and runs ``bulk`` (system and Group) and ``crawl``; what it downloaded must be exactly
what ``$everything`` serves for those patients (restricted to the types and the default
Observation categories smart-fetch asks for)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import BIN, build_hospital, make_token, start_server
from smart_keys import keypair, register, write_jwks

SMART_FETCH = shutil.which("smart-fetch", path=str(BIN))
pytestmark = pytest.mark.skipif(SMART_FETCH is None, reason="smart-fetch is not installed "
                                "(pip install -e '.[test]')")


@pytest.fixture(scope="module")
def sf(tmp_path_factory):
    base = tmp_path_factory.mktemp("smart-fetch")
    h = build_hospital(base, n_patients=4)
    with h.config.open("a") as f:
        f.write("\n[export]\nprocesses = 1\n")
    s = start_server(["--config", str(h.config)], token=make_token(h.data_dir), workers=2)
    key = keypair("RS384")
    write_jwks(base / "public.jwks", [key], private=False)
    private = write_jwks(base / "private.jwks", [key], private=True)
    cid = register(h.data_dir, "smart-fetch", h.facility, base / "public.jwks", "system/*.rs")
    yield s, h, cid, private, base
    s.stop()


def _types_and_categories():
    from smart_fetch import resources as sfr
    return set(sfr.PATIENT_TYPES)


CATEGORIES = {"social-history", "vital-signs", "imaging", "laboratory", "survey", "exam",
              "procedure", "therapy", "activity"}


def _wanted(s, pids) -> set[tuple[str, str]]:
    """$everything of ``pids``, restricted like smart-fetch's default request."""
    types = _types_and_categories()
    out = set()
    for pid in pids:
        url = f"{s.base}/Patient/{pid}/$everything?_count=1000"
        while url:
            b = requests.get(url, headers=s.headers).json()
            for e in b.get("entry", []):
                r = e["resource"]
                if e["search"]["mode"] != "match" or r["resourceType"] not in types:
                    continue
                if r["resourceType"] == "Observation" and not {
                        c.get("code") for cat in r.get("category", [])
                        for c in cat.get("coding", [])} & CATEGORIES:
                    continue
                out.add((r["resourceType"], r["id"]))
            url = next((lk["url"] for lk in b["link"] if lk["relation"] == "next"), None)
    return out


def _downloaded(folder: Path) -> list[dict]:
    out = []
    for f in sorted(folder.rglob("*.ndjson*")):
        if f.name.startswith(("log", "OperationOutcome")) or "error" in f.parts:
            continue
        raw = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
        out += [json.loads(x) for x in raw.splitlines() if x.strip()]
    return out


def _run(s, cid, key, *args, out: Path, rc: int = 0):
    cmd = [SMART_FETCH, *args, "--fhir-url", s.base + "/", "--smart-client-id", cid,
           "--smart-key", str(key), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == rc, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_smart_fetch_bulk_system(sf):
    s, h, cid, key, base = sf
    # the hospital's one unreadable file is reported by smart-fetch (exit 1), not lost
    r = _run(s, cid, key, "bulk", out=base / "bulk-system", rc=1)
    said = r.stdout + r.stderr
    assert "Errors occurred during export" in said and h.facts["broken_file"] in said
    got = _downloaded(base / "bulk-system")
    ids = [(r["resourceType"], r["id"]) for r in got]
    assert len(ids) == len(set(ids)) and ids
    assert set(ids) == _wanted(s, h.patients)


def test_smart_fetch_bulk_group_and_crawl(sf):
    s, h, cid, key, base = sf
    members = h.patients[1:3]
    (base / "members.txt").write_text("\n".join(members) + "\n")
    gid = subprocess.run([str(BIN / "fhir-gateway"), "group", "create", "--config", str(h.config),
                          "--facility", h.facility, "--name", "sf-cohort", "--patients",
                          str(base / "members.txt")], capture_output=True, text=True,
                         check=True).stdout.strip()
    _run(s, cid, key, "bulk", "--group", gid, out=base / "bulk-group")
    got = {(r["resourceType"], r["id"]) for r in _downloaded(base / "bulk-group")}
    assert got == _wanted(s, members)
    _run(s, cid, key, "crawl", "--group", gid, out=base / "crawl-group")
    crawled = {(r["resourceType"], r["id"]) for r in _downloaded(base / "crawl-group")}
    assert crawled == _wanted(s, members)
