"""System-level Bulk Data export of a synthetic hospital through a real server, against the
mapper benchmark's resources/s measured in the same run.

* baseline: ``bench_mappers.full`` (parse + map + JSON, one process, in memory) over the OMP/OML
  files of the first patients of the same hospital -> resources/s on one core
* export: ``fhir-gateway serve`` (1 worker, ``[export] processes = 2``), ``GET $export`` with
  ``Prefer: respond-async``, polled until the manifest; resources in the manifest / wall time.
  The peak RSS of every process of the server (worker + mapping processes) is sampled while it
  runs: it must stay flat (< 300 MB per process) whatever the export size.

Usage::

    .venv/bin/python bench/bench_export.py [--hospital DIR | --patients 2000] [--processes 2]

``--hospital`` reuses a ``fhir-gateway synth`` output (``ssmix2/``, ``receipts/``,
``extended/``); otherwise one is generated once into ``var/bench-export-{N}`` (seed 17, 10
years — the 2,000-patient hospital of docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
BIN = Path(sys.executable).parent
FACILITY = "1312345678"


def hospital(args) -> Path:
    if args.hospital:
        return Path(args.hospital).resolve()
    out = ROOT / "var" / f"bench-export-{args.patients}"
    if not (out / ".complete").exists():
        subprocess.run([str(BIN / "fhir-gateway"), "synth", "--out", str(out / "ssmix2"),
                        "--receipts-out", str(out / "receipts"), "--extended-out",
                        str(out / "extended"), "--patients", str(args.patients), "--seed", "17",
                        "--years", "10", "--facility", FACILITY, "--no-progress"], check=True)
        (out / ".complete").touch()
    return out


def mapper_baseline(root: Path, patients: int = 60) -> float:
    """resources/s of bench_mappers.full over the order files of the first ``patients``."""
    from bench_mappers import full
    from storage.encoding import decode
    from storage.layout import Storage
    from storage.names import parse_name
    storage = Storage(root / "ssmix2")
    pids = sorted(storage.patient_ids())[:patients]
    msgs = []
    for pid in pids:
        folder = storage.patient_dir(pid)
        for f in (folder.rglob(f"{pid}_*") if folder else ()):
            try:
                name = parse_name(f.name)
            except ValueError:
                continue
            if name.data_type.startswith(("OMP", "OML")):
                msgs.append((decode(f.read_bytes()).text, name))
    full(msgs)  # warm-up
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        resources = full(msgs)[0]
        best = min(best, time.perf_counter() - t0)
    return resources / best


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def rss_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main(argv: list[str] | None = None) -> int:
    import requests

    import socket
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hospital")
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args(argv)
    root = hospital(args)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    cfg = work / "gateway.toml"
    cfg.write_text(f'data_dir = "{work / "data"}"\n\n[[facility]]\ncode = "{FACILITY}"\n'
                   f'storage = ["{root / "ssmix2"}"]\nextended = ["{root / "extended"}"]\n'
                   f'receipts = ["{root / "receipts"}"]\n\n[export]\nprocesses = {args.processes}\n'
                   f'max_file_mb = 256\n', encoding="utf-8")
    token = subprocess.run([str(BIN / "fhir-gateway"), "token", "create", "--config", str(cfg),
                            "--name", "bench", "--facility", FACILITY], capture_output=True,
                           text=True, check=True).stdout.strip()
    base_rate = mapper_baseline(root)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(BIN / "fhir-gateway"), "serve", "--config", str(cfg), "--host",
                             "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/fhir/{FACILITY}"
    h = {"Authorization": f"Bearer {token}"}
    try:
        for _ in range(300):
            try:
                if requests.get(base + "/metadata", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        r = requests.get(base + "/$export", headers={**h, "Prefer": "respond-async"})
        r.raise_for_status()
        status = r.headers["Content-Location"]
        peak_proc = peak_total = 0.0
        while True:
            rs = [rss_mb(p) for p in tree(proc.pid)]
            peak_proc, peak_total = max(peak_proc, max(rs)), max(peak_total, sum(rs))
            s = requests.get(status, headers=h)
            if s.status_code != 202:
                break
            time.sleep(0.25)
        elapsed = time.perf_counter() - t0
        s.raise_for_status()
        manifest = s.json()
        n = sum(o["count"] for o in manifest["output"])
        errors = sum(o["count"] for o in manifest["error"])
        rate = n / elapsed
        print(f"hospital {root} ({sum(1 for _ in (root / 'ssmix2').glob('*/*/*'))} patient "
              f"folders); {os.cpu_count()} cores; load average {load0:.1f} -> "
              f"{os.getloadavg()[0]:.1f}")
        print(f"mapper baseline (bench_mappers.full, 1 process): {base_rate:10,.0f} resources/s")
        print(f"system $export ({args.processes} processes): {n:,} resources in {elapsed:.1f} s "
              f"= {rate:,.0f} resources/s ({rate / base_rate:.2f}x the mapper baseline); "
              f"{len(manifest['output'])} files, {errors} error lines")
        print(f"peak RSS: largest process {peak_proc:.0f} MB, all server processes "
              f"{peak_total:.0f} MB")
    finally:
        proc.terminate()
        proc.wait(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
