"""Fairness under heavy load (issue 13 item 3): a plain Patient read while clients loop
``$everything`` on the heavy patient, against the same read on the idle server, in one run.

    .venv/bin/python bench/bench_fairness.py [--clients 8] [--reads 300] [--workers 2]

Builds ``fhir-gateway synth --patients 5 --heavy-patient`` (patient 9000000001, ~3,000 files),
serves it (2 workers x 4 threads, the defaults on this machine), measures N sequential reads of
``Patient/<normal>`` idle, then again while ``--clients`` threads loop ``$everything`` of the heavy
patient (a refused one — 429/503 with Retry-After — is retried after 50 ms, so the pressure never
stops).  Prints p50/p99 idle vs loaded, their ratio, the $everything outcomes and the largest
worker RSS seen during the load.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import requests  # noqa: E402

from conftest import BIN, FACILITY, make_token, start_server  # noqa: E402

HEAVY = "9000000001"


def rss_mb(pid: int) -> float:
    """Largest RSS among the server's worker processes (children of ``pid``)."""
    best = 0.0
    out = subprocess.run(["ps", "-o", "pid=,ppid=,rss=", "-A"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        p, pp, rss = (int(x) for x in line.split())
        if pp == pid:
            best = max(best, rss / 1024)
    return best


def reads(sess, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = sess.get(url, timeout=60)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.status_code
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--reads", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", help="reuse a synth hospital here (built when missing)")
    a = ap.parse_args()
    base = Path(a.dir or tempfile.mkdtemp(prefix="bench-fair-"))
    root, data = base / "ssmix2", base / "data"
    if not root.exists():
        t0 = time.monotonic()
        subprocess.run([str(BIN / "fhir-gateway"), "synth", "--out", str(root), "--patients", "5",
                        "--years", "10", "--seed", "3", "--facility", FACILITY, "--heavy-patient",
                        "--no-progress", "--workers", "2"], check=True, capture_output=True)
        print(f"synth: {time.monotonic() - t0:.0f} s")
    data.mkdir(parents=True, exist_ok=True)
    cfg = base / "gateway.toml"
    cfg.write_text(f'data_dir = "{data}"\n\n[[facility]]\ncode = "{FACILITY}"\nname = "bench"\n'
                   f'storage = ["{root}"]\n', encoding="utf-8")
    subprocess.run([str(BIN / "fhir-gateway"), "index", "--config", str(cfg)], capture_output=True)
    token = make_token(data)
    srv = start_server(["--config", str(cfg)], token=token, workers=a.workers, timeout=120)
    try:
        hdr = {"Authorization": f"Bearer {token}"}
        normal = next(p for p in sorted(x.name for x in root.glob("*/*/*")) if p != HEAVY)
        sess = requests.Session()
        sess.headers.update(hdr)
        read_url = f"{srv.base}/Patient/{normal}"
        ev_url = f"{srv.base}/Patient/{HEAVY}/$everything"
        reads(sess, read_url, 20)  # warm
        t0 = time.monotonic()
        r = sess.get(ev_url, timeout=300)
        print(f"$everything heavy patient alone: {time.monotonic() - t0:.2f} s, HTTP {r.status_code}")
        idle = reads(sess, read_url, a.reads)
        stop = threading.Event()
        outcomes: dict[int, int] = {}
        peak = [0.0]

        def loop(i: int) -> None:
            s = requests.Session()
            s.headers.update({"Authorization": f"Bearer {make_token(data, name=f'c{i}')}"})
            while not stop.is_set():
                try:
                    code = s.get(ev_url, timeout=300).status_code
                except requests.RequestException:
                    code = -1
                outcomes[code] = outcomes.get(code, 0) + 1
                if code != 200:
                    time.sleep(0.05)

        def watch() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(srv.proc.pid))
                time.sleep(0.5)

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(a.clients)]
        threads.append(threading.Thread(target=watch))
        for t in threads:
            t.start()
        time.sleep(3)
        loaded = reads(sess, read_url, a.reads)
        stop.set()
        for t in threads:
            t.join()
        print(f"Patient read idle:   p50 {statistics.median(idle):6.1f} ms  p99 {pct(idle, .99):6.1f} ms")
        print(f"Patient read loaded: p50 {statistics.median(loaded):6.1f} ms  p99 {pct(loaded, .99):6.1f} ms"
              f"  ({a.clients} clients looping $everything)")
        print(f"ratio loaded/idle: p50 x{statistics.median(loaded) / statistics.median(idle):.1f}, "
              f"p99 x{pct(loaded, .99) / pct(idle, .99):.1f}")
        print(f"$everything outcomes during the load: {dict(sorted(outcomes.items()))}")
        print(f"largest worker RSS during the load: {peak[0]:.0f} MB")
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
