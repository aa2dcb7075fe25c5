"""Scale-out figures, side by side in one run (issue 14 item 6):

    .venv/bin/python bench/bench_scale.py [--patients 100000] [--rows 1000000] [--changed 1000]
                                          [--drill-patients 300] [--json FILE]

1. kana search p50/p95 on the PostgreSQL index vs the embedded whoosh index over the same
   ``--patients`` (the tree of bench/bench_index.py, generated once into var/); every result
   list is compared between the two;
2. PostgreSQL alone at ``--rows`` index rows.  **These rows are generated directly** (names drawn
   from the synthetic hospital's name lists, the table filled with COPY), not extracted from a
   storage tree: 1,000,000 patient folders would take hours to write on this machine;
3. index refresh after ``--changed`` patients got a new ADT-00: whoosh vs PostgreSQL (the same
   walk and extraction, then a segment merge vs upserts);
4. drill throughput (files/s) over a synthetic hospital: the local process pool (2 processes)
   vs a local Dask cluster of 1, 2 and 4 workers (cluster start-up reported apart).

PostgreSQL is a throw-away server in a temp dir (fhir_gateway.scale.pgserver); fsync is off
there, which does not change read latency.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_index import FACILITY, change_patients, make_tree, pct, queries, timed  # noqa: E402

from fhir_gateway.index import PatientIndex  # noqa: E402
from fhir_gateway.index.patients import SEP  # noqa: E402
from fhir_gateway.scale import migrations  # noqa: E402
from fhir_gateway.scale.migrate import migrate_embedded  # noqa: E402
from fhir_gateway.scale.pgindex import PgPatientIndex  # noqa: E402
from fhir_gateway.scale.pgserver import PgServer  # noqa: E402
from storage.text import search_key  # noqa: E402

ms = lambda v: round(v * 1000, 2)  # noqa: E731


def search_times(index, qs: list[str], limit: int) -> list[float]:
    for q in qs[:20]:
        index.search(kana=q, limit=limit)  # warm
    out = []
    for q in qs:
        t = time.perf_counter()
        index.search(kana=q, limit=limit)
        out.append(time.perf_counter() - t)
    return out


def direct_rows(n: int, seed: int = 5):
    """``(keys, summary, stub)`` of ``n`` made-up patients, as the index stores them."""
    from fhir_gateway.synth import content as C
    rng = random.Random(seed)
    for i in range(n):
        sex = rng.choice("MF")
        fam, kfam = rng.choice(C.SURNAMES)
        giv, kgiv = rng.choice(C.MALE_NAMES if sex == "M" else C.FEMALE_NAMES)
        pid = f"{8000000000 + i:010d}"
        birth = f"{rng.randint(1925, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        parts = [search_key(x) for x in (fam, giv, kfam, kgiv)]
        kanji, kana = parts[0] + parts[1], parts[2] + parts[3]
        keys = SEP.join([kana or kanji, kana, kanji, *parts, pid])
        summary = [pid, f"{fam} {giv}", f"{kfam} {kgiv}", birth,
                   "male" if sex == "M" else "female", "", "", ""]
        yield keys, summary, None


def bench_index(args, res: dict, dsn: str, work: Path) -> None:
    n = args.patients
    tree = make_tree(ROOT / "var" / "bench-index" / f"tree-{n}", n)
    w = PatientIndex(work / "data", FACILITY, [tree])
    print("  building the whoosh index ...", file=sys.stderr)
    st, res["whoosh_build_s"] = timed(w.build)
    res["indexed"] = st.patients
    from fhir_gateway.config import Config, Facility
    cfg = Config(work / "data", {FACILITY: Facility(FACILITY, "bench", (tree,))})
    p = PgPatientIndex(dsn, work / "data", FACILITY, [tree])
    moved, res["pg_migrate_s"] = timed(migrate_embedded, cfg, FACILITY, p)
    assert moved == st.patients, (moved, st.patients)
    p.db.execute("ANALYZE patient_index")
    rnd = random.Random(11)
    rows = [(s.patient_id, s.kana) for s in w.search(limit=n + 10)]
    qs = queries(rows, args.queries, rnd)
    wrong = sum(w.search(kana=q, limit=args.limit) != p.search(kana=q, limit=args.limit)
                for q in qs)
    tw = search_times(w, qs, args.limit)
    tp = search_times(p, qs, args.limit)
    res["search_100k"] = {"queries": len(qs), "limit": args.limit, "wrong_result_sets": wrong,
                          "whoosh_p50_ms": ms(pct(tw, .5)), "whoosh_p95_ms": ms(pct(tw, .95)),
                          "pg_p50_ms": ms(pct(tp, .5)), "pg_p95_ms": ms(pct(tp, .95))}
    # refresh after N changed patients: the same changes seen by both indexes (a no-op refresh
    # first, so folders written within the racy-mtime window of the build are settled)
    w.refresh(), p.refresh()
    change_patients(tree, n, args.changed, rnd)
    time.sleep(2.1)  # out of the racy-mtime window, as between two real refreshes
    sw, res["whoosh_refresh_s"] = timed(w.refresh)
    sp, res["pg_refresh_s"] = timed(p.refresh)
    res["refresh_changed"] = [sw.changed, sp.changed]
    size = p.db.execute("SELECT pg_total_relation_size('patient_index') AS b").fetchone()["b"]
    res["pg_bytes_per_patient"] = round(size / max(1, p.count()))
    whoosh_bytes = sum(f.stat().st_size for f in (work / "data").rglob("*") if f.is_file())
    res["whoosh_bytes_per_patient"] = round(whoosh_bytes / max(1, n))
    w.close()
    p.close()


def bench_million(args, res: dict, pg: PgServer, work: Path) -> None:
    dsn = pg.create_database("million")
    migrations.upgrade(dsn)
    p = PgPatientIndex(dsn, work / "data-m", "1399999999", [work])
    rows = list(direct_rows(args.rows))
    t = time.perf_counter()
    p.import_rows(iter(rows), {"generated": True}, "")
    res["million_load_s"] = round(time.perf_counter() - t, 1)
    p.db.execute("ANALYZE patient_index")
    rnd = random.Random(13)
    sample = [(r[1][0], r[1][2]) for r in rnd.sample(rows, 5000)]
    qs = queries(sample, args.queries, rnd)
    tp = search_times(p, qs, args.limit)
    hits = [len(p.search(kana=q, limit=100000)) for q in qs[:50]]
    size = p.db.execute("SELECT pg_total_relation_size('patient_index') AS b").fetchone()["b"]
    res["million"] = {"rows": args.rows, "queries": len(qs), "limit": args.limit,
                      "pg_p50_ms": ms(pct(tp, .5)), "pg_p95_ms": ms(pct(tp, .95)),
                      "hits_median": statistics.median(hits), "table_mb": round(size / 2**20),
                      "bytes_per_row": round(size / args.rows)}
    p.close()


def bench_drill(args, res: dict, work: Path) -> None:
    from fhir_gateway.config import Facility
    from fhir_gateway.drill import CheckOptions, drill
    from fhir_gateway.scale.dask_drill import DaskExecutor
    tree = ROOT / "var" / "bench-scale" / f"hospital-{args.drill_patients}"
    if not (tree / ".complete").exists():
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run([str(Path(sys.executable).parent / "fhir-gateway"), "synth", "--out",
                        str(tree), "--patients", str(args.drill_patients), "--seed", "3",
                        "--years", "2", "--no-progress", "--workers", "2"], check=True,
                       capture_output=True)
        (tree / ".complete").write_text("ok")
    fac = Facility(FACILITY, "bench", (tree,))
    out: dict = {}

    def run(opts) -> float:
        t = time.perf_counter()
        report, runs = drill([fac], opts)
        dt = time.perf_counter() - t
        files = report["facilities"][0]["files"]
        for r in runs:
            r.spool.close()
        return files, dt

    files, dt = run(CheckOptions(workers=2, cache_dir=work / "cache"))
    out["local_2_processes"] = {"files": files, "s": round(dt, 2), "files_per_s": round(files / dt)}
    for n in (1, 2, 4):
        t = time.perf_counter()
        ex = DaskExecutor(local=n)
        start = time.perf_counter() - t
        try:
            files, dt = run(CheckOptions(executor=ex, cache_dir=work / "cache"))
        finally:
            ex.close()
        out[f"dask_{n}_workers"] = {"files": files, "s": round(dt, 2), "files_per_s": round(files / dt),
                                    "cluster_start_s": round(start, 1)}
    res["drill"] = out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--changed", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--drill-patients", type=int, default=300)
    ap.add_argument("--skip", action="append", default=[], choices=("index", "million", "drill"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    res: dict = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    pg = PgServer()
    pg.start()
    try:
        if "index" not in args.skip:
            dsn = pg.create_database("bench")
            migrations.upgrade(dsn)
            bench_index(args, res, dsn, work)
            s = res["search_100k"]
            print(f"kana search, {res['indexed']} patients, limit {s['limit']}: PostgreSQL p50 "
                  f"{s['pg_p50_ms']} ms p95 {s['pg_p95_ms']} ms;  whoosh p50 {s['whoosh_p50_ms']} "
                  f"ms p95 {s['whoosh_p95_ms']} ms;  ratio {s['pg_p50_ms'] / s['whoosh_p50_ms']:.2f}; "
                  f"different result lists {s['wrong_result_sets']}/{s['queries']}")
            print(f"build: whoosh {res['whoosh_build_s']:.1f} s; copy into PostgreSQL "
                  f"{res['pg_migrate_s']:.1f} s")
            print(f"refresh after {args.changed} changed: whoosh {res['whoosh_refresh_s']:.2f} s, "
                  f"PostgreSQL {res['pg_refresh_s']:.2f} s (re-read {res['refresh_changed']}); "
                  f"bytes/patient PostgreSQL {res['pg_bytes_per_patient']}, whoosh dir "
                  f"{res['whoosh_bytes_per_patient']}")
        if "million" not in args.skip:
            bench_million(args, res, pg, work)
            m = res["million"]
            print(f"PostgreSQL alone, {m['rows']} generated rows (loaded in "
                  f"{res['million_load_s']} s, {m['table_mb']} MB): kana p50 {m['pg_p50_ms']} ms "
                  f"p95 {m['pg_p95_ms']} ms (median {m['hits_median']} hits)")
        if "drill" not in args.skip:
            bench_drill(args, res, work)
            for k, v in res["drill"].items():
                print(f"drill {k}: {v['files']} files in {v['s']} s = {v['files_per_s']} files/s"
                      + (f" (cluster start {v['cluster_start_s']} s)" if "cluster_start_s" in v else ""))
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    res["load_after"] = os.getloadavg()[0]
    print(f"load average {res['load_before']:.1f} before, {res['load_after']:.1f} after "
          f"({res['cpus']} CPUs, shared with other jobs)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
