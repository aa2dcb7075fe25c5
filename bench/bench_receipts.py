"""Receipt index (fhir_gateway/index/receipts.py): the receipts part of a cold chart, and the
first request of a fresh worker, with and without it — both measured in the same run.

    .venv/bin/python bench/bench_receipts.py --patients 500 [--patients 2000] [--sample 30]

For each size a synthetic hospital (``fhir-gateway synth --patients N``, 10 years, monthly UKE
files) is generated once into ``var/bench-receipts/N`` and reused.  Per size:

* **index build** — ``ReceiptIndex.refresh()`` from nothing (what ``fhir-gateway index`` and a
  server's start-up thread do once), and a refresh with nothing changed;
* **cold receipts of one patient** (``ClaimSource.for_patient``, new cache each time, OS cache
  warm), for ``--sample`` normal patients:
    - *baseline (before)*: what the service did before the index — scan every UKE file's
      header and RE records into a per-process table (once per worker), then parse each
      whole monthly file holding one of the patient's receipts and map those receipts;
      reported as the first request of a fresh worker (scan + read) and a cold request in a
      warm worker (read only);
    - *index (after)*: the service as it is (SQLite lookup, seek to the byte ranges, map);
* **fresh worker, HTTP** — ``fhir-gateway serve --workers 1`` on the indexed hospital: time to
  first byte of the first ``$everything`` (a normal patient) after ``/metadata`` answers, and
  of the same request on a second fresh server with ``_type=Patient`` (the chart without
  receipts: the same-run floor).

Ratios are after/before (lower is better).  Results go to ``var/bench-receipts/result.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_gateway.config import from_args  # noqa: E402
from fhir_gateway.index.receipts import ReceiptIndex  # noqa: E402
from fhir_gateway.services.cache import MappedCache  # noqa: E402
from fhir_gateway.services.claims import ClaimSource  # noqa: E402
from mappers.claim import ClaimContext, map_receipt, mtime_instant  # noqa: E402
from storage.layout import Storage  # noqa: E402
from storage.uke import Receipt, karte_candidates, list_files, match_patient, read_uke_file, \
    scan_receipts, sniff_uke  # noqa: E402

FACILITY = "1310000017"
BIN = Path(sys.executable).parent


def hospital(n: int) -> Path:
    base = ROOT / "var" / "bench-receipts" / str(n)
    if not (base / "ssmix2-receipts").is_dir():
        subprocess.run([str(BIN / "fhir-gateway"), "synth", "--out", str(base / "ssmix2"),
                        "--patients", str(n), "--no-progress"], check=True,
                       stdout=subprocess.DEVNULL)
    return base


class Before:
    """The receipt path before the index: a per-process table of every file's RE records, then
    whole-file parses for the files that hold the patient's receipts."""

    def __init__(self, root: Path, storage: Storage) -> None:
        self.root = root
        self.exists = lambda pid: storage.patient_dir(pid) is not None
        self.table: dict[str, tuple] = {}

    def scan(self) -> None:
        for path, rel, _ in list_files(self.root):
            if not sniff_uke(path):
                continue
            header, res = scan_receipts(path.read_bytes())
            by: dict[str, list[int]] = {}
            for i, r in enumerate(res):
                for c in karte_candidates(Receipt(r).karte_no):
                    by.setdefault(c, []).append(i)
            self.table[str(path)] = (rel, header, [r["karte_no"] for r in res], by)

    def for_patient(self, pid: str) -> list[dict]:
        out = []
        for path, (rel, _, karte, by) in self.table.items():
            mine = [i for i in by.get(pid, ()) if match_patient(karte[i], self.exists) == pid]
            if not mine:
                continue
            uf = read_uke_file(path, rel)  # the whole monthly file
            last = mtime_instant(os.stat(path).st_mtime)
            for i in mine:
                out += map_receipt(uf.receipts[i], ClaimContext(FACILITY, rel, pid, last, uf.ir))
        return out


def claims_of(resources: list[dict]) -> list[str]:
    return sorted(r["id"] for r in resources if r["resourceType"] == "Claim")


