"""System-level Bulk Data export of a synthetic hospital through a real server, against the
mapper benchmark's resources/s measured in the same run.

* baseline: ``bench_mappers.full`` (parse + map + JSON, one process, in memory) over the OMP/OML
  files of the first patients of the same hospital -> resources/s on one core
* export: ``fhir-gateway serve`` (1 worker, ``[export] processes`` the default: cores + 1, at most 3), ``GET $export`` with
  ``Prefer: respond-async``, polled until the manifest; resources in the manifest / wall time,
  and per CPU-second of the server's processes (worker + the mapping processes it reaped:
  /proc/PID/stat utime+stime+cutime+cstime) — the figure that holds on a shared machine.
  Memory of every process of the server is sampled while it runs: the peak RSS of one process
  (VmHWM: must stay flat, < 300 MB, whatever the export size), RSS and PSS of them all.
* before the export every file of the hospital is read once (``--cold``: not), so the figures
  are for an OS cache that holds the hospital, as the hospital-scale benchmarks assume; the
  time that read took is printed (the bytes alone).

Usage::

    .venv/bin/python bench/bench_export.py [--hospital DIR | --patients 2000] [--processes N]

``--hospital`` reuses a ``fhir-gateway synth`` output (``ssmix2/``, ``receipts/``,
``extended/``); otherwise one is generated once into ``var/bench-export-{N}`` (seed 17, 10
years — the 2,000-patient hospital of docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def mapper_baseline(root: Path, patients: int = 60) -> tuple[float, float]:
    """(resources/s, resources per CPU-second) of bench_mappers.full over the order files of
    the first ``patients`` (best of three)."""
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
    best = best_cpu = float("inf")
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        resources = full(msgs)[0]
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return resources / best, resources / best_cpu


def path_cpu(root: Path, data_dir: Path, patients: int = 40, rounds: int = 2
             ) -> tuple[int, float, float]:
    """(resources, CPU-seconds of the export's chunk path, CPU-seconds of the per-patient
    compartment path it replaced) for the same ``patients`` in this process, best of
    ``rounds`` alternating (load from other processes hits both alike): the
    ``services.stream`` + per-UKE-file receipts path of ``export_chunk`` against
    ``FacilityService.patient_bundle`` + one JSON line per resource (the export before)."""
    import shutil as _shutil

    from fhir_gateway.bulk.export import CHILD_CACHE_BYTES, Spec, export_chunk
    from fhir_gateway.config import Facility
    from fhir_gateway.services import FacilityService, MappedCache
    from mappers.serialize import dumps
    fac = Facility(code=FACILITY, name="bench", storage=(root / "ssmix2",), extended=(root / "extended",),
                   receipts=(root / "receipts",))
    svc = FacilityService(fac, MappedCache(CHILD_CACHE_BYTES), data_dir)
    pids = svc.patient_ids()[100:100 + patients]
    export_chunk(svc, svc.patient_ids()[:2], Spec())  # imports, the receipt listing
    best_new = best_old = float("inf")
    n = 0
    for _ in range(rounds):
        out = Path(tempfile.mkdtemp(prefix="bench-export-chunk-"))
        c0 = time.process_time()
        res = export_chunk(svc, pids, Spec(), out)
        best_new = min(best_new, time.process_time() - c0)
        n = sum(res["counts"].values())
        _shutil.rmtree(out, ignore_errors=True)
        svc = FacilityService(fac, MappedCache(CHILD_CACHE_BYTES), data_dir)  # cold caches
        svc.claims.refs()
        c0 = time.process_time()
        for pid in pids:
            for r in svc.patient_bundle(pid).resources:
                dumps(r)
        best_old = min(best_old, time.process_time() - c0)
        svc = FacilityService(fac, MappedCache(CHILD_CACHE_BYTES), data_dir)
        svc.claims.refs()
    return n, best_new, best_old


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


def status_mb(pid: int, field: str = "VmRSS", file: str = "status") -> float:
    """One /proc memory figure of ``pid`` in MB (``Pss`` from ``smaps_rollup``: shared pages
    split between the processes sharing them; ``VmHWM``: the process's peak RSS)."""
    try:
        for line in open(f"/proc/{pid}/{file}"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int, which: slice = slice(11, 15)) -> float:
    """CPU time of ``pid`` and of its children it has waited for (a finished export's
    mapping processes), from /proc/PID/stat (``which``: utime, stime, cutime, cstime)."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in f[which]) / os.sysconf("SC_CLK_TCK")


def read_everything(root: Path) -> tuple[int, int, float, float]:
    """(files, bytes, wall s, CPU s) of reading every file of the hospital once (open + read):
    it puts the files in the OS cache, as the hospital-scale figures assume ("OS cache warm"),
    and is the floor no export can go under (the bytes alone)."""
    files = size = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for top in ("ssmix2", "extended", "receipts"):
        for dp, _, names in os.walk(root / top):
            for n in names:
                with open(os.path.join(dp, n), "rb") as fh:
                    size += len(fh.read())
                files += 1
    return files, size, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    import requests

    import socket
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hospital")
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--processes", type=int, default=0,
                    help="[export] processes (0: the server's default, cores + 1, at most 3)")
    ap.add_argument("--cold", action="store_true",
                    help="do not read the files once before the export (the OS cache may then "
                         "hold only part of the hospital; the export pays the disk)")
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
    base_rate, base_cpu = mapper_baseline(root)
    warm = None if args.cold else read_everything(root)
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
        for _ in range(3000):  # the receipt index is built at start-up: not part of the export
            rx = requests.get(f"http://127.0.0.1:{port}/health",
                              headers=h).json()["facilities"][FACILITY]
            if rx.get("receipt_index", {}).get("complete", True) and \
                    rx.get("receipt_index", {}).get("state") != "building":
                break
            time.sleep(0.2)
        load0 = os.getloadavg()[0]
        cpu0 = sum(cpu_seconds(p) for p in tree(proc.pid))
        own0 = cpu_seconds(proc.pid, slice(11, 13))
        t0 = time.perf_counter()
        r = requests.get(base + "/$export", headers={**h, "Prefer": "respond-async"})
        r.raise_for_status()
        status = r.headers["Content-Location"]
        peak_proc = peak_total = peak_pss = 0.0
        hwm: dict[int, float] = {}
        while True:
            procs = tree(proc.pid)
            rs = [status_mb(p) for p in procs]
            pss = sum(status_mb(p, "Pss", "smaps_rollup") for p in procs)
            for p in procs:
                hwm[p] = max(hwm.get(p, 0.0), status_mb(p, "VmHWM"))
            peak_proc, peak_total = max(peak_proc, max(rs)), max(peak_total, sum(rs))
            peak_pss = max(peak_pss, pss)
            s = requests.get(status, headers=h)
            if s.status_code != 202:
                break
            time.sleep(0.25)  # (each poll costs the server CPU time, which is measured)
        elapsed = time.perf_counter() - t0
        cpu = sum(cpu_seconds(p) for p in tree(proc.pid)) - cpu0
        own = cpu_seconds(proc.pid, slice(11, 13)) - own0
        s.raise_for_status()
        manifest = s.json()
        n = sum(o["count"] for o in manifest["output"])
        errors = sum(o["count"] for o in manifest["error"])
        rate = n / elapsed
        print(f"hospital {root} ({sum(1 for _ in (root / 'ssmix2').glob('*/*/*'))} patient "
              f"folders); {os.cpu_count()} cores; load average {load0:.1f} -> "
              f"{os.getloadavg()[0]:.1f}")
        print(f"mapper baseline (bench_mappers.full, 1 process): {base_rate:10,.0f} resources/s "
              f"({base_cpu:,.0f} per CPU-second)")
        if warm is not None:
            print(f"reading every file once first (OS cache warm): {warm[0]:,} files, "
                  f"{warm[1] / 1e6:,.0f} MB in {warm[2]:.1f} s ({warm[3]:.1f} CPU-s)")
        else:
            print("--cold: the files were not read first")
        from fhir_gateway.bulk.export import default_processes
        print(f"system $export ({args.processes or default_processes()} processes): {n:,} resources in {elapsed:.1f} s "
              f"= {rate:,.0f} resources/s ({rate / base_rate:.2f}x the mapper baseline); "
              f"{len(manifest['output'])} files, {errors} error lines")
        print(f"CPU: {cpu:.1f} CPU-seconds in the server's processes = {n / max(cpu, 1e-9):,.0f} "
              f"resources per CPU-second ({n / max(cpu, 1e-9) / base_cpu:.2f}x the baseline's); "
              f"{own:.1f} of them in the server process itself (requests, the job thread "
              f"appending the chunks' files), the rest in the mapping processes")
        print(f"memory: peak RSS of one process {max(hwm.values()):.0f} MB (VmHWM; sampled "
              f"{peak_proc:.0f}), all server processes RSS {peak_total:.0f} MB, "
              f"PSS {peak_pss:.0f} MB")
    finally:
        proc.terminate()
        proc.wait(20)
        # the export's files (~2 GB for 2,000 patients) go now, not keep_hours later
        shutil.rmtree(work / "data" / "bulk-export", ignore_errors=True)
    try:
        n, new, old = path_cpu(root, work / "data")  # the receipt index the server built
        print(f"chunk path, in process, 40 patients ({n:,} resources): {n / new:,.0f} resources "
              f"per CPU-second; the per-patient compartment path it replaced: {n / old:,.0f} "
              f"({old / new:.2f}x the CPU)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
