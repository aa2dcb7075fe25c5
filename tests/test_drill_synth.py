"""The drill against the synthetic hospital: every defect the generator injected (its manifest)
is reported with its kind, and nothing else; a clean hospital is healthy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_gateway.cli import main

# Freshness is judged against the tree's own rhythm; a 30-patient hospital has sparse data types
# that can legitimately look "stopped", which is a statistical finding, not an injected defect.
NO_STALE = ("--stale-days", "100000")


def _synth(out: Path, messy: float) -> None:
    args = ["synth", "--out", str(out), "--patients", "30", "--years", "2", "--seed", "7",
            "--no-progress", "--workers", "1"]
    if messy:
        args += ["--messy", str(messy)]
    assert main(args) == 0


def _check(root: Path, tmp_path: Path, capsys) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["check", "--storage", str(root), "--json", "--workers", "2", "--data-dir",
                 str(tmp_path / "data"), *NO_STALE])
    return code, json.loads(capsys.readouterr().out)


def test_messy_hospital_every_defect_and_nothing_else(tmp_path: Path, capsys) -> None:
    root = tmp_path / "hosp"
    _synth(root, 0.1)
    manifest = json.loads((tmp_path / "hosp-messy.json").read_text(encoding="utf-8"))
    if not manifest:
        pytest.skip("the generator injected no defects")
    code, report = _check(root, tmp_path, capsys)
    fac = report["facilities"][0]
    expected = {(d["path"], d["defect"]) for d in manifest}
    got = {(p["path"], p["kind"]) for p in fac["problems"]}
    assert expected - got == set(), "injected defects missing from the report"
    assert got - expected == set(), "problems reported on files the generator left clean"
    assert fac["unmapped_content"] == {}  # audit mode: every field read or explained
    assert code == 1 and not report["healthy"]
    by_path = {p["path"]: p for p in fac["problems"]}
    assert all(by_path[d["path"]]["reason"] for d in manifest)


def test_clean_hospital_is_healthy(tmp_path: Path, capsys) -> None:
    root = tmp_path / "hosp"
    _synth(root, 0)
    code, report = _check(root, tmp_path, capsys)
    fac = report["facilities"][0]
    assert fac["problems"] == [] and code == 0 and report["verdict"] == "正常"
    assert fac["patients"] == 30 and fac["files"] > 100
    assert fac["unmapped_data_types"] == [] and fac["unmapped_content"] == {}
