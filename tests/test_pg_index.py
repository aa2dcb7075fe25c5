"""The PostgreSQL Patient index: the embedded index's tests run again against it (same fixtures
names, PostgreSQL behind them), the two backends give the same hits in the same order for many
queries, refresh is incremental with upserts, writers serialise on an advisory lock across
processes, the CLI migrates an embedded index and ``db upgrade`` versions the schema."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fhir_gateway.cli import main as cli_main
from fhir_gateway.index import PatientIndex
from fhir_gateway.scale.pgindex import PgPatientIndex

import test_index as T
from test_index import FAC, add_visit, make_tree, write_adt00

# The embedded index's behaviour tests, re-run here with PostgreSQL fixtures (below).
from test_index import (  # noqa: F401
    test_birthdate_forms, test_gender_identifier_text_and_combinations, test_kana_search,
    test_kanji_substring_and_prefix, test_name_matches_kanji_or_kana_family_and_given,
    test_odd_criteria_never_raise, test_patients_without_usable_adt00_stay_findable,
    test_racy_mtimes_are_reread, test_refresh_picks_up_added_changed_removed,
    test_sorted_by_kana_and_limited, test_unreachable_storage_never_empties_the_index,
)


@pytest.fixture(scope="module")
def pg_module_dsn(pg_server):
    from fhir_gateway.scale.migrations import upgrade
    dsn = pg_server.create_database("pg_index_module")
    upgrade(dsn)
    return dsn


@pytest.fixture(scope="module")
def ro_index(tmp_path_factory, pg_module_dsn):
    base = tmp_path_factory.mktemp("pgro")
    ix = PgPatientIndex(pg_module_dsn, base / "data", FAC, [make_tree(base / "ss")])
    ix.build()
    yield ix
    ix.close()


@pytest.fixture()
def index(tree: Path, tmp_path: Path, pg_dsn):
    ix = PgPatientIndex(pg_dsn, tmp_path / "data", FAC, [tree])
    ix.build()
    yield ix
    ix.close()


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "ss")


QUERIES = [
    {"kana": "ヤマ"}, {"kana": "ヤ"}, {"kana": "タ"}, {"kana": "イチロウ"}, {"kana": "カナカム"},
    {"name": "山"}, {"name": "田"}, {"name": "郎"}, {"name": "ﾀﾛｳ"}, {"name": "ヤマダ,佐藤"},
    {"family": "山"}, {"family": "ヤマ"}, {"given": "イチ"}, {"given": "一郎"}, {"given": "ハ"},
    {"birthdate": "1965"}, {"birthdate": "ge1980-01-01"}, {"birthdate": "lt1960"},
    {"birthdate": "1955"}, {"birthdate": "1999-13"}, {"gender": "female"}, {"gender": "male,other"},
    {"identifier": "0000000003"}, {"identifier": "urn:x|0000000003"}, {"text": "0000000006"},
    {"text": "タカ"}, {"name": "ヤ", "gender": "female"}, {"kana": "ー"}, {},
    {"kana": "ヤマ,"}, {"kana": " ﾔ "}, {"kana": "やまだ"}, {"kana": "ダイチ,サトウ"},
]


def test_same_hits_as_the_embedded_index(tmp_path: Path, pg_dsn, monkeypatch):
    tree = make_tree(tmp_path / "ss")
    w = PatientIndex(tmp_path / "data", FAC, [tree])
    p = PgPatientIndex(pg_dsn, tmp_path / "data2", FAC, [tree])
    w.build(), p.build()
    assert p.count() == w.count() == 9
    for q, limit in itertools.product(QUERIES, (1, 3, 1000)):
        assert p.search(**q, limit=limit) == w.search(**q, limit=limit), q
    # each plan alone (the ordered walk of the sortkey index, the GIN candidates) and the
    # bounded ones falling back to the other: the same lists
    p.trace = []
    for plan in ("walk", "gin", "walk-bounded", "gin-bounded", "split"):
        p.plan = plan
        for q, limit in itertools.product(QUERIES, (1, 3, 1000)):
            assert p.search(**q, limit=limit) == w.search(**q, limit=limit), (plan, q)
    # bounds so small that every bounded plan gives way to the other one
    import fhir_gateway.scale.pgindex as pgi
    p.plan = None
    for gin_max, walk_rows, rare in ((0, 1, False), (10**6, 1, False), (0, 1, True)):
        monkeypatch.setattr(pgi, "GIN_MAX", gin_max)
        monkeypatch.setattr(pgi, "WALK_ROWS", walk_rows)
        if rare:  # expected rare, found common: the GIN plan overflows its bound (0)
            monkeypatch.setattr(p, "_candidates", lambda grams: -1.0)
        for q, limit in itertools.product(QUERIES, (1, 3)):
            assert p.search(**q, limit=limit) == w.search(**q, limit=limit), (gin_max, rare, q)
    ran = " ".join(sql for sql, _ in p.trace)
    assert "split_part(sortkey" in ran and "MATERIALIZED" in ran and "starts_with(" in ran
    assert "UNION ALL" in ran
    assert p.get("0000000008") == w.get("0000000008")
    w.close(), p.close()


def test_walk_reads_only_the_sortkey_index(index: PgPatientIndex):
    """The ordered walk's filter holds only what the (facility, sortkey) INCLUDE (birth,
    gender) index holds: an index-only scan after the build's VACUUM (ANALYZE)."""
    import json
    index.plan, index.trace = "walk-bounded", []
    assert index.search(kana="ヤマ", birthdate="ge1950", gender="male,female", limit=1)
    sql, params = index.trace[0]
    assert "split_part(sortkey" in sql and len(index.trace) == 2  # the walk found it, summary
    conn = index.db.get()
    # 9 rows: the planner would rightly read the table or bitmap-scan
    conn.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
    try:
        plan = json.dumps(conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone())
    finally:
        conn.execute("RESET enable_seqscan; RESET enable_bitmapscan")
    assert '"Index Only Scan"' in plan and "patient_index_walk" in plan, plan
    pages = index.db.execute("SELECT relpages, relallvisible FROM pg_class "
                             "WHERE relname = 'patient_index'").fetchone()
    assert pages["relpages"] == pages["relallvisible"] > 0  # no heap fetch after the build


