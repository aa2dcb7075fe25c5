"""``GET Claim`` without a patient pages from the receipt index (``FacilityService.claim_page``):
a page maps only the receipts it shows, and the pages together are exactly the full search's
result (the full path: every receipt mapped, filtered, sorted by the provider) — on generator
data with receipts, in-process through the real app factory and Flask's test client."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from conftest import FACILITY, build_synth_hospital
from conformance import registry
from fhir_gateway.api.providers import providers
from fhir_gateway.app import create_app
from fhir_gateway.config import load

BASE = f"/fhir/{FACILITY}"


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    return build_synth_hospital(tmp_path_factory.mktemp("claimpaging"))


def fresh(hospital):
    """A new app (empty caches, no receipt index), its test client and facility service."""
    app = create_app(load(hospital.config), auth=False)
    return app.test_client(), app.extensions["gateway"].facility(FACILITY)


def pages(client, query: str) -> tuple[list[dict], list[dict]]:
    """Every page of a search, following ``next``: (bundles, match entries in order)."""
    bundles, url = [], f"{BASE}/Claim?{query}"
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        b = r.get_json()
        bundles.append(b)
        nxt = [link["url"] for link in b["link"] if link["relation"] == "next"]
        url = None
        if nxt:
            u = urlsplit(nxt[0])
            url = f"{u.path}?{u.query}"
        assert len(bundles) < 200
    entries = [e["resource"] for b in bundles for e in b.get("entry", [])
               if e["search"]["mode"] == "match"]
    return bundles, entries


def full_path(svc, query: str) -> list[dict]:
    """What the search returned before the lazy path: map all, filter, sort."""
    items = [tuple(kv.split("=", 1)) for kv in query.split("&") if kv]
    q = registry().parse("Claim", [(k, v) for k, v in items if k not in ("_count", "_total")])
    result = svc.search("Claim", q)
    assert not result.problems
    return providers()["Claim"].sort(result.matches, q)


def test_first_page_maps_only_its_receipts(hospital):
    client, svc = fresh(hospital)
    r = client.get(f"{BASE}/Claim?_count=7")
    assert r.status_code == 200
    b = r.get_json()
    assert svc.claims.mapped == 7
    assert b["total"] == svc.claims.count() > 7
    assert [e["resource"]["resourceType"] for e in b["entry"]] == ["Claim"] * 7
    assert any(link["relation"] == "next" for link in b["link"])
    # the second page (a signed cursor) maps the next seven only
    nxt = next(link["url"] for link in b["link"] if link["relation"] == "next")
    u = urlsplit(nxt)
    assert client.get(f"{u.path}?{u.query}").status_code == 200
    assert svc.claims.mapped == 14


@pytest.mark.parametrize("query", [
    "_count=40",
    "_count=25&created=ge2025-01",
    "_count=10&created=lt2024-06&use=claim",
    "_count=50&status=active&_lastUpdated=gt2000-01-01",
    "_count=1000&use=preauthorization",
    "_count=33&_total=none",
])
def test_lazy_pages_equal_the_full_search(hospital, query):
    client, svc = fresh(hospital)
    bundles, lazy = pages(client, query)
    assert svc.claims.mapped == len(lazy)  # each page mapped its own receipts only
    full = full_path(svc, query)
    assert [c["id"] for c in lazy] == [c["id"] for c in full]
    assert lazy == full  # the same Claims, element for element
    if "_total=none" in query:
        assert all("total" not in b for b in bundles)
    else:
        assert {b["total"] for b in bundles} == {len(full)}
    if "preauthorization" in query:
        assert full == []
    else:
        assert len(full) > 0 and len(bundles) > 1


def test_identifier_and_id_from_the_index(hospital):
    _, svc = fresh(hospital)
    some = full_path(svc, "")[5]
    ident = some["identifier"][0]
    for query in (f"_id={some['id']}", f"identifier={ident['system']}|{ident['value']}"):
        client, lazy_svc = fresh(hospital)
        _, lazy = pages(client, query)
        assert [c["id"] for c in lazy] == [c["id"] for c in full_path(svc, query)]
        assert some["id"] in [c["id"] for c in lazy]
        assert lazy_svc.claims.mapped == len(lazy)


def test_summary_count_maps_nothing(hospital):
    client, svc = fresh(hospital)
    b = client.get(f"{BASE}/Claim?_summary=count&created=ge2025-01").get_json()
    assert b["total"] == len(full_path(svc, "created=ge2025-01"))
    assert "entry" not in b


@pytest.mark.parametrize("query", ["_count=40&_sort=-date", "_count=40&_include=Claim:patient",
                                   "_count=40&patient:missing=false"])
def test_other_queries_take_the_full_path(hospital, query):
    client, svc = fresh(hospital)
    _, lazy = pages(client, query)
    assert svc.claims.mapped == svc.claims.count()  # every receipt mapped: the full path
    assert [c["id"] for c in lazy] == [c["id"] for c in full_path(svc, query)]
