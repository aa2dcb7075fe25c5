"""Drill (``fhir-gateway check``) on small hand-built trees: every injected defect is reported
with its kind, and clean files produce nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fhir_gateway.cli import main
from storage.encoding import encode_iso2022jp
from storage.names import FileName
from treebuilder import message, write

PATIENTS = ("1000001", "1000002", "2000003")


def _body(dtype: str, date: str, order: str) -> tuple[str, list[str]]:
    pid = ["PID|0001||{pid}^^^^PI||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19480405|M"]
    if dtype == "ADT-00":
        return "ADT^A08^ADT_A01", ["EVN||20240105093000"] + pid + ["PV1|0001|O"]
    if dtype == "OMP-01":
        return "RDE^O11^RDE_O11", pid + [
            "PV1|0001|O|01^^^^^C",
            f"ORC|NW|{order}||1|||||{date}103045",
            "RXE||108665201^ダーゼン錠（５mg)^HOT9|1||TAB^錠^MR9P|||||15|TAB^錠^MR9P",
            "TQ1|1||1013044400000000&内服・経口・１日３回朝昼夕食後&JAMISDP01|||5^d",
            "RXR|PO^口^HL70162",
        ]
    if dtype == "OML-11":
        return "OUL^R22^OUL_R22", pid + [
            "PV1|0001|O|01^^^^^C",
            f"SPM|1|000000001219001||023^血清^JC10|||||||||||||{date}1500",
            f"OBR|1|{order}|000000001219001|E001^血液学的検査^99O03|||{date}",
            f"ORC|SC|{order}|000000001219001||CM",
            f"OBX|1|NM|3A010000002327101^総蛋白^JC10||7.2|g/dl^g/dl^99XYZ|6.70-8.3||||F|||{date}1500",
        ]
    raise KeyError(dtype)


def add(root: Path, pid: str, dtype: str, date: str, order: str, ts: str, flag: str = "1",
        dept: str = "01", text: str | None = None, raw: bytes | None = None,
        folder: tuple[str, ...] | None = None) -> str:
    """Write one well-formed message; returns its storage-relative path."""
    name = FileName(pid, date, dtype, order, ts, dept, flag)
    if text is None and raw is None:
        mtype, body = _body(dtype, date if date != "-" else ts[:8], order)
        text = message(mtype, body, ts[:14], pid)
    p = write(root, name, text, raw, folder)
    return p.relative_to(root).as_posix()


def clean_tree(root: Path) -> list[str]:
    paths = []
    for i, pid in enumerate(PATIENTS):
        paths.append(add(root, pid, "ADT-00", "-", "999999999999999", f"2024010509300{i}000"))
        for m, day in (("01", "10"), ("02", "14"), ("03", "03")):
            date = f"2024{m}{day}"
            order = f"0000000110{i}{m}{day}"
            paths.append(add(root, pid, "OMP-01", date, order, f"{date}1030450{i}0"))
            paths.append(add(root, pid, "OML-11", date, order, f"{date}1500000{i}0"))
    return paths


def run_check(*args: str, capsys=None) -> tuple[int, dict]:
    code = main(["check", "--workers", "1", "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def found(report: dict) -> set[tuple[str, str]]:
    return {(p["path"], p["kind"]) for f in report["facilities"] for p in f["problems"]}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "east"
    clean_tree(root)
    return root


def test_clean_tree_is_healthy(tree: Path, tmp_path: Path, capsys) -> None:
    code, report = run_check("--storage", str(tree), "--data-dir", str(tmp_path / "d"),
                             capsys=capsys)
    fac = report["facilities"][0]
    assert fac["problems"] == []
    assert code == 0 and report["healthy"] and report["verdict"] == "正常"
    assert fac["patients"] == 3 and fac["files"] == 21
    assert fac["counts"]["OMP-01"] == {"total": 9, "months": {"2024-01": 3, "2024-02": 3,
                                                             "2024-03": 3}}
    assert fac["counts"]["ADT-00"]["months"] == {"2024-01": 3}  # '-' folder: month of 発生日時
    assert fac["unmapped_data_types"] == []
    assert {f["data_type"] for f in fac["freshness"]} == {"ADT-00", "OMP-01", "OML-11"}
    assert all(len(d) == 4 and d[3] == "ok" for d in fac["digests"])


def _last(root: Path, order: str) -> str:
    return next(p.relative_to(root).as_posix() for p in root.rglob(f"*_{order}_*"))


def _inject(root: Path) -> set[tuple[str, str]]:
    """Write one file (or folder) per defect; return the (path, kind) each must produce."""
    pid, pdir = "1000001", "100/000/1000001"
    exp: set[tuple[str, str]] = set()

    def raw(kind: str, data: bytes, order: str, date: str = "20240310") -> None:
        exp.add((add(root, pid, "OMP-01", date, order, f"{date}120000000", raw=data), kind))

    raw("zero-bytes", b"", "900000000000001")
    raw("binary", b"MSH|^~\\&|\x00\x01\x02garbage", "900000000000002")
    raw("not-hl7", "これはHL7ではありません\r".encode("utf-8"), "900000000000003")
    good = message(*_body("OMP-01", "20240310", "900000000000004"), "20240310120000", pid)
    raw("truncated", encode_iso2022jp(good)[:-60].rstrip(b"\r"), "900000000000004")
    sjis = message(*_body("OMP-01", "20240310", "900000000000005"), "20240310120000", pid)
    raw("wrong-encoding", sjis.encode("cp932"), "900000000000005")
    lf = message(*_body("OMP-01", "20240310", "900000000000006"), "20240310120000", pid)
    raw("line-endings", encode_iso2022jp(lf.replace("\r", "\n")), "900000000000006")
    kana = message(*_body("OMP-01", "20240310", "900000000000007"), "20240310120000", pid)
    data = encode_iso2022jp(kana.replace("ダーゼン錠", "KANA")).replace(b"KANA", b"\x1b(I\x40\x5e\x30\x1b(B")
    raw("mojibake", data, "900000000000007")  # half-width kana via ESC ( I
    exp.add((_last(root, "900000000000007"), "nonstandard-characters"))
    adt = message(*_body("ADT-00", "20240310", "x"), "20240310120000", pid)
    raw("type-mismatch", encode_iso2022jp(adt), "900000000000008")
    no_name = message(*_body("OMP-01", "20240310", "900000000000009"), "20240310120000", pid)
    raw("required-field", encode_iso2022jp(no_name.replace("^^^^PI||患者^太郎^^^^^L^I~カンジャ^タロウ"
                                                          "^^^^^L^P|", "^^^^PI|||")), "900000000000009")
    order = message(*_body("OMP-01", "20240310", "900000000000010"), "20240310120000", pid)
    segs = order.rstrip("\r").split("\r")
    segs[-1], segs[-2] = segs[-2], segs[-1]  # RXR before TQ1
    raw("structure", encode_iso2022jp("\r".join(segs) + "\r"), "900000000000010")
    # names and folders
    d = root / pdir / "20240310" / "OMP-01"
    (d / "not_a_valid_name").write_bytes(b"x")
    exp.add((f"{pdir}/20240310/OMP-01/not_a_valid_name", "bad-name"))
    exp.add((add(root, pid, "OMP-01", "20240311", "900000000000011", "20240311120000000",
                 folder=("100", "000", pid, "20240312", "OMP-01")), "misplaced"))
    (root / "stray.txt").write_text("x")
    exp.add(("stray.txt", "misplaced"))
    (root / "100" / "000" / "notes.txt").write_text("x")
    exp.add(("100/000/notes.txt", "misplaced"))
    (root / pdir / "readme").write_text("x")
    exp.add((f"{pdir}/readme", "misplaced"))
    (root / pdir / "backup").mkdir()
    exp.add((f"{pdir}/backup", "misplaced"))
    (root / pdir / "20240310" / "XYZ-99").mkdir()
    exp.add((f"{pdir}/20240310/XYZ-99", "misplaced"))
    # version chains
    a = add(root, pid, "OML-11", "20240320", "800000000000001", "20240320100000000")
    b = add(root, pid, "OML-11", "20240320", "800000000000001", "20240320110000000")
    exp.add((b, "version-chain"))  # two current files
    del a
    c = add(root, pid, "OML-11", "20240321", "800000000000002", "20240321100000000", flag="2")
    exp.add((c, "version-chain"))  # superseded without a current
    add(root, pid, "OML-11", "20240322", "800000000000003", "20240322100000000", flag="0")
    e = add(root, pid, "OML-11", "20240322", "800000000000003", "20240322120000000")
    exp.add((e, "version-chain"))  # deleted, then re-created
    return exp


def test_every_injected_defect_and_nothing_else(tree: Path, tmp_path: Path, capsys) -> None:
    expected = _inject(tree)
    code, report = run_check("--storage", str(tree), "--data-dir", str(tmp_path / "d"),
                             capsys=capsys)
    got = found(report)
    assert expected - got == set(), "defects not reported"
    assert got - expected == set(), "problems reported that were not injected"
    assert code == 1 and report["verdict"] == "要対応"
    for p in report["facilities"][0]["problems"]:
        assert p["reason"] and p["severity"] in ("error", "warning")


def test_parallel_equals_serial(tree: Path, tmp_path: Path, capsys) -> None:
    _inject(tree)
    _, serial = run_check("--storage", str(tree), "--data-dir", str(tmp_path / "d"), capsys=capsys)
    main(["check", "--workers", "2", "--json", "--storage", str(tree), "--data-dir",
          str(tmp_path / "d")])
    parallel = json.loads(capsys.readouterr().out)
    assert found(parallel) == found(serial)
    s, p = serial["facilities"][0], parallel["facilities"][0]
    assert s["counts"] == p["counts"] and sorted(s["digests"]) == sorted(p["digests"])


def test_previous_report_diff(tree: Path, tmp_path: Path, capsys) -> None:
    _, first = run_check("--storage", str(tree), "--data-dir", str(tmp_path / "d"), capsys=capsys)
    prev = tmp_path / "prev.json"
    prev.write_text(json.dumps(first))
    paths = sorted(d[0] for d in first["facilities"][0]["digests"])
    gone, broken = paths[0], paths[1]
    original = (tree / broken).read_bytes()
    (tree / gone).unlink()
    (tree / broken).write_bytes(b"")
    new = add(tree, "1000002", "OMP-01", "20240401", "700000000000001", "20240401100000000")
    code, second = run_check("--storage", str(tree), "--previous", str(prev), "--data-dir",
                             str(tmp_path / "d"), capsys=capsys)
    diff = second["facilities"][0]["diff"]
    assert diff["paths"]["appeared"] == [new]
    assert diff["paths"]["disappeared"] == [gone]
    assert diff["paths"]["newly_failing"] == [broken]
    assert diff["paths"]["changed"] == [broken]
    assert diff["counts"]["fixed"] == 0
    # and back: the broken file repaired shows up as fixed
    prev.write_text(json.dumps(second))
    (tree / broken).write_bytes(original)
    _, third = run_check("--storage", str(tree), "--previous", str(prev), "--data-dir",
                         str(tmp_path / "d"), capsys=capsys)
    assert third["facilities"][0]["diff"]["paths"]["fixed"] == [broken]


def test_since_limits_per_file_checks_but_not_counts(tree: Path, tmp_path: Path, capsys) -> None:
    old = add(tree, "1000001", "OMP-01", "20240105", "600000000000001", "20240105100000000", raw=b"")
    new = add(tree, "1000001", "OMP-01", "20240305", "600000000000002", "20240305100000000", raw=b"")
    code, report = run_check("--storage", str(tree), "--since", "2024-03-01", "--data-dir",
                             str(tmp_path / "d"), capsys=capsys)
    fac = report["facilities"][0]
    assert found(report) == {(new, "zero-bytes")}
    assert fac["counts"]["OMP-01"]["total"] == 11
    status = {d[0]: d[3] for d in fac["digests"]}
    assert status[old] == "unchecked" and status[new] == "error"


def test_stale_data_type(tmp_path: Path, capsys) -> None:
    root = tmp_path / "s"
    for week in range(12):  # OML-11 weekly until mid-March, then nothing
        day = 1 + week * 7
        date = f"2024{(day - 1) // 28 + 1:02d}{(day - 1) % 28 + 1:02d}"
        add(root, "1000001", "OML-11", date, f"50000000000{week:04d}", f"{date}100000000")
    for m in range(1, 7):  # OMP-01 keeps arriving until June
        for d in (1, 10, 20):
            date = f"2024{m:02d}{d:02d}"
            add(root, "1000001", "OMP-01", date, f"4000000{m:02d}{d:02d}0000", f"{date}100000000")
    code, report = run_check("--storage", str(root), "--data-dir", str(tmp_path / "d"),
                             capsys=capsys)
    assert found(report) == {("OML-11", "stale-data-type")}
    assert code == 0  # a warning: the storage is still readable
    fresh = {r["data_type"]: r for r in report["facilities"][0]["freshness"]}
    assert fresh["OML-11"]["stale"] and not fresh["OMP-01"]["stale"]


def test_html_report_is_self_contained(tree: Path, tmp_path: Path) -> None:
    _inject(tree)
    html = tmp_path / "r.html"
    code = main(["check", "--workers", "1", "--storage", str(tree), "--html", str(html),
                 "--data-dir", str(tmp_path / "d")])
    text = html.read_text(encoding="utf-8")
    assert code == 1
    assert "要対応" in text and "action required" in text
    assert "版管理" in text and "version chain" in text and "データ種別・月別件数" in text
    assert "<script" not in text and "http://" not in text and "https://" not in text


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert main(["check"]) == 2
    assert main(["check", "--storage", str(tmp_path), "--since", "yesterday"]) == 2
    assert main(["check", "--storage", str(tmp_path), "--previous", str(tmp_path / "none.json")]) == 2


def test_missing_root_is_a_finding(tmp_path: Path, capsys) -> None:
    code, report = run_check("--storage", str(tmp_path / "nowhere"), "--data-dir",
                             str(tmp_path / "d"), capsys=capsys)
    assert code == 1 and {p["kind"] for p in report["facilities"][0]["problems"]} == {"io-error"}


def test_cli_json_stdout_is_one_document(tree: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "fhir_gateway", "check", "--storage", str(tree),
                           "--json", "--data-dir", str(tmp_path / "d")],
                          capture_output=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["healthy"] is True
    assert proc.stderr == b""  # not a terminal: no progress output


SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "receipt"


def test_receipts_parse_and_link(tmp_path: Path, capsys) -> None:
    uke_dir = SAMPLES / "sosuke-hirayama__uke-parser" / "uke"
    if not uke_dir.is_dir():
        pytest.skip(f"public UKE samples not found at {uke_dir}")
    from fhir_gateway.drill.receipts import check_receipts
    from storage import uke

    first = next(uke.iter_uke_files(uke_dir))
    karte = uke.read_uke_file(first).receipts[0].karte_no
    pid = uke.karte_candidates(karte)[0]
    res = check_receipts([uke_dir], {pid})
    assert res["files"] == 12 and res["receipts"] > 100
    assert res["linked"] >= 1 and res["linked"] + len(res["unlinked"]) == res["receipts"]
    assert {p["kind"] for p in res["problems"]} == {"receipt-unlinked"}
    # a GO total that disagrees is reported
    broken = tmp_path / "uke"
    broken.mkdir()
    data = first.read_bytes()
    lines = data.split(b"\n")
    go = next(i for i, ln in enumerate(lines) if ln.startswith(b"GO,"))
    parts = lines[go].split(b",")
    parts[2] = b"1"  # 総合計点数
    lines[go] = b",".join(parts)
    (broken / "bad.csv").write_bytes(b"\n".join(lines))
    res = check_receipts([broken], set())
    assert "receipt-total" in {p["kind"] for p in res["problems"]}
