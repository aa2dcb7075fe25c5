"""Bulk export memory is bounded by a file, not by a chart (issue 12 item 3): the synthetic
heavy patient (3,000 files, ~20,000 resources with its receipts) exported through a real
server, mapped in the server's own worker process (one chunk runs inline), must not take that
process anywhere near what its whole chart would (~400 MB when a chart was mapped whole)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import BIN, FACILITY, make_token, process_tree, start_server

HEAVY = "9000000001"
LIMIT_MB = 300  # issue 12: flat < 300 MB whatever the export size
GROWTH_MB = 120  # what the export may add to the process it runs in


def _kb(pid: int, field: str) -> int:
    try:
        m = re.search(rf"^{field}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return 0
    return int(m.group(1)) if m else 0


@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    base = tmp_path_factory.mktemp("heavy-export")
    subprocess.run([str(BIN / "fhir-gateway"), "synth", "--out", str(base / "ssmix2"),
                    "--receipts-out", str(base / "receipts"), "--patients", "0",
                    "--heavy-patient", "--seed", "17", "--years", "10", "--facility", FACILITY,
                    "--no-progress"], check=True, capture_output=True)
    cfg = base / "gateway.toml"
    cfg.write_text(f'data_dir = "{base / "data"}"\n\n[[facility]]\ncode = "{FACILITY}"\n'
                   f'storage = ["{base / "ssmix2"}"]\nreceipts = ["{base / "receipts"}"]\n\n'
                   '[export]\nprocesses = 1\n', encoding="utf-8")
    s = start_server(["--config", str(cfg)], token=make_token(base / "data"), workers=1)
    yield s
    s.stop()


def test_heavy_patient_export_memory_is_bounded(heavy):
    s = heavy
    h = {**s.headers, "Prefer": "respond-async"}
    requests.get(f"{s.base}/Patient/{HEAVY}", headers=s.headers).raise_for_status()
    before = {p: _kb(p, "VmRSS") for p in process_tree(s.proc.pid)}
    r = requests.get(f"{s.base}/$export", headers=h)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 600
    while True:
        done = requests.get(r.headers["Content-Location"], headers=s.headers)
        if done.status_code != 202:
            break
        assert time.monotonic() < deadline, "export did not finish"
        time.sleep(0.5)
    assert done.status_code == 200, done.text
    m = done.json()
    counts = {o["type"]: o["count"] for o in m["output"]}
    assert sum(counts.values()) > 15_000 and counts.get("Claim") and counts.get("Encounter")
    assert counts.get("Patient") == 1
    peaks = {p: _kb(p, "VmHWM") / 1024 for p in process_tree(s.proc.pid)}
    assert peaks and max(peaks.values()) < LIMIT_MB, peaks
    worker = max(before, key=lambda p: peaks.get(p, 0))
    assert peaks[worker] - before[worker] / 1024 < GROWTH_MB, (peaks, before)
