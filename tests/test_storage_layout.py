"""Layout, file names, condition flags, version chains, short ids and misplaced files."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.layout import Storage, UnsafePath
from storage.names import DATA_TYPES, BadFileName, FileName, parse_name
from treebuilder import adt00, write

SAMPLE_TREE = (Path(__file__).resolve().parents[2] / "shared" / "samples" / "ssmix2"
               / "nhoHQ__SSMIX2DataTestingTool" / "sampleData")


def test_all_26_standard_data_types_with_events() -> None:
    assert len(DATA_TYPES) == 26
    assert DATA_TYPES["OMP-01"].accepts("RDE", "O11")
    assert DATA_TYPES["OML-11"].accepts("OUL", "R22")
    assert DATA_TYPES["PPR-01"].accepts("PPR", "ZD1")
    assert DATA_TYPES["ADT-22"].is_cancel("ADT", "A11")
    assert DATA_TYPES["ADT-00"].is_cancel("ADT", "A23") and not DATA_TYPES["ADT-00"].is_cancel("ADT", "A08")
    assert {d.code for d in DATA_TYPES.values() if d.dateless} == {"ADT-00", "ADT-01", "ADT-61", "PPR-01"}


def test_name_split_from_both_ends() -> None:
    n = parse_name("9999013_20111220_OML-11_000000011000354_20111220103059000_01_1")
    assert (n.patient_id, n.date, n.data_type, n.order_no, n.timestamp, n.department, n.flag) == (
        "9999013", "20111220", "OML-11", "000000011000354", "20111220103059000", "01", "1")
    assert n.name == "9999013_20111220_OML-11_000000011000354_20111220103059000_01_1"
    ext = parse_name("0123456789_20160101_L-OBS^X_Y^99ZL01_000000020160101_201601011500321_-_1",
                     standard=False)
    assert ext.data_type == "L-OBS^X_Y^99ZL01"


@pytest.mark.parametrize("bad,reason", [
    ("9999013_-_ADT-00_999999999999999_20111220224447339_-", "7 required"),
    ("9999013_2011122_OMP-01_1_20111220224447339_01_1", "date part"),
    ("9999013_20111220_OMP-99_1_20111220224447339_01_1", "data type"),
    ("9999013_20111220_OMP-01_1_2011_01_1", "timestamp"),
    ("9999013_20111220_OMP-01_1_20111220224447339_01_3", "condition flag"),
    ("../x_20111220_OMP-01_1_20111220224447339_01_1", "patient id"),
    ("9999013_20111220_OMP-01_1_20111220224447339_01_1.hl7", "condition flag"),
])
def test_names_that_break_the_rule(bad: str, reason: str) -> None:
    with pytest.raises(BadFileName, match=reason):
        parse_name(bad)


def test_version_chain_current_history_deleted(tmp_path: Path) -> None:
    key = ("1234567890", "20240105", "OMP-01", "000000000000123")
    for ts, flag in (("20240105100000000", "2"), ("20240105110000000", "2"), ("20240105120000000", "1")):
        write(tmp_path, FileName(*key, ts, "01", flag), "x")
    for ts, flag in (("20240105100000000", "0"), ("20240105130000000", "0")):
        write(tmp_path, FileName("1234567890", "20240105", "OMP-01", "000000000000999", ts, "01", flag), "x")
    recs, rejects = Storage(tmp_path).records("1234567890")
    assert not rejects and len(recs) == 2
    live = next(r for r in recs.values() if r.key.order_no.endswith("123"))
    assert live.current.name.timestamp == "20240105120000000"
    assert [v.name.flag for v in live.history] == ["2", "2", "1"]
    assert not live.deleted
    gone = next(r for r in recs.values() if r.key.order_no.endswith("999"))
    assert gone.current is None and gone.deleted


def test_two_current_versions_pick_newest(tmp_path: Path) -> None:
    for ts in ("20240105100000000", "20240105120000000"):
        write(tmp_path, FileName("1234567890", "-", "ADT-00", "999999999999999", ts, "-", "1"), "x")
    (rec,), _ = Storage(tmp_path).records("1234567890")[0].values(), None
    assert len(rec.currents) == 2 and rec.current.name.timestamp == "20240105120000000"


def test_patient_folder_computed_not_walked(tmp_path: Path) -> None:
    name, text = adt00("0123456789")
    write(tmp_path, name, text)
    st = Storage(tmp_path)
    assert st.patient_dir("0123456789") == tmp_path / "012" / "345" / "0123456789"
    assert st.patient_dir("0123456780") is None
    assert list(st.patient_ids()) == ["0123456789"]
    assert st.dates("0123456789") == ["-"] and st.data_types("0123456789", "-") == ["ADT-00"]


@pytest.mark.parametrize("pid,folder", [
    ("12345", ("123", "45")),         # plain slicing
    ("12345", ("012", "345")),        # zero-padded to 6
    ("123", ("123", "___")),          # padded with '_'
    ("12", ("12",)),                  # directly below level 1
])
def test_short_ids_accept_both_plausible_layouts(tmp_path: Path, pid: str, folder: tuple) -> None:
    name, text = adt00(pid)
    write(tmp_path, name, text, folder=folder + (pid, "-", "ADT-00"))
    st = Storage(tmp_path)
    assert st.patient_dir(pid) == tmp_path.joinpath(*folder, pid)
    files = list(st.files(pid))
    assert len(files) == 1 and files[0].usable, files
    assert pid in set(st.patient_ids())


def test_misplaced_files_are_reported_not_attributed(tmp_path: Path) -> None:
    name, text = adt00("9999013")
    write(tmp_path, name, text, folder=("000", "000", "0000001", "-", "ADT-00"))
    other = FileName("0000001", "20240101", "OMP-01", "1", "20240101000000000", "01", "1")
    write(tmp_path, other, "x", folder=("000", "000", "0000001", "20240102", "OMP-01"))
    files = list(Storage(tmp_path).files("0000001"))
    assert len(files) == 2 and all(f.misplaced for f in files)
    assert any("patient 9999013" in f.misplaced for f in files)
    assert any("date 20240101" in f.misplaced for f in files)
    recs, rejects = Storage(tmp_path).records("0000001")
    assert recs == {} and len(rejects) == 2


@pytest.mark.parametrize("bad", ["../etc", "a/../../b", "/abs", "", "a\x00b", "a//b"])
def test_no_path_escapes_the_root(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafePath):
        Storage(tmp_path).resolve(bad)


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "", "x" * 40])
def test_patient_ids_validated_before_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafePath):
        Storage(tmp_path).patient_dir(bad)


def test_guideline_sample_tree() -> None:
    if not SAMPLE_TREE.exists():
        pytest.skip(f"public samples not found at {SAMPLE_TREE}")
    st = Storage(SAMPLE_TREE)
    assert set(st.patient_ids()) == {"9999013", "0000001"}
    recs, rejects = st.records("9999013")
    assert len(rejects) == 0 and len(recs) == 19
    recs, rejects = st.records("0000001")
    assert len(rejects) == 1 and "patient 9999013" in rejects[0].misplaced
    assert sum(1 for r in recs.values() if r.deleted) == 1
