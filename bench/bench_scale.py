"""Scale-out figures, side by side in one run (issue 14 item 6):

    .venv/bin/python bench/bench_scale.py [--patients 100000] [--rows 1000000] [--changed 1000]
                                          [--drill-patients 300] [--dask-workers 1 2 4] [--json FILE]

1. kana search p50/p95 on the PostgreSQL index vs the embedded whoosh index over the same
   ``--patients`` (the tree of bench/bench_index.py, generated once into var/); every result
   list is compared between the two;
2. PostgreSQL alone at ``--rows`` index rows.  **These rows are generated directly** (COPY), not
   extracted from a storage tree: 1,000,000 patient folders would take hours to write on this
   machine.  Names follow bench/jp_names.py (a Zipf–Mandelbrot distribution over ~2,800
   surnames and ~2,600 given names, fitted to Japanese surname statistics); every query is also
   run under EXPLAIN (ANALYZE, BUFFERS): server-side time (less disturbed by other load), the
   plans taken, heap fetches of the index-only walks; and the exact hits per query;
3. index refresh after ``--changed`` patients got a new ADT-00: whoosh vs PostgreSQL (the same
   walk and extraction, then a segment merge vs upserts);
4. drill throughput (files/s) over a synthetic hospital: the local process pool (2 processes)
   vs a local Dask cluster of each ``--dask-workers`` (cluster start-up apart; per worker: CPU
   seconds, files per busy second, share of the wall time inside tasks), tasks of
   ``--dask-task-size`` patient folders (32: 10 tasks for 300 patients, so 2 workers can share).

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
    """``(keys, summary, stub)`` of ``n`` made-up patients, as the index stores them; names drawn
    from bench/jp_names.py's realistic (Zipf–Mandelbrot) distribution over ~2,800 surnames and
    ~2,600 given names."""
    from jp_names import NameDrawer
    rng = random.Random(seed)
    names = NameDrawer(rng)
    for i in range(n):
        sex = rng.choice("MF")
        fam, kfam, giv, kgiv = names.draw(sex)
        pid = f"{8000000000 + i:010d}"
        birth = f"{rng.randint(1925, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        parts = [search_key(x) for x in (fam, giv, kfam, kgiv)]
        kanji, kana = parts[0] + parts[1], parts[2] + parts[3]
        keys = SEP.join([kana or kanji, kana, kanji, *parts, pid])
        summary = [pid, f"{fam} {giv}", f"{kfam} {kgiv}", birth,
                   "male" if sex == "M" else "female", "", "", ""]
        yield keys, summary, None


def explained(p, q: str, limit: int) -> dict:
    """One kana search again with its statements traced, each run under EXPLAIN (ANALYZE,
    BUFFERS): the server's planning + execution time (what the load of other processes on
    this machine disturbs least), which plan ran, and the heap fetches of the ordered walk."""
    p.trace = []
    p.search(kana=q, limit=limit)
    out = {"server_ms": 0.0, "plan": [], "walk_heap_fetches": 0, "buffers": 0}
    for sql, params in p.trace:
        doc = p.db.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params).fetchone()
        top = list(doc.values())[0][0]
        out["server_ms"] += top["Planning Time"] + top["Execution Time"]
        kind = "gin" if "MATERIALIZED" in sql else "walk" if "split_part(" in sql else "rows"
        # the kana range runs in the same statement as the inner part's plan (UNION ALL)
        out["plan"].append(f"range&{kind}" if "starts_with(" in sql else kind)
        stack = [top["Plan"]]
        out["buffers"] += top["Plan"].get("Shared Hit Blocks", 0) + \
            top["Plan"].get("Shared Read Blocks", 0)
        while stack:
            node = stack.pop()
            if node.get("Node Type") == "Index Only Scan":
                out["walk_heap_fetches"] += node.get("Heap Fetches", 0)
            stack.extend(node.get("Plans", []))
    p.trace = None
    out["plan"] = "+".join(out["plan"])
    return out


def kana_hits(p, q: str) -> int:
    """The exact number of patients a kana query matches (its FHIR total)."""
    p.plan = "gin"
    n = len(p.search(kana=q, limit=10_000_000))
    p.plan = None
    return n


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
    p.import_rows(iter(rows), {"generated": True}, "")  # COPY, then VACUUM (ANALYZE)
    res["million_load_s"] = round(time.perf_counter() - t, 1)
    rnd = random.Random(13)
    # queries about real patients: a uniform draw of rows, so common names come up as often
    # as they are common (as at a reception desk)
    sample = [(r[1][0], r[1][2]) for r in rnd.sample(rows, 5000)]
    del rows
    qs = queries(sample, args.queries, rnd)
    tp = search_times(p, qs, args.limit)
    ex = [explained(p, q, args.limit) for q in qs]
    server = [e["server_ms"] / 1000 for e in ex]
    hits = sorted(kana_hits(p, q) for q in qs[:args.hit_queries])
    plans: dict[str, int] = {}
    for e in ex:
        plans[e["plan"]] = plans.get(e["plan"], 0) + 1
    size = p.db.execute("SELECT pg_total_relation_size('patient_index') AS b").fetchone()["b"]
    res["million"] = {
        "rows": args.rows, "queries": len(qs), "limit": args.limit,
        "pg_p50_ms": ms(pct(tp, .5)), "pg_p95_ms": ms(pct(tp, .95)),
        "server_p50_ms": ms(pct(server, .5)), "server_p95_ms": ms(pct(server, .95)),
        "server_max_ms": ms(max(server)), "plans": plans,
        "walk_heap_fetches_max": max(e["walk_heap_fetches"] for e in ex),
        "buffers_p95": sorted(e["buffers"] for e in ex)[int(.95 * (len(ex) - 1))],
        "hits_median": statistics.median(hits), "hits_p10": pct(hits, .1),
        "hits_p90": pct(hits, .9), "hits_max": max(hits), "hits_min": min(hits),
        "table_mb": round(size / 2**20), "bytes_per_row": round(size / args.rows)}
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

    def run(opts) -> tuple[int, float, float]:
        import resource
        t, c = time.perf_counter(), time.process_time()
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        report, runs = drill([fac], opts)
        dt = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = time.process_time() - c + (after.ru_utime + after.ru_stime
                                         - kids.ru_utime - kids.ru_stime)
        files = report["facilities"][0]["files"]
        for r in runs:
            r.spool.close()
        return files, dt, cpu

    files, dt, cpu = run(CheckOptions(workers=2, cache_dir=work / "cache"))
    out["local_2_processes"] = {"files": files, "s": round(dt, 2), "files_per_s": round(files / dt),
                                "cpu_s": round(cpu, 1), "files_per_cpu_s": round(files / cpu)}
    for n in args.dask_workers:
        t = time.perf_counter()
        ex = DaskExecutor(local=n, task_size=args.dask_task_size)
        start = time.perf_counter() - t
        try:
            files, dt, _ = run(CheckOptions(executor=ex, cache_dir=work / "cache"))
        finally:
            ex.close()
        per = ex.per_worker.values()
        cpu = sum(w["cpu_s"] for w in per)
        busy = sum(w["busy_s"] for w in per)
        out[f"dask_{n}_workers"] = {
            "files": files, "s": round(dt, 2), "files_per_s": round(files / dt),
            "cluster_start_s": round(start, 1), "tasks": sum(int(w["tasks"]) for w in per),
            "worker_cpu_s": round(cpu, 1), "files_per_worker_cpu_s": round(files / max(cpu, 1e-9)),
            # share of the workers' wall time spent inside tasks: the rest is scheduling,
            # waiting for the client, or an idle worker at the end
            "busy_share": round(busy / max(dt * n, 1e-9), 2),
            "per_worker_files_per_busy_s": sorted(round(w["files"] / max(w["busy_s"], 1e-9))
                                                  for w in per)}
    d1, d2 = out.get("dask_1_workers"), out.get("dask_2_workers")
    if d1 and d2:
        out["speedup_2_vs_1_workers"] = round(d1["s"] / d2["s"], 2)
    res["drill"] = out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--changed", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--hit-queries", type=int, default=100,
                    help="queries whose exact hit count is reported (1,000,000 rows)")
    ap.add_argument("--drill-patients", type=int, default=300)
    ap.add_argument("--dask-workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--dask-task-size", type=int, default=32, help="patient folders per Dask task")
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
                  f"p95 {m['pg_p95_ms']} ms; EXPLAIN ANALYZE p50 {m['server_p50_ms']} ms p95 "
                  f"{m['server_p95_ms']} ms max {m['server_max_ms']} ms; plans {m['plans']}; "
                  f"walk heap fetches max {m['walk_heap_fetches_max']}; hits per query median "
                  f"{m['hits_median']} (p10 {m['hits_p10']}, p90 {m['hits_p90']}, "
                  f"max {m['hits_max']})")
        if "drill" not in args.skip:
            bench_drill(args, res, work)
            for k, v in res["drill"].items():
                if not isinstance(v, dict):
                    print(f"drill {k}: {v}")
                    continue
                print(f"drill {k}: {v['files']} files in {v['s']} s = {v['files_per_s']} files/s; "
                      + ", ".join(f"{a} {b}" for a, b in v.items()
                                  if a not in ("files", "s", "files_per_s")))
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
