"""Every declared Patient search parameter is answered by the patient index with the walk's exact
semantics (issue 17 item 2): a synthetic hospital with defects (``synth --messy``), a few hundred
generated queries over every parameter, modifier, date prefix and OR list, each run through the
index and through a folder walk; same patients, same order, same page contents.  And over HTTP:
a paged Patient search maps only the page (the page's Patients, never the whole result)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from conformance import registry
from fhir_gateway.config import Facility
from fhir_gateway.index import PatientIndex
from fhir_gateway.services import FacilityService, MappedCache, WalkIndex
from fhir_gateway.services import match

from conftest import BIN, FACILITY

DATE_PREFIXES = ("", "eq", "ne", "lt", "gt", "le", "ge", "sa", "eb")


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """(index service, walk service) over one messy synthetic hospital."""
    base = tmp_path_factory.mktemp("idxsearch")
    root = base / "ssmix2"
    subprocess.run([str(BIN / "fhir-gateway"), "synth", "--out", str(root), "--patients", "60",
                    "--seed", "5", "--years", "1", "--facility", FACILITY, "--messy", "0.15",
                    "--receipts-out", str(base / "r"), "--extended-out", str(base / "e"),
                    "--no-progress", "--workers", "2"], check=True, capture_output=True)
    assert _partial_birth_dates(root) >= len(PARTIAL)
    from test_services_perf import _age
    _age(root)  # folders untouched for an hour: the index trusts their mtimes
    fac = Facility(FACILITY, "t", (root,))
    data = base / "data"
    ix = PatientIndex(data, FACILITY, [root])
    ix.build()
    indexed = FacilityService(fac, MappedCache(64 << 20), data, index_factory=lambda s: ix)
    walked = FacilityService(fac, MappedCache(64 << 20), data, index_factory=WalkIndex)
    yield indexed, walked
    ix.close()


PARTIAL = {0: b"1970", 1: b"197003", 2: b"1971"}  # birth dates known to the year or month


def _partial_birth_dates(root: Path) -> int:
    """Cut PID-7 of three patients' ADT-00 files to a year or a month (real registries have
    them; FHIR ge/le/sa/eb compare such a date as a period); the number of files cut."""
    pids = sorted(p.name for p in root.glob("*/*/*"))
    cut = 0
    for n, birth in PARTIAL.items():
        for f in (root.glob(f"*/*/{pids[n]}/-/ADT-00/*")):
            segs = f.read_bytes().split(b"\r")
            for i, seg in enumerate(segs):
                if seg.startswith(b"PID|"):
                    fields = seg.split(b"|")
                    fields[7] = birth
                    segs[i] = b"|".join(fields)
                    cut += 1
            f.write_bytes(b"\r".join(segs))
    return cut


PARTIAL_QUERIES = [[("birthdate", v)] for v in (
    "1970", "1970-03", "1970-03-15", "ge1970-03-15", "le1970-03-15", "gt1970-02", "lt1970-04",
    "sa1969-12-31", "eb1971-06-30", "ne1970", "ge1971-06", "le1971-01-01", "1971",
    "ge1970-03-15T10:00:00+09:00", "le1969-12-31T23:00:00-05:00")]


def _patients(svc: FacilityService) -> list[dict]:
    q = registry().parse("Patient", [("_count", "1000")])
    return svc.search("Patient", q).matches


def _variants(rng: random.Random, name: str, ptype: str, vals: list) -> list[tuple[str, str]]:
    """(param[:modifier], value) queries built from values the data really has."""
    out: list[tuple[str, str]] = [(f"{name}:missing", rng.choice(["true", "false"]))]
    if ptype == "string":
        strs = [s for v in vals for s in match._strings(v)]
        for s in rng.sample(strs, min(4, len(strs))):
            out += [(name, s[:1]), (name, s[:2]), (name, s), (f"{name}:exact", s),
                    (f"{name}:contains", s[1:3] or s), (f"{name}:contains", s[-1:]),
                    (name, s.lower()), (name, f"{s},{s[:1]}zz")]
            kana = "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in s)
            out.append((name, kana))  # hiragana folds to katakana
    elif ptype == "token":
        codes = [(sy, c) for v in vals for sy, c, _ in match.codings(v) if c]
        for sy, c in rng.sample(codes, min(4, len(codes))):
            out += [(name, c), (f"{name}:not", c), (name, f"{sy or ''}|{c}"), (name, f"|{c}"),
                    (name, f"{c},nonexistent"), (f"{name}:text", c[:2])]
            if sy:
                out.append((name, f"{sy}|"))
    elif ptype == "date":
        dates = [v for v in vals if isinstance(v, str)]
        for d in rng.sample(dates, min(4, len(dates))):
            for cut in (4, 7, 10, len(d)):
                out.append((name, rng.choice(DATE_PREFIXES) + d[:cut]))
            out.append((name, f"{d[:4]},{rng.choice(dates)[:7]}"))
    return out


def _queries(patients: list[dict], seed: int = 17) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    params = registry().get("Patient").params
    single: list[list[tuple[str, str]]] = []
    for name, sp in params.items():
        vals = [v for p in patients for v in match.values(p, sp)]
        single += [[q] for q in _variants(rng, name, sp.type, vals)]
    pairs = [rng.choice(single) + rng.choice(single) for _ in range(60)]
    return single + pairs + PARTIAL_QUERIES


def _ids(svc, items):
    q = registry().parse("Patient", items + [("_count", "1000")])
    return sorted(r["id"] for r in svc.search("Patient", q).matches)


def test_index_and_walk_agree_on_every_parameter(services):
    indexed, walked = services
    patients = _patients(walked)
    assert len(patients) > 50
    # the partial birth dates are there (another backend's fixture may reuse this test without)
    assert sum(len(p.get("birthDate", "")) in (4, 7) for p in patients) in (0, len(PARTIAL))
    queries = _queries(patients)
    assert len(queries) > 200
    declared = {n for q in queries for n, _ in q}
    for name in registry().get("Patient").params:
        assert name in {d.split(":")[0] for d in declared}, f"no query exercises {name}"
    nonempty = 0
    for items in queries:
        want = _ids(walked, items)
        got = _ids(indexed, items)
        assert got == want, f"Patient?{items}: index {got} != walk {want}"
        nonempty += bool(want) and len(want) < len(patients)
    assert nonempty > 100  # the queries select, they do not all return everyone or no one


@pytest.mark.parametrize("sort", ["", "date", "-date", "_lastUpdated", "jp-kana-sort",
                                  "-jp-kana-sort,date"])
def test_pages_from_the_index_equal_the_walk(services, sort):
    from fhir_gateway.api.providers import providers
    indexed, walked = services
    prov = providers()["Patient"]
    items = [("gender", "male,female"), ("_count", "7")] + ([("_sort", sort)] if sort else [])
    q = registry().parse("Patient", items)
    full = prov.sort(walked.search("Patient", q).matches, q)
    pages = []
    offset = 0
    while True:
        page, total, _ = indexed.patient_page(q, offset, prov.sort)
        assert total == len(full)
        if not page:
            break
        assert len(page) <= 7
        pages += page
        offset += 7
    assert [r["id"] for r in pages] == [r["id"] for r in full]
    assert pages == full  # the page's resources are the mapped Patients, not the stubs


def test_a_page_maps_only_its_patients(services):
    indexed, _ = services
    from fhir_gateway.api.providers import providers
    svc = FacilityService(indexed.facility, MappedCache(64 << 20), indexed.data_dir,
                          index_factory=lambda s: indexed.index)
    q = registry().parse("Patient", [("_count", "5")])
    page, total, _ = svc.patient_page(q, 10, providers()["Patient"].sort)
    assert total > 50 and len(page) == 5
    # the page's Patients come from the index (their ADT-00 unchanged: two stats each); only
    # patients without a stored Patient (several ADT-00 records) are mapped, and only the page's
    folders = {Path(k[0]).parts[-4] for k in svc.cache._data}
    assert folders <= {r["id"] for r in page} and len(folders) < len(page)


def test_a_changed_adt_00_is_read_again(services, tmp_path):
    """A stored Patient is served only while its ADT-00 file and folder are unchanged."""
    import os
    import time
    from fhir_gateway.api.providers import providers
    indexed, walked = services
    q = registry().parse("Patient", [("_count", "3")])
    page, _, _ = indexed.patient_page(q, 0, providers()["Patient"].sort)
    pid = page[0]["id"]
    storage = indexed.replicas.active()[0]
    rec = max(storage.records(pid, ["ADT-00"], ["-"])[0].values(),
              key=lambda r: r.latest.name.sort_key)
    path = storage.root / rec.current.relpath
    old = path.read_bytes()
    st = path.stat()
    try:
        # same size, new bytes (a tool rewriting in place): the family name changes
        fam = page[0]["name"][0]["family"].encode("iso2022_jp")[3:-3]
        assert fam in old
        path.write_bytes(old.replace(fam, bytes(reversed(fam)) if len(fam) > 1 else fam, 1))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        again, _, _ = indexed.patient_page(q, 0, providers()["Patient"].sort)
        fresh = walked.read("Patient", pid)
        assert again[0] == fresh
        assert again[0] != page[0] or len(fam) < 2
    finally:
        path.write_bytes(old)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        time.sleep(0)


@pytest.mark.parametrize("sort", ["", "-birthdate", "jp-kana-sort,-_lastUpdated"])
def test_exact_index_pages_equal_the_walk(services, sort):
    """Searches whose every criterion the index answers exactly (default string matches,
    plain codes: ``stubs.plan``) are counted, sorted and paged from the index alone — no stub
    decoded — and give the walk's total, order and pages."""
    from fhir_gateway.api.providers import providers
    from fhir_gateway.index.stubs import plan
    indexed, walked = services
    prov = providers()["Patient"]
    decoded = []
    ix = indexed.index
    real = ix.stub_bytes
    ix.stub_bytes = lambda c: decoded.append(c) or real(c)  # counts the decoding path's calls
    try:
        exact = 0
        for items in _queries(_patients(walked), seed=3):
            q = registry().parse("Patient", items + [("_count", "5")]
                                 + ([("_sort", sort)] if sort else []))
            if not plan(q.criteria)[1] or any(c.param.name in ("_id", "identifier")
                                              for c in q.criteria):
                continue
            exact += 1
            full = prov.sort(walked.search("Patient", q).matches, q)
            for offset in (0, 5):
                page, total, _ = indexed.patient_page(q, offset, prov.sort)
                assert total == len(full), items
                assert [r["id"] for r in page] == [r["id"] for r in full[offset:offset + 5]], items
            counted = registry().parse("Patient", items + [("_summary", "count")])
            assert indexed.patient_page(counted, 0, prov.sort)[1] == len(full)
        assert exact > 40
        assert decoded == []  # not one stub decoded on the exact path
    finally:
        del ix.stub_bytes


