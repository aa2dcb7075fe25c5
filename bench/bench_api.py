"""FHIR API throughput and latency against a bare Flask + waitress ceiling, in the same run.

Builds the test hospital (tests/conftest.build_hospital) plus a heavy patient, starts
``fhir-gateway serve`` (pre-forked workers) and, beside it, a bare Flask app on the same serving
code that returns one fixed Patient (the ceiling).  Load comes from ``wrk`` on loopback.

    .venv/bin/python bench/bench_api.py [--workers N] [--threads 4] [--seconds 5] [--heavy 3000]

Prints: req/s and p50/p99 for Patient read (ours vs ceiling, ratio), Observation search by
patient+code+date, $everything of the heavy patient (first page, all pages, warm) and the server's
RSS (parent + workers) under load.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import orjson  # noqa: E402
import requests  # noqa: E402

from conftest import (  # noqa: E402
    LAB_CODES, PEOPLE, _msg, _pid_seg, _write, build_hospital, free_port, make_token,
    start_server,
)

CEILING = '''
import sys
from flask import Flask, Response
from fhir_gateway.serving import serve
from mappers.serialize import dumps
PATIENT = dumps({"resourceType": "Patient", "id": "0000000100", "meta": {"versionId": "1"},
    "name": [{"family": "山田", "given": ["太郎"]}], "gender": "male", "birthDate": "1965-04-15"})
def make():
    app = Flask("ceiling")
    @app.get("/fhir/<f>/Patient/<pid>")
    def read(f, pid):
        return Response(PATIENT, content_type="application/fhir+json")
    return app
serve(make, "127.0.0.1", int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
'''


def heavy_patient(root: Path, pid: str, files: int) -> None:
    """``files`` lab-result files for one patient (3 results each), one per day."""
    import datetime as dt
    day0 = dt.date(2015, 1, 1)
    pidseg = _pid_seg(pid, PEOPLE[0])
    _write(root, pid, "-", "ADT-00", "999999999999999", "20150101090000000", "1", _msg(
        "ADT^A08^ADT_A01", "20150101090000", ["EVN||20150101090000", pidseg, "PV1|0001|O"]))
    for n in range(files):
        day = (day0 + dt.timedelta(days=n)).strftime("%Y%m%d")
        order = f"{500000 + n:015d}"
        obx = [f"OBX|{k + 1}|NM|{c}^{t}^JC10||{5 + n % 7}.{k}|{u}^{u}^99XYZ|1.0-9.0||||F|||{day}0900"
               for k, (c, t, u) in enumerate(LAB_CODES)]
        _write(root, pid, day, "OML-11", order, f"{day}120000000", "1", _msg(
            "OUL^R22^OUL_R22", f"{day}120000",
            [pidseg, f"SPM|1|{order}||023^血清^JC10|||||||||||||{day}0900",
             f"OBR|1|{order}|{order}|E001^血液学的検査^99O03|||{day}|{day}",
             f"ORC|SC|{order}|{order}||CM||||{day}1200"] + obx))


def start_ceiling(threads: int = 4, workers: int = 2) -> tuple[subprocess.Popen, int]:
    """The bare Flask app of :data:`CEILING` under the same ``serving.serve`` (waitress) as
    ``fhir-gateway serve`` (by default its 2 workers x 4 threads), once it answers."""
    port = free_port()
    ceil = subprocess.Popen([sys.executable, "-c", CEILING, str(port), str(threads),
                             str(workers)], cwd=ROOT)
    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}/fhir/x/Patient/1", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)
    return ceil, port


def wrk(url: str, seconds: int, token: str | None, conns: int = 8) -> dict:
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", url]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"),
            "errors": int(non2xx.group(1)) if non2xx else 0}


def tree_rss_mb(pid: int, field: str = "VmRSS", file: str = "status") -> float:
    """Sum over the server's processes; VmRSS counts pages shared after fork once per process,
    Pss (``field="Pss", file="smaps_rollup"``) splits them, i.e. the memory really used."""
    total = 0
    pids = [pid]
    try:
        pids += [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            m = re.search(rf"^{field}:\s+(\d+)", Path(f"/proc/{p}/{file}").read_text(), re.M)
            total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--heavy", type=int, default=3000, help="files of the heavy patient")
    ap.add_argument("--rounds", type=int, default=7, help="$everything repetitions (median)")
    ap.add_argument("--cache-mb", type=int, default=None,
                    help="serve --cache-mb (all workers together; default: serve's default)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("bench_api: wrk is missing (scripts/system-deps.sh installs it)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    try:
        h = build_hospital(tmp, 20)
        heavy = "0000009999"
        heavy_patient(h.root, heavy, args.heavy)
        token = make_token(h.data_dir)
        extra = ["--cache-mb", str(args.cache_mb)] if args.cache_mb else []
        srv = start_server(["--config", str(h.config), "--threads", str(args.threads)] + extra,
                           token=token, workers=args.workers)
        ceil, port = start_ceiling(args.threads, args.workers)
        hdr = {"Authorization": f"Bearer {token}"}
        pid = h.patients[0]
        read_url = f"{srv.base}/Patient/{pid}"
        search_url = (f"{srv.base}/Observation?patient={pid}&code=http://medis.or.jp/CodeSystem/"
                      f"master-JLAC10-17digits|3A010000002327101&date=ge2023-05-01")
        for u in (read_url, search_url):
            assert requests.get(u, headers=hdr).status_code == 200
        print(f"# {args.workers} workers x {args.threads} threads, wrk -t2 -c8 -d{args.seconds}s, "
              f"loopback, {os.cpu_count()} CPUs")
        c = wrk(f"http://127.0.0.1:{port}/fhir/x/Patient/1", args.seconds, None)
        peak = [0.0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], tree_rss_mb(srv.proc.pid))
                time.sleep(0.2)
        t = threading.Thread(target=sample, daemon=True)
        t.start()
        r = wrk(read_url, args.seconds, token)
        s = wrk(search_url, args.seconds, token)
        load_peak = peak[0]
        print(f"ceiling (bare Flask+waitress fixed Patient): {c['rps']:.0f} req/s p50 {c['p50']} "
              f"p99 {c['p99']}")
        print(f"Patient read:        {r['rps']:.0f} req/s p50 {r['p50']} p99 {r['p99']} "
              f"= {100 * r['rps'] / c['rps']:.0f}% of ceiling (errors {r['errors']})")
        print(f"Observation search (patient+code+date): {s['rps']:.0f} req/s p50 {s['p50']} "
              f"p99 {s['p99']} = {100 * s['rps'] / c['rps']:.0f}% of ceiling")
        ev = f"{srv.base}/Patient/{heavy}/$everything"
        for _ in range(2 * args.workers):  # warm every worker's cache
            requests.get(ev + "?_count=1000", headers=hdr)
        firsts, alls, pages = [], [], 0
        session = requests.Session()  # keep-alive, as FHIR client libraries do
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            b = orjson.loads(session.get(ev, headers=hdr).content)
            firsts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            url, n, pages = ev + "?_count=1000", 0, 0
            while url:  # the client parses every page (orjson) to find the next link
                b = orjson.loads(session.get(url, headers=hdr).content)
                pages += 1
                n += sum(1 for e in b.get("entry", []) if e["search"]["mode"] == "match")
                url = next((lk["url"] for lk in b["link"] if lk["relation"] == "next"), None)
            alls.append(time.perf_counter() - t0)
        stop.set()
        t.join()
        firsts.sort()
        alls.sort()
        mid = len(firsts) // 2
        print(f"$everything heavy patient ({args.heavy} files, {n} resources): first page "
              f"(_count=50) median {1000 * firsts[mid]:.0f} ms (best {1000 * firsts[0]:.0f}); "
              f"all {pages} pages (_count=1000) median {1000 * alls[mid]:.0f} ms "
              f"(best {1000 * alls[0]:.0f}); {args.rounds} rounds")
        print(f"server RSS (parent + {args.workers} workers): peak {load_peak:.0f} MB under the "
              f"read/search load, {peak[0]:.0f} MB after the heavy patient is cached "
              f"(PSS now: {tree_rss_mb(srv.proc.pid, 'Pss', 'smaps_rollup'):.0f} MB)")
        srv.stop()
        ceil.terminate()
        ceil.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
