"""Patient index (fhir_gateway.index): build, refresh after 100 changed patients, kana search —
each beside a baseline measured in the same run.

    .venv/bin/python bench/bench_index.py [--patients 100000] [--queries 300]

The tree holds, per patient, the current ADT-00 (written by the synthetic hospital's own patient
generator, message builder and ISO-2022-JP encoder) and one outpatient visit (ADT-12) in a date
folder; it is generated once into ``var/bench-index/tree-N`` and reused.  Baselines:

* build   — the same extraction (walk + read + map every ADT-00) feeding a SQLite FTS5 trigram
            table instead of Whoosh, and the extraction alone;
* refresh — a full ``Storage.patient_ids()`` walk that lists every patient folder (what a
            refresh without the mtime state would do before reading anything);
* search  — a plain Python scan over the same normalised kana keys (``q in key``) and SQLite
            FTS5 trigram (``LIKE`` below 3 characters), both sorted and limited like the index.
Every index result set is compared with the scan's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import unicodedata
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_gateway.index import PatientIndex  # noqa: E402
from fhir_gateway.index.summary import extract  # noqa: E402
from fhir_gateway.synth.messages import Builder  # noqa: E402
from fhir_gateway.synth.patients import doctors, make_patient, patient_id  # noqa: E402
from fhir_gateway.synth.writer import encode_message  # noqa: E402
from storage.layout import Storage  # noqa: E402
from storage.names import FileName  # noqa: E402
from storage.text import search_key  # noqa: E402

FACILITY = "1310000017"
START, END = date(2016, 11, 1), date(2026, 10, 31)


def _ts17(when: datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S") + f"{when.microsecond // 1000:03d}"


def _write_patient(root: Path, i: int, seed: int = 7, version: int = 0) -> str:
    pid = patient_id(seed, i)
    rng = random.Random(f"bench-index:{seed}:{i}:{version}")
    p = make_patient(rng, i, pid, START, END)
    b = Builder(FACILITY, p)
    visit = datetime.combine(END - timedelta(days=rng.randrange(3000)), datetime.min.time()) \
        + timedelta(hours=9, minutes=rng.randrange(480))
    pdir = root / pid[0:3] / pid[3:6] / pid
    adt = pdir / "-" / "ADT-00"
    adt.mkdir(parents=True, exist_ok=True)
    at = visit + timedelta(minutes=5 + version)
    name = FileName(pid, "-", "ADT-00", "999999999999999", _ts17(at), "-", "1")
    (adt / name.name).write_bytes(encode_message(b.adt00(at, p.weight, p.home_dept)))
    day = visit.strftime("%Y%m%d")
    vdir = pdir / day / "ADT-12"
    vdir.mkdir(parents=True, exist_ok=True)
    doc = doctors(p.home_dept)[0]
    vname = FileName(pid, day, "ADT-12", "999999999999999", _ts17(visit), p.home_dept, "1")
    (vdir / vname.name).write_bytes(encode_message(b.adt12(visit, p.home_dept, doc)))
    return pid


def _write_range(args: tuple[str, int, int]) -> int:
    root, lo, hi = args
    for i in range(lo, hi):
        _write_patient(Path(root), i)
    return hi - lo


def make_tree(root: Path, n: int) -> Path:
    """Generate (or reuse) a tree of ``n`` ADT-00-only patients."""
    marker = root / ".complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    import multiprocessing as mp

    step = 2000
    jobs = [(str(root), lo, min(n, lo + step)) for lo in range(0, n, step)]
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        done = 0
        for k in pool.imap_unordered(_write_range, jobs):
            done += k
            print(f"\r  writing tree: {done}/{n}", end="", file=sys.stderr, flush=True)
    print(f"\r  tree of {n} patients written in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    marker.write_text(str(n))
    return root


def change_patients(root: Path, n_total: int, count: int, rnd: random.Random) -> list[str]:
    """New ADT-00 versions for ``count`` patients, as a writer does: old current renamed to
    flag 2, new flag-1 file with other demographics (a new name)."""
    pids = []
    for i in rnd.sample(range(n_total), count):
        pid = patient_id(7, i)
        adt = root / pid[0:3] / pid[3:6] / pid / "-" / "ADT-00"
        for f in list(adt.iterdir()):
            if f.name.endswith("_1"):
                f.rename(f.with_name(f.name[:-1] + "2"))
        version = rnd.randrange(1, 10**6)
        rng = random.Random(f"bench-index:7:{i}:{version}")
        p = make_patient(rng, i, pid, START, END)
        at = datetime(2026, 10, 31, 12, 0) + timedelta(seconds=version % 3600)
        name = FileName(pid, "-", "ADT-00", "999999999999999", _ts17(at), "-", "1")
        (adt / name.name).write_bytes(encode_message(Builder(FACILITY, p).adt00(at, p.weight, "01")))
        pids.append(pid)
    return pids


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def queries(rows: list[tuple[str, str]], n: int, rnd: random.Random) -> list[str]:
    """Kana queries as clinicians type them: family names, given names, full names, 2-char
    prefixes; in katakana, hiragana and half-width."""
    out = []
    for _ in range(n):
        kana = rnd.choice(rows)[1]
        fam, _, giv = kana.partition(" ")
        kind = rnd.randrange(5)
        q = [fam, giv, fam + giv, fam[:2], fam + " " + giv[:1]][kind]
        form = rnd.randrange(3)
        if form == 1:  # hiragana
            q = "".join(chr(ord(c) - 0x60) if "\u30a1" <= c <= "\u30f6" else c for c in q)
        elif form == 2:  # half-width katakana
            q = "".join(_HALF.get(c, c) for c in q)
        out.append(q)
    return out


def _half_table() -> dict[str, str]:
    table = {}
    for cp in range(0xFF61, 0xFFA0):
        ch = chr(cp)
        table.setdefault(unicodedata.normalize("NFKC", ch), ch)
    for c in "ガギグゲゴザジズゼゾダヂヅデドバビブベボパピプペポヴ":
        base = unicodedata.normalize("NFD", c)
        table[c] = table.get(base[0], base[0]) + ("ﾞ" if base[1] == "\u3099" else "ﾟ")
    return table


_HALF = _half_table()


def timed(fn, *a, **kw):
    t = time.perf_counter()
    r = fn(*a, **kw)
    return r, time.perf_counter() - t


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the extraction workers): the figure
    that does not depend on what else the machine is running."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--changed", type=int, default=100)
    ap.add_argument("--limit", type=int, default=50, help="results per search (FHIR default page)")
    ap.add_argument("--tree", type=Path, default=None, help="reuse/generate the tree here")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()
    n = args.patients
    tree = make_tree(args.tree or ROOT / "var" / "bench-index" / f"tree-{n}", n)
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    res: dict = {"patients": n}
    rnd = random.Random(11)
    try:
        # One untimed-for-comparison pass reading every file, so the build and its baseline
        # both run with the page cache warm (its time is the cold-cache I/O cost, reported).
        storage = Storage(tree)
        pids, walk_s = timed(lambda: sorted(storage.patient_ids()))
        res["walk_s"] = walk_s

        def read_all() -> int:
            n = 0
            for dirpath, _, files in os.walk(tree):
                for f in files:
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        n += len(fh.read())
            return n
        _, res["cold_read_pass_s"] = timed(read_all)

        # -- build ------------------------------------------------------------------------------
        index = PatientIndex(work / "data", FACILITY, [tree])
        res["load_before"] = os.getloadavg()[0]
        c0 = cpu_seconds()
        stats, build_s = timed(index.build)
        res["build_cpu_s"] = cpu_seconds() - c0
        res["build_s"] = build_s
        res["indexed"] = stats.patients

        def extraction():
            out = []
            for pid in pids:
                s = extract(storage, pid, FACILITY).summary
                out.append((pid, search_key(s.kana), search_key(s.name)))
            return out
        c0 = cpu_seconds()
        rows3, extract_s = timed(extraction)
        res["extract_only_s"] = extract_s
        res["extract_only_cpu_s"] = cpu_seconds() - c0
        db = sqlite3.connect(str(work / "fts.db"))
        db.execute("CREATE VIRTUAL TABLE p USING fts5(pid UNINDEXED, kana, kanji, tokenize='trigram')")
        c0 = cpu_seconds()
        _, fts_s = timed(lambda: (db.executemany("INSERT INTO p VALUES (?,?,?)", rows3), db.commit()))
        res["sqlite_fts5_insert_s"] = fts_s
        res["sqlite_build_s"] = extract_s + fts_s
        res["sqlite_build_cpu_s"] = res["extract_only_cpu_s"] + cpu_seconds() - c0

        # -- refresh ----------------------------------------------------------------------------
        _, noop_s = timed(index.refresh)
        res["refresh_noop_s"] = noop_s
        changed = change_patients(tree, n, args.changed, rnd)
        time.sleep(2.1)  # past the racy-mtime window, as in real life between two refreshes
        c0 = cpu_seconds()
        st, refresh_s = timed(index.refresh)
        res["refresh_changed_cpu_s"] = cpu_seconds() - c0
        res["refresh_changed_s"] = refresh_s
        res["refresh_changed_count"] = st.changed
        _, walk2_s = timed(lambda: sorted(storage.patient_ids()))
        res["baseline_full_walk_s"] = walk2_s
        assert st.changed >= args.changed, st.line()
        for pid in changed[:10]:
            assert index.get(pid) is not None

        # -- search -----------------------------------------------------------------------------
        summaries = index.search(limit=n + 10)
        rows = [(s.patient_id, s.kana) for s in summaries]
        keyed = sorted((search_key(k), pid) for pid, k in rows)
        qs = queries(rows, args.queries, rnd)
        for q in qs[:20]:
            index.search(kana=q, limit=args.limit)  # warm
        t_ix, t_scan, t_fts, hits, wrong = [], [], [], [], 0
        for q in qs:
            k = search_key(q)
            t = time.perf_counter()
            got = index.search(kana=q, limit=args.limit)
            t_ix.append(time.perf_counter() - t)
            t = time.perf_counter()
            scan = [pid for key, pid in keyed if k in key][:args.limit]
            t_scan.append(time.perf_counter() - t)
            t = time.perf_counter()
            if len(k) >= 3:
                db.execute("SELECT pid FROM p WHERE kana MATCH ? ORDER BY kana, pid LIMIT ?",
                           ('"' + k + '"', args.limit)).fetchall()
            else:
                db.execute("SELECT pid FROM p WHERE kana LIKE ? ORDER BY kana, pid LIMIT ?",
                           ("%" + k + "%", args.limit)).fetchall()
            t_fts.append(time.perf_counter() - t)
            full = index.search(kana=q, limit=n)
            truth = {pid for key, pid in keyed if k in key}
            hits.append(len(truth))
            if {s.patient_id for s in full} != truth or [s.patient_id for s in got] != scan:
                wrong += 1
        ms = lambda v: round(v * 1000, 2)  # noqa: E731
        res["search"] = {
            "queries": len(qs), "limit": args.limit, "hits_median": statistics.median(hits),
            "hits_max": max(hits), "wrong_result_sets": wrong,
            "index_p50_ms": ms(pct(t_ix, .5)), "index_p95_ms": ms(pct(t_ix, .95)),
            "scan_p50_ms": ms(pct(t_scan, .5)), "scan_p95_ms": ms(pct(t_scan, .95)),
            "fts5_p50_ms": ms(pct(t_fts, .5)), "fts5_p95_ms": ms(pct(t_fts, .95)),
        }
        t_all = []
        for q in qs[:100]:
            t = time.perf_counter()
            index.search(kana=q, limit=1000)
            t_all.append(time.perf_counter() - t)
        res["search"]["index_limit1000_p50_ms"] = ms(pct(t_all, .5))
        res["search"]["index_limit1000_p95_ms"] = ms(pct(t_all, .95))
        index.close()
        res["load_after"] = os.getloadavg()[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
        # Undo the changed patients? No: the tree is a benchmark fixture; changes keep it valid.
    s = res["search"]
    print(f"patients: {n} (indexed {res['indexed']})")
    print(f"machine: {os.cpu_count()} CPUs, load average {res['load_before']:.1f} before, "
          f"{res['load_after']:.1f} after; first read of every file {res['cold_read_pass_s']:.1f} s")
    print(f"build:   {res['build_s']:.1f} s wall, {res['build_cpu_s']:.1f} s CPU;   baseline "
          f"extraction + SQLite FTS5 (one process) {res['sqlite_build_s']:.1f} s wall, "
          f"{res['sqlite_build_cpu_s']:.1f} s CPU (extraction alone {res['extract_only_s']:.1f} s);"
          f"   CPU ratio {res['build_cpu_s'] / res['sqlite_build_cpu_s']:.2f}")
    print(f"refresh: {res['refresh_changed_s']:.2f} s wall ({res['refresh_changed_cpu_s']:.2f} s CPU) "
          f"after {args.changed} changed "
          f"({res['refresh_changed_count']} re-read), {res['refresh_noop_s']:.2f} s unchanged;"
          f"   baseline full folder walk {res['baseline_full_walk_s']:.2f} s")
    print(f"kana search (limit {s['limit']}, median {s['hits_median']} hits, max {s['hits_max']}): "
          f"p50 {s['index_p50_ms']} ms p95 {s['index_p95_ms']} ms;   scan p50 {s['scan_p50_ms']} "
          f"p95 {s['scan_p95_ms']};   FTS5 p50 {s['fts5_p50_ms']} p95 {s['fts5_p95_ms']};   "
          f"limit 1000: p50 {s['index_limit1000_p50_ms']} p95 {s['index_limit1000_p95_ms']} ms;   "
          f"wrong result sets {s['wrong_result_sets']}/{s['queries']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0 if s["wrong_result_sets"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