def measure(base: Path, sample: int) -> dict:
    receipts = base / "ssmix2-receipts"
    data = base / "data"
    storage = Storage(base / "ssmix2")
    out: dict = {"patients": len(list(storage.patient_ids()))}
    for p in data.glob("receipts/*"):
        p.unlink()
    idx = ReceiptIndex(data, FACILITY, [receipts])
    t = time.perf_counter()
    stats = idx.refresh()
    out["build_s"] = time.perf_counter() - t
    out["files"], out["receipts"] = stats.files, stats.receipts
    t = time.perf_counter()
    idx.refresh()
    out["refresh_unchanged_s"] = time.perf_counter() - t
    idx.close()

    pids = sorted(storage.patient_ids())
    rng = random.Random(17)
    chosen = [p for p in rng.sample(pids, min(len(pids), sample * 2)) if p != "9000000001"][:sample]
    fac = from_args([str(base / "ssmix2")], FACILITY, receipts=[str(receipts)],
                    data_dir=str(data)).facilities[FACILITY]
    exists = lambda pid: storage.patient_dir(pid) is not None  # noqa: E731
    first, warm, after, n_claims = [], [], [], []
    for pid in chosen:
        before = Before(receipts, storage)
        t0 = time.perf_counter()
        before.scan()
        t1 = time.perf_counter()
        old = before.for_patient(pid)
        t2 = time.perf_counter()
        first.append(t2 - t0)
        warm.append(t2 - t1)
        src = ClaimSource(fac, MappedCache(), exists, data)  # a fresh worker's receipt source
        t3 = time.perf_counter()
        part = src.for_patient(pid)
        new, problems = part.resources, part.problems
        after.append(time.perf_counter() - t3)
        assert not problems, problems
        assert claims_of(new) == claims_of(old), pid
        n_claims.append(len(claims_of(new)))
        src.index.close()
    med = statistics.median
    out["sample"] = len(chosen)
    out["claims_per_patient_median"] = med(n_claims)
    out["before_first_request_ms"] = med(first) * 1000
    out["before_cold_request_ms"] = med(warm) * 1000
    out["after_cold_request_ms"] = med(after) * 1000
    out["after_cold_request_p95_ms"] = sorted(after)[int(0.95 * (len(after) - 1))] * 1000
    out["ratio_vs_cold_request"] = med(after) / med(warm)
    out["ratio_vs_first_request"] = med(after) / med(first)
    out["http"] = http_ttfb(base, chosen[0])
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ttfb(base: Path, pid: str, query: str) -> float:
    """A fresh one-worker server; seconds to the first byte of its first chart request."""
    import http.client
    port = _port()
    proc = subprocess.Popen([str(BIN / "fhir-gateway"), "serve", "--storage", str(base / "ssmix2"),
                             "--receipts", str(base / "ssmix2-receipts"), "--facility", FACILITY,
                             "--data-dir", str(base / "data"), "--no-auth", "--workers", "1",
                             "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", f"/fhir/{FACILITY}/metadata")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        t = time.perf_counter()
        c.request("GET", f"/fhir/{FACILITY}/Patient/{pid}/$everything{query}")
        r = c.getresponse()
        r.read(1)
        ttfb = time.perf_counter() - t
        r.read()
        assert r.status == 200, r.status
        return ttfb
    finally:
        proc.terminate()
        proc.wait(10)


def http_ttfb(base: Path, pid: str) -> dict:
    full = [_ttfb(base, pid, "") for _ in range(3)]
    floor = [_ttfb(base, pid, "?_type=Patient") for _ in range(3)]
    return {"everything_ttfb_ms": statistics.median(full) * 1000,
            "patient_only_ttfb_ms": statistics.median(floor) * 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, action="append")
    ap.add_argument("--sample", type=int, default=30)
    args = ap.parse_args()
    results = {}
    for n in args.patients or [500]:
        results[n] = measure(hospital(n), args.sample)
        print(json.dumps({n: results[n]}, indent=1), flush=True)
    out = ROOT / "var" / "bench-receipts" / "result.json"
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