def test_stored_patients_are_served_from_the_table(index: PgPatientIndex, tree: Path):
    """Pages of Patient search come from the stored Patient (perf-17's shortcut), with the
    ADT-00 source to validate it by (same contract as the embedded index)."""
    w = PatientIndex(tree.parent / "wdata", FAC, [tree])
    w.build()
    pids = [s.patient_id for s in w.search(limit=100)]
    want, got = w.patients(pids), index.patients(pids)
    assert got and got == want
    assert list(next(iter(got.values()))[0]) == list(next(iter(want.values()))[0])  # key order
    w.close()


def test_refresh_upserts_only_changed_patients(index: PgPatientIndex, tree: Path):
    before = index.db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
    write_adt00(tree, "0000000002", ("佐藤", "花", "サトウ", "ハナ", "19800101", "F"),
                ts="20240101090000000")
    add_visit(tree, "0000000010", "20240505")
    st = index.refresh()
    assert (st.full, st.changed, st.removed) == (False, 2, 0)
    assert index.get("0000000002").kana == "サトウ ハナ"
    rows = index.db.execute("SELECT pid FROM patient_index WHERE facility = %s "
                            "AND indexed_at > %s ORDER BY pid", (FAC, before)).fetchall()
    assert [r["pid"] for r in rows] == ["0000000002", "0000000010"]
    T.age_tree(tree)
    index.refresh()  # racy (too recent) mtimes are read once more, then never again
    assert index.refresh().changed == 0


def test_writers_serialise_on_the_advisory_lock(index: PgPatientIndex, pg_dsn, tmp_path: Path):
    lock = index.db.fresh(autocommit=True)
    from fhir_gateway.scale.pg import lock_key
    lock.execute("SELECT pg_advisory_lock(%s)", (lock_key(f"patient-index:{FAC}"),))
    assert index.try_refresh().skipped == "another process is writing the index"
    done = threading.Event()
    t = threading.Thread(target=lambda: (index.refresh(), done.set()))
    t.start()
    assert not done.wait(0.5)  # a waiting writer (fhir-gateway index) blocks ...
    lock.close()
    assert done.wait(10)  # ... until the other session ends
    t.join()


