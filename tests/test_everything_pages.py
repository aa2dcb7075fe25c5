"""Patient/$everything pages cost what they show (issue 17 item 3).

A chart with more days than ``services.everything.EXACT_DAYS`` is paged by position over HTTP:
no total, ``next`` links through every resource exactly once and in the same order as the whole
chart; a page maps only the days it shows.  A small chart keeps its exact total and offsets."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from conftest import build_hospital, make_token
from fhir_gateway.config import from_args
from fhir_gateway.services import Gateway
from fhir_gateway.services.everything import EXACT_DAYS
from test_services_perf import _age, _lab

FAC = "1312345678"


@pytest.fixture(scope="module")
def big_chart(tmp_path_factory):
    """The test hospital, its first patient given EXACT_DAYS + 40 days of labs."""
    h = build_hospital(tmp_path_factory.mktemp("bigchart"), 2)
    pid = h.patients[0]
    day0 = date(2020, 1, 1)
    for n in range(EXACT_DAYS + 40):
        _lab(h.root, pid, (day0 + timedelta(days=n)).strftime("%Y%m%d"), n)
    _age(h.root)
    return h, pid


def _walk(srv, url: str) -> tuple[list[dict], list[dict]]:
    """(resources, bundles) following next links."""
    out, bundles = [], []
    while url:
        b = requests.get(url, headers=srv.headers, timeout=60).json()
        assert b["resourceType"] == "Bundle", b
        bundles.append(b)
        out += [e["resource"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]
        url = next((lk["url"] for lk in b["link"] if lk["relation"] == "next"), None)
    return out, bundles


def test_large_chart_pages_by_position(big_chart, server_factory):
    h, pid = big_chart
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))
    whole = Gateway(from_args([str(h.root)], FAC, receipts=[str(h.receipts)],
                              data_dir=str(h.data_dir / "x"))).facility(FAC).everything(pid)
    got, bundles = _walk(srv, f"{srv.base}/Patient/{pid}/$everything?_count=40")
    assert len(bundles) > 5
    assert all("total" not in b for b in bundles)
    assert all({lk["relation"] for lk in b["link"]} <= {"self", "next", "first"} for b in bundles)
    assert all(len([e for e in b.get("entry", []) if e["search"]["mode"] == "match"]) == 40
               for b in bundles[:-1])
    ids = [f"{r['resourceType']}/{r['id']}" for r in got]
    assert ids == [f"{r['resourceType']}/{r['id']}" for r in whole.resources]
    assert got[0]["resourceType"] == "Patient"
    # newest day first after the patient-level folder
    labs = [r for r in got if r["resourceType"] == "Specimen"]
    days = [r["id"].split(".")[1] for r in labs]
    assert days == sorted(days, reverse=True) and len(set(days)) >= EXACT_DAYS + 40
    # a filter still pages: only Specimens
    spec, _ = _walk(srv, f"{srv.base}/Patient/{pid}/$everything?_count=25&_type=Specimen")
    assert [r["id"] for r in spec] == [r["id"] for r in labs]
    # a cursor from another patient or a forged one is refused
    nxt = next(lk["url"] for lk in bundles[0]["link"] if lk["relation"] == "next")
    other = h.patients[1]
    bad = nxt.replace(f"Patient/{pid}/", f"Patient/{other}/")
    assert requests.get(bad, headers=srv.headers, timeout=30).status_code == 400


def test_small_chart_keeps_total_and_offsets(big_chart, server_factory):
    h, _ = big_chart
    small = h.patients[1]
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))
    got, bundles = _walk(srv, f"{srv.base}/Patient/{small}/$everything?_count=3")
    assert bundles[0]["total"] == len(got) > 3
    assert "last" in {lk["relation"] for lk in bundles[0]["link"]}


def test_a_page_maps_only_its_days(big_chart, tmp_path: Path):
    h, pid = big_chart
    svc = Gateway(from_args([str(h.root)], FAC, data_dir=str(tmp_path))).facility(FAC)
    page = svc.everything_page(pid, count=10)
    assert page.total is None and page.next is not None and len(page.resources) == 10
    mapped = {Path(k[0]).parts[-3] for k in svc.cache._data}  # .../<day>/<type>/<file>
    # the patient-level folder, the days shown, and the one looked at for a next page
    assert len(mapped) <= 4, mapped
    again = svc.everything_page(pid, count=10, pos=page.next)
    assert not {r["id"] for r in again.resources} & {r["id"] for r in page.resources}


def _search_whole(h, tmp_path: Path, rtype: str, params: list[tuple[str, str]]) -> list[str]:
    """The ids the exact path finds (the whole compartment of the type), in-process."""
    from conformance import registry
    svc = Gateway(from_args([str(h.root)], FAC, receipts=[str(h.receipts)],
                            data_dir=str(tmp_path))).facility(FAC)
    return [r["id"] for r in svc.search(rtype, registry().parse(rtype, params)).matches]


@pytest.mark.parametrize("rtype,params,count", [
    ("Observation", [], 33),
    ("Specimen", [], 20),
    ("Observation", [("date", "ge2020-03-01"), ("date", "lt2020-05-01")], 17),
    ("DiagnosticReport", [("_elements", "id")], 50),
])
def test_patient_search_of_a_large_chart_pages_by_day(big_chart, server_factory, tmp_path,
                                                      rtype, params, count):
    """``Observation?patient=`` of a chart with more than EXACT_DAYS days: pages by position,
    every matching resource exactly once across the pages, no total (not counted), and the
    same resources as the exact path (the whole compartment)."""
    h, pid = big_chart
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))
    query = [("patient", pid)] + params + [("_count", str(count))]
    from urllib.parse import urlencode
    got, bundles = _walk(srv, f"{srv.base}/{rtype}?{urlencode(query)}")
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)), "a resource repeated across pages"
    expected = _search_whole(h, tmp_path, rtype, [("patient", pid)] + params)
    assert sorted(ids) == sorted(expected) and len(ids) > count, (len(ids), len(expected))
    assert all("total" not in b for b in bundles)
    assert all({lk["relation"] for lk in b["link"]} <= {"self", "next", "first"}
               for b in bundles)
    assert all(len([e for e in b.get("entry", []) if e["search"]["mode"] == "match"]) == count
               for b in bundles[:-1])
    assert all(r["resourceType"] == rtype for r in got)
    # the first link starts again; a cursor of this search is refused on another type
    first = next(lk["url"] for lk in bundles[-1]["link"] if lk["relation"] == "first")
    again = requests.get(first, headers=srv.headers, timeout=60).json()
    assert [e["resource"]["id"] for e in again.get("entry", [])
            if e["search"]["mode"] == "match"] == ids[:count]
    nxt = next(lk["url"] for lk in bundles[0]["link"] if lk["relation"] == "next")
    other = "Condition" if rtype != "Condition" else "Observation"
    assert requests.get(nxt.replace(f"/{rtype}?", f"/{other}?"), headers=srv.headers,
                        timeout=30).status_code == 400


def test_patient_search_exact_where_asked_or_small(big_chart, server_factory):
    """A small chart, ``_sort`` and ``_summary=count`` keep the exact path: a total, offsets
    and last links, the same resources."""
    h, pid = big_chart
    small = h.patients[1]
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))
    got, bundles = _walk(srv, f"{srv.base}/Observation?patient={small}&_count=3")
    assert bundles[0]["total"] == len(got) > 3
    assert "last" in {lk["relation"] for lk in bundles[0]["link"]}
    by_day, _ = _walk(srv, f"{srv.base}/Observation?patient={pid}&_count=200")
    count = requests.get(f"{srv.base}/Observation?patient={pid}&_summary=count",
                         headers=srv.headers, timeout=60).json()
    assert count["total"] == len(by_day)
    srt, bundles = _walk(srv, f"{srv.base}/Observation?patient={pid}&_sort=-date&_count=500")
    assert bundles[0]["total"] == len(by_day) and sorted(r["id"] for r in srt) == \
        sorted(r["id"] for r in by_day)


def test_a_search_page_maps_only_its_days(big_chart, tmp_path: Path):
    h, pid = big_chart
    from conformance import registry
    svc = Gateway(from_args([str(h.root)], FAC, data_dir=str(tmp_path))).facility(FAC)
    query = registry().parse("Observation", [("patient", pid), ("_count", "10")])
    page = svc.patient_search_page("Observation", query, None)
    assert page is not None and page.next is not None and len(page.resources) == 10
    mapped = {Path(k[0]).parts[-3] for k in svc.cache._data}
    # the newest days until 10 Observations (+ the next non-empty day), of 190+ days
    assert len(mapped) <= 8 and len(svc.care_dates(pid)) > EXACT_DAYS + 30, mapped
    again = svc.patient_search_page("Observation", query, page.next)
    assert not {r["id"] for r in again.resources} & {r["id"] for r in page.resources}


@pytest.mark.parametrize("rtype,params", [
    ("Observation", [("_sort", "-date")]),
    ("Observation", [("_sort", "date,-_lastUpdated"), ("date", "ge2020-03-01")]),
    ("Specimen", [("_sort", "-_lastUpdated")]),
])
def test_sorted_search_of_a_large_chart_keeps_its_order_not_its_resources(big_chart, tmp_path,
                                                                         rtype, params):
    """``_sort`` of one patient's large chart: every page equals the whole compartment sorted
    by the API (same order, exact total), and once the chart's sort keys are known a page maps
    only the days its resources are on."""
    h, pid = big_chart
    from conformance import registry
    from fhir_gateway.api.providers import ResourceProvider
    svc = Gateway(from_args([str(h.root)], FAC, data_dir=str(tmp_path))).facility(FAC)
    prov = ResourceProvider(registry().get(rtype))
    query = registry().parse(rtype, [("patient", pid)] + params + [("_count", "23")])
    whole = [r["id"] for r in prov.sort(svc.search(rtype, query).matches, query)]
    assert len(whole) > 60
    got: list[str] = []
    for offset in range(0, len(whole) + 23, 23):
        lazy = prov.lazy_page(svc, query, offset)
        assert lazy is not None, "a large chart's sorted search must not map the compartment"
        page, total, _ = lazy
        assert total == len(whole)
        got += [r["id"] for r in page]
    assert got == whole
    svc.cache._data.clear()
    page, _, _ = prov.lazy_page(svc, query, 46)
    mapped = {Path(k[0]).parts[-3] for k in svc.cache._data}
    assert len(mapped) <= 23 and len(svc.care_dates(pid)) > EXACT_DAYS + 30, mapped
    # a small chart keeps the compartment path
    small = registry().parse(rtype, [("patient", h.patients[1])] + params)
    assert prov.lazy_page(svc, small, 0) is None


def test_sorted_search_of_a_large_chart_over_http(big_chart, server_factory):
    h, pid = big_chart
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))
    got, bundles = _walk(srv, f"{srv.base}/Observation?patient={pid}&_sort=-date&_count=40")
    assert bundles[0]["total"] == len(got) > 80 and len(bundles) > 2
    assert "last" in {lk["relation"] for lk in bundles[0]["link"]}
    dates = [r.get("effectiveDateTime", "") for r in got]
    assert dates == sorted(dates, reverse=True)


def test_sort_orders_are_bounded_and_follow_the_chart():
    """Kept sort orders: by count and by matches held; a changed signature is not used."""
    from fhir_gateway.services.everything import SortOrders
    orders = SortOrders(kept=3, places=100)
    value = lambda n: ([("20200101", i, f"o{i}") for i in range(n)], [])  # noqa: E731
    orders.put(("a",), "sig", value(40))
    assert orders.get(("a",), "sig") == value(40) and orders.get(("a",), "other") is None
    orders.put(("b",), "sig", value(40))
    orders.put(("c",), "sig", value(40))  # 120 matches > 100: the oldest goes
    assert orders.get(("a",), "sig") is None and orders.get(("c",), "sig") is not None
    orders.put(("d",), "sig", value(101))  # larger than the whole bound: not kept
    assert orders.get(("d",), "sig") is None and orders.get(("b",), "sig") is not None
    for k in "efg":
        orders.put((k,), "sig", value(1))
    assert orders.get(("b",), "sig") is None  # at most 3 orders
