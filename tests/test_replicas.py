"""Replica comparison (East/West manifests) and the hash cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fhir_gateway.cli import main
from fhir_gateway.drill.manifest import compare
from test_drill import add, clean_tree


def _replicas(tmp_path: Path) -> tuple[Path, Path, dict]:
    east, west = tmp_path / "east", tmp_path / "west"
    paths = clean_tree(east)
    shutil.copytree(east, west)
    (west / paths[1]).unlink()  # missing on the mirror
    data = (west / paths[2]).read_bytes()
    (west / paths[2]).write_bytes(data.replace(b"7.2", b"9.9") if b"7.2" in data else data + b"X")
    (west / paths[3]).write_bytes((west / paths[3]).read_bytes() + b"\r")  # size differs
    extra = add(west, "2000003", "OMP-01", "20240405", "300000000000001", "20240405100000000")
    newest = add(east, "2000003", "OMP-01", "20240420", "300000000000002", "20240420100000000")
    return east, west, {"only_primary": {paths[1], newest}, "only_mirror": {extra},
                        "differ": {paths[2], paths[3]}}


def test_compare_finds_known_differences(tmp_path: Path) -> None:
    east, west, exp = _replicas(tmp_path)
    res = compare([east, west], tmp_path / "cache")
    pair = res["pairs"][0]
    for cat in ("only_primary", "only_mirror", "differ"):
        assert set(pair[cat]) == exp[cat], cat
    assert pair["counts"]["same"] == pair["files_primary"] - 4
    assert pair["lag_days"] == 15.0  # newest 発生日時: 04-20 on the primary, 04-05 on the mirror
    kinds = {(p["path"], p["kind"]) for p in res["problems"]}
    assert {k for _, k in kinds} == {"replica-missing", "replica-differs", "replica-lag"}


def test_second_run_hashes_nothing(tmp_path: Path) -> None:
    east, west, _ = _replicas(tmp_path)
    first = compare([east, west], tmp_path / "cache")
    assert first["hashed_files"] > 0 and first["cache_hits"] == 0
    second = compare([east, west], tmp_path / "cache")
    assert second["hashed_files"] == 0
    assert second["cache_hits"] == first["hashed_files"]
    assert second["pairs"] == first["pairs"]
    # a file rewritten on one side is hashed again (its mtime/size changed), and only it
    target = next(p for p in west.rglob("*OML-11*_1") if p.is_file())
    target.write_bytes(target.read_bytes() + b"\r")
    third = compare([east, west], tmp_path / "cache")
    assert third["hashed_files"] == 0  # size differs now: no hash needed to tell them apart
    assert target.relative_to(west).as_posix() in third["pairs"][0]["differ"]


def test_identical_replicas_and_missing_mirror(tmp_path: Path) -> None:
    east = tmp_path / "east"
    clean_tree(east)
    shutil.copytree(east, tmp_path / "west")
    res = compare([east, tmp_path / "west"], tmp_path / "cache")
    assert res["problems"] == [] and res["pairs"][0]["counts"]["same"] == 21
    gone = compare([east, tmp_path / "nowhere"], tmp_path / "cache")
    assert [p["kind"] for p in gone["problems"]] == ["replica-unreadable"]


def test_check_command_with_two_roots(tmp_path: Path, capsys) -> None:
    east, west, exp = _replicas(tmp_path)
    code = main(["check", "--workers", "1", "--json", "--storage", str(east), "--storage", str(west),
                 "--data-dir", str(tmp_path / "d")])
    report = json.loads(capsys.readouterr().out)
    fac = report["facilities"][0]
    assert code == 1
    assert fac["replicas"]["hashed_files"] > 0
    missing = {p["path"] for p in fac["problems"] if p["kind"] == "replica-missing"}
    assert missing == exp["only_primary"] | exp["only_mirror"]
    main(["check", "--workers", "1", "--json", "--storage", str(east), "--storage", str(west),
          "--data-dir", str(tmp_path / "d")])
    again = json.loads(capsys.readouterr().out)["facilities"][0]["replicas"]
    assert again["hashed_files"] == 0 and again["cache_hits"] > 0
