"""Acceptance probes of ``fhir-gateway check`` from the outside: the installed command, its
JSON on stdout and its exit code, over trees written by ``fhir-gateway synth`` and by hand.

Defaults matter here: a hospital runs the drill without tuning ``--stale-days``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import _msg, _pid_seg, _write, PEOPLE

BIN = Path(sys.executable).parent / "fhir-gateway"
NOPAT = "999999999999999"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=300)


def check(root: Path, tmp_path: Path, *extra: str) -> tuple[int, dict]:
    p = run("check", "--storage", str(root), "--json", "--workers", "2", "--data-dir",
            str(tmp_path / "cache"), *extra)
    return p.returncode, json.loads(p.stdout)


@pytest.fixture(scope="module", params=[None, "2", "3"])
def synth_trees(request, tmp_path_factory):
    """The brief's own commands: 20 patients, default years, clean and messy; the default seed
    and two more (each found a different false positive)."""
    base = tmp_path_factory.mktemp("acc-synth")
    seed = ["--seed", request.param] if request.param else []
    for name, messy in (("clean", []), ("messy", ["--messy", "0.1"])):
        p = run("synth", "--out", str(base / name), "--patients", "20", "--no-progress",
                "--workers", "2", *seed, *messy)
        assert p.returncode == 0, p.stderr
    return base


def test_clean_synth_hospital_passes_with_default_options(synth_trees, tmp_path):
    code, report = check(synth_trees / "clean", tmp_path)
    problems = report["facilities"][0]["problems"]
    assert problems == [], [(p["kind"], p["path"], p["reason"]) for p in problems]
    assert code == 0 and report["verdict"] == "正常"


def test_messy_synth_every_defect_and_nothing_else_with_default_options(synth_trees, tmp_path):
    manifest = json.loads((synth_trees / "messy-messy.json").read_text(encoding="utf-8"))
    assert manifest, "the generator injected nothing"
    code, report = check(synth_trees / "messy", tmp_path)
    got = {(p["path"], p["kind"]) for p in report["facilities"][0]["problems"]}
    want = {(d["path"], d["defect"]) for d in manifest}
    assert want - got == set(), "injected defects missing"
    assert got - want == set(), "problems the generator did not inject"
    assert code == 1


def _lab(root: Path, pid: str, day: str, order: str, flag: str = "1", ts: str | None = None) -> str:
    ts = ts or f"{day}120000000"
    return _write(root, pid, day, "OML-11", order, ts, flag, _msg(
        "OUL^R22^OUL_R22", ts[:14],
        [_pid_seg(pid, PEOPLE[0]), "PV1|0001|O",
         f"SPM|1|{order}||023^血清^JC10|||||||||||||{day}0900",
         f"OBR|1|{order}|{order}|E001^血液学的検査^99O03|||{day}|{day}",
         f"ORC|SC|{order}|{order}||CM||||{day}1200",
         f"OBX|1|NM|3A016000002327102^A/G比^JC10||1.5||1.2-2.0||||F|||{day}0900"]))


def test_bursty_data_type_is_not_stale(tmp_path):
    """Inpatient-only data arrives in bursts (daily during a stay, then nothing for months):
    a long quiet spell that is normal for the type's own history is not a stopped feed."""
    root = tmp_path / "s"
    pid = "0000001000"
    n = 0
    from datetime import date, timedelta
    for start in (date(2020, 5, 1), date(2021, 9, 1), date(2023, 3, 1)):  # three stays
        for k in range(10):
            n += 1
            _lab(root, pid, (start + timedelta(days=k)).strftime("%Y%m%d"), f"{n:015d}")
    d = date(2023, 3, 1)
    while d < date(2024, 12, 1):  # outpatient prescriptions keep arriving weekly
        day = d.strftime("%Y%m%d")
        _write(root, pid, day, "ADT-12", NOPAT, f"{day}090000000", "1", _msg(
            "ADT^A04^ADT_A01", f"{day}090000", ["EVN||" + day, _pid_seg(pid, PEOPLE[0]),
                                                "PV1|0001|O"]))
        d += timedelta(days=7)
    code, report = check(root, tmp_path)
    fresh = {r["data_type"]: r for r in report["facilities"][0]["freshness"]}
    assert not fresh["OML-11"]["stale"], fresh["OML-11"]
    assert [p for p in report["facilities"][0]["problems"] if p["kind"] == "stale-data-type"] == []


def test_current_version_misnamed_is_one_finding(tmp_path):
    """The current file of a record carries another patient's id (misplaced): that file is the
    finding; its superseded sibling is not a second, version-chain error."""
    root = tmp_path / "s"
    pid, other = "0000002000", "0000002001"
    _lab(root, pid, "20240110", "000000000000001", flag="2", ts="20240110120000000")
    good = _lab(root, pid, "20240110", "000000000000001", flag="1", ts="20240111120000000")
    folder = next(root.rglob(good)).parent
    (folder / good).rename(folder / good.replace(pid, other, 1))
    code, report = check(root, tmp_path)
    kinds = sorted(p["kind"] for p in report["facilities"][0]["problems"])
    assert kinds == ["misplaced"], report["facilities"][0]["problems"]
    assert code == 1


def test_everyday_names_and_addresses_are_not_mojibake(tmp_path):
    """阿部 / 都 / 野 / 聡 sit above U+8000 but are everyday (JIS level 1) kanji: a clean message
    full of them is not "implausible Japanese" (a clean synth hospital was reported)."""
    from storage.text import implausible_japanese
    real = "阿部^清^^^^^L^I~アベ^キヨシ 東京都豊島区東池袋６−１６−１４ 呼野^聡 都野部阿"
    assert implausible_japanese(real) == []
    root = tmp_path / "s"
    pid = "0000003000"
    _write(root, pid, "20260209", "ADT-12", NOPAT, "20260209141407847", "1", _msg(
        "ADT^A04^ADT_A01", "20260209141400",
        ["EVN||202602091414", "PID|0001||0000003000^^^^PI||阿部^清^^^^^L^I~アベ^キヨシ^^^^^L^P||"
         "19870829|M|||^^^^170-0013^JPN^H^東京都豊島区東池袋６−１６−１４",
         "PV1|0001|O|05^^^^^C||||D0501^呼野^聡^^^^^^^L^^^^^I|||05"]))
    code, report = check(root, tmp_path)
    assert report["facilities"][0]["problems"] == [] and code == 0


def test_utf8_read_as_shift_jis_is_still_mojibake():
    from storage.text import implausible_japanese
    garbled = "患者 太郎 カンジャ タロウ 静岡県静岡市登呂 内科".encode("utf-8").decode("cp932", "ignore")
    assert implausible_japanese(garbled)


def test_empty_storage_root_is_red(tmp_path):
    """An unmounted mount point is an empty folder: a drill that read nothing proved nothing."""
    root = tmp_path / "mnt"
    root.mkdir()
    code, report = check(root, tmp_path)
    probs = report["facilities"][0]["problems"]
    assert [p["kind"] for p in probs] == ["io-error"] and "no patient" in probs[0]["reason"]
    assert code == 1 and report["verdict"] == "要対応"