@pytest.mark.parametrize("sort", ["-birthdate", "-jp-kana-sort,_lastUpdated"])
def test_sorted_pages_the_matcher_decides_equal_the_walk(services, sort):
    """A ``_sort`` search the terms cannot answer exactly (date ranges, ``:contains``,
    ``:missing``...) decodes each candidate's stub to match it, one at a time, and orders the
    matches on the index's ``sort`` column — the walk's total, order and pages; the whole
    stubs are never held (``patient_matches``, which returns them, is not called)."""
    from fhir_gateway.api.providers import providers
    from fhir_gateway.index.stubs import plan
    indexed, walked = services
    prov = providers()["Patient"]
    whole = []
    real = indexed.patient_matches
    indexed.patient_matches = lambda q: whole.append(q) or real(q)
    try:
        checked = 0
        for items in _queries(_patients(walked), seed=11)[::2]:
            q = registry().parse("Patient", items + [("_count", "4"), ("_sort", sort)])
            if plan(q.criteria)[1] or any(c.param.name in ("_id", "identifier")
                                          for c in q.criteria):
                continue
            full = prov.sort(walked.search("Patient", q).matches, q)
            checked += bool(full)
            for offset in (0, 4):
                page, total, _ = indexed.patient_page(q, offset, prov.sort)
                assert total == len(full), items
                assert [r["id"] for r in page] == [r["id"] for r in full[offset:offset + 4]], items
        assert checked > 25
        assert whole == []
    finally:
        del indexed.patient_matches