def _config(tmp_path: Path, tree: Path, dsn: str, backend: str = "postgresql") -> Path:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[[facility]]\ncode = "{FAC}"\n'
                   f'storage = ["{tree}"]\n[index]\nbackend = "{backend}"\ndsn = "{dsn}"\n',
                   encoding="utf-8")
    return cfg


def test_cli_migrates_the_embedded_index_and_runs_concurrently(tmp_path: Path, pg_dsn, capsys):
    tree = make_tree(tmp_path / "ss")
    cfg = _config(tmp_path, tree, pg_dsn, backend="whoosh")
    assert cli_main(["index", "--config", str(cfg), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli_main(["index", "--config", str(cfg), "--backend", "postgresql",
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "copied 9 patients from the embedded index" in out
    assert "refreshed: 9 patients indexed, 0 changed" in out  # the walk state came along
    cfg = _config(tmp_path, tree, pg_dsn)
    procs = [subprocess.run([sys.executable, "-m", "fhir_gateway", "index", "--config", str(cfg),
                             "--rebuild", "--no-progress"], capture_output=True, text=True)
             for _ in range(1)]
    # two writers on two machines: start both, both finish, the index is whole
    ps = [subprocess.Popen([sys.executable, "-m", "fhir_gateway", "index", "--config", str(cfg),
                            "--rebuild", "--no-progress"], stdout=subprocess.PIPE, text=True)
          for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in ps]
    assert all(p.returncode == 0 for p in ps) and procs[0].returncode == 0, outs
    assert all("rebuilt: 9 patients indexed" in o for o in outs), outs


def test_db_upgrade_and_a_too_old_schema(pg_server, tmp_path: Path, capsys):
    dsn = pg_server.create_database("fresh_schema")
    tree = make_tree(tmp_path / "ss")
    cfg = _config(tmp_path, tree, dsn)
    assert cli_main(["db", "status", "--config", str(cfg)]) == 1
    assert "needs `fhir-gateway db upgrade`" in capsys.readouterr().out
    assert cli_main(["index", "--config", str(cfg), "--no-progress"]) == 1
    assert "run `fhir-gateway db upgrade" in capsys.readouterr().err
    assert cli_main(["db", "upgrade", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "applied 1 (patient index)" in out and "applied 3 (patient index: search stubs" in out
    assert cli_main(["db", "upgrade", "--config", str(cfg)]) == 0  # idempotent
    assert "applied" not in capsys.readouterr().out
    assert cli_main(["index", "--config", str(cfg), "--no-progress"]) == 0


# -- every Patient search parameter (perf-17's index/walk agreement), PostgreSQL behind it -------

from test_patient_index_search import (  # noqa: E402,F401
    test_a_changed_adt_00_is_read_again, test_a_page_maps_only_its_patients,
    test_index_and_walk_agree_on_every_parameter, test_pages_from_the_index_equal_the_walk,
)


@pytest.fixture(scope="module")
def services(tmp_path_factory, pg_module_dsn):
    """(PostgreSQL-index service, walk service) over the same messy synthetic hospital."""
    from conftest import BIN, FACILITY
    from fhir_gateway.config import Facility
    from fhir_gateway.services import FacilityService, MappedCache, WalkIndex

    base = tmp_path_factory.mktemp("pgidxsearch")
    root = base / "ssmix2"
    subprocess.run([str(BIN / "fhir-gateway"), "synth", "--out", str(root), "--patients", "60",
                    "--seed", "5", "--years", "1", "--facility", FACILITY, "--messy", "0.15",
                    "--receipts-out", str(base / "r"), "--extended-out", str(base / "e"),
                    "--no-progress", "--workers", "2"], check=True, capture_output=True)
    from test_patient_index_search import _partial_birth_dates
    from test_services_perf import _age
    _partial_birth_dates(root)
    _age(root)
    fac = Facility(FACILITY, "t", (root,))
    data = base / "data"
    ix = PgPatientIndex(pg_module_dsn, data, FACILITY, [root])
    ix.build()
    indexed = FacilityService(fac, MappedCache(64 << 20), data, index_factory=lambda s: ix)
    walked = FacilityService(fac, MappedCache(64 << 20), data, index_factory=WalkIndex)
    yield indexed, walked
    ix.close()
