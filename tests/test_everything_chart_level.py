"""$everything agrees with the type searches on the resources only the whole chart can settle.

An admission Encounter is closed by its discharge (ADT-22/52 paired by visit), and an allergen
recorded in several messages is one AllergyIntolerance naming the other files
(``mappers.chart.assemble``).  A search of Encounter or AllergyIntolerance applies both; so must
every page of ``$everything``, whether the chart is mapped whole (a small chart) or paged by
position (more than ``EXACT_DAYS`` days), or a client reading both gets two answers."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta

import pytest
import requests

from conftest import FACILITY, make_token
from fhir_gateway.services.everything import EXACT_DAYS
from test_services_perf import _age, _lab

CHART_LEVEL = ("Encounter", "AllergyIntolerance")


def _walk(srv, url: str) -> list[dict]:
    out: list[dict] = []
    while url:
        r = requests.get(url, headers=srv.headers, timeout=120)
        assert r.status_code == 200, r.text
        b = r.json()
        out += [e["resource"] for e in b.get("entry", []) if e.get("search", {}).get("mode") != "outcome"
                and e["resource"]["resourceType"] != "OperationOutcome"]
        url = next((lk["url"] for lk in b["link"] if lk["relation"] == "next"), None)
    return out


def _by_id(resources: list[dict], rtype: str) -> dict[str, str]:
    return {r["id"]: json.dumps(r, sort_keys=True, ensure_ascii=False)
            for r in resources if r["resourceType"] == rtype}


def _compare(srv, pid: str, count: int) -> int:
    everything = _walk(srv, f"{srv.base}/Patient/{pid}/$everything?_count={count}")
    seen = 0
    for rtype in CHART_LEVEL:
        searched = _walk(srv, f"{srv.base}/{rtype}?patient={pid}&_count=500")
        a, b = _by_id(everything, rtype), _by_id(searched, rtype)
        assert sorted(a) == sorted(b), (pid, rtype)
        for rid in a:
            assert a[rid] == b[rid], (pid, rtype, rid)
        seen += len(a)
    return seen


def test_small_charts_agree(synth_hospital, synth_server):
    closed = also = 0
    for pid in synth_hospital.patients:
        _compare(synth_server, pid, 200)
        encs = _walk(synth_server, f"{synth_server.base}/Encounter?patient={pid}&_count=500")
        closed += sum(1 for e in encs if e.get("period", {}).get("end") and e["status"] == "finished")
        allergies = _walk(synth_server,
                          f"{synth_server.base}/AllergyIntolerance?patient={pid}&_count=500")
        also += sum(1 for a in allergies for x in a.get("extension", [])
                    if x["url"].endswith("also-recorded-in"))
    assert closed, "the synthetic hospital has closed admissions: the comparison means something"
    assert also, "and allergies recorded in several messages"


@pytest.mark.parametrize("count", [7, 50])
def test_paged_charts_agree(synth_hospital, synth_server, count):
    """A small _count pages every chart across many Bundles: each page applies the same steps."""
    for pid in synth_hospital.patients[:4]:
        _compare(synth_server, pid, count)


@pytest.fixture(scope="module")
def long_charts(synth_hospital, tmp_path_factory, server_factory):
    """The synthetic hospital with three charts made longer than EXACT_DAYS days (labs added),
    so their $everything is paged by position, one day at a time."""
    base = tmp_path_factory.mktemp("longcharts")
    root, data = base / "ssmix2", base / "data"
    shutil.copytree(synth_hospital.root, root)
    pids = synth_hospital.patients[:3]
    day0 = date(2015, 1, 1)
    for pid in pids:
        for n in range(EXACT_DAYS + 40):
            _lab(root, pid, (day0 + timedelta(days=n)).strftime("%Y%m%d"), n)
    _age(root)
    data.mkdir()
    config = base / "gateway.toml"
    config.write_text(f'data_dir = "{data}"\n\n[[facility]]\ncode = "{FACILITY}"\n'
                      f'name = "長い診療録"\nstorage = ["{root}"]\n', encoding="utf-8")
    return server_factory(["--config", str(config)], token=make_token(data)), pids


@pytest.mark.parametrize("count", [9, 200])
def test_charts_paged_by_position_agree(long_charts, count):
    srv, pids = long_charts
    seen = 0
    for pid in pids:
        first = requests.get(f"{srv.base}/Patient/{pid}/$everything?_count={count}",
                             headers=srv.headers, timeout=120).json()
        assert "total" not in first  # paged by position
        seen += _compare(srv, pid, count)
    assert seen
