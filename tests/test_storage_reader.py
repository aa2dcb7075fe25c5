"""Every defect class yields a precise problem, and good files read without any."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.encoding import encode_iso2022jp
from storage.layout import Storage
from storage.names import FileName
from storage.reader import (
    ERROR, KIND_BINARY, KIND_EMPTY, KIND_ENCODING, KIND_LINE_ENDINGS, KIND_MISPLACED, KIND_NAME,
    KIND_NONSTANDARD, KIND_NOT_HL7, KIND_TRUNCATED, KIND_TYPE, WARNING, read_bytes, read_file,
)
from treebuilder import ADT00_BODY, adt00, message, write

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "ssmix2"
TEXT = message("ADT^A08^ADT_A01", ADT00_BODY)
NAME = FileName("9999013", "-", "ADT-00", "999999999999999", "20111220224447339", "-", "1")


def kinds(res) -> set[tuple[str, str]]:
    return {(p.kind, p.severity) for p in res.problems}


def test_clean_guideline_style_file() -> None:
    res = read_bytes(encode_iso2022jp(TEXT) + b"\x1c", "x", NAME)
    assert res.ok and res.problems == [] and res.codec == "iso-2022-jp"
    assert res.message.value("PID.5.1") == "患者"


def test_leading_vt_and_trailing_fs_framing() -> None:
    res = read_bytes(b"\x0b" + encode_iso2022jp(TEXT) + b"\x1c\r", "x", NAME)
    assert res.ok and res.problems == []


def test_shift_jis_file_claiming_ir87_is_read_and_reported() -> None:
    res = read_bytes(TEXT.encode("cp932"), "x", NAME)
    assert res.ok and res.message.value("PID.5.1") == "患者"
    assert (KIND_ENCODING, WARNING) in kinds(res)
    assert "ISO IR87" in next(p.reason for p in res.problems if p.kind == KIND_ENCODING)


@pytest.mark.parametrize("codec", ["utf-8", "euc_jp"])
def test_other_encodings_reported(codec: str) -> None:
    res = read_bytes(TEXT.replace("\uff0d", "-").encode(codec), "x", NAME)
    assert res.ok and (KIND_ENCODING, WARNING) in kinds(res)


def test_cp932_only_characters_in_iso2022jp() -> None:
    res = read_bytes(encode_iso2022jp(TEXT.replace("太郎", "髙①")) + b"\x1c", "x", NAME)
    assert res.ok and res.message.value("PID.5.2") == "髙①"
    assert kinds(res) == {(KIND_NONSTANDARD, WARNING)}


def test_lf_separators() -> None:
    res = read_bytes(encode_iso2022jp(TEXT.replace("\r", "\n")), "x", NAME)
    assert res.ok and res.message.segment_ids == ["MSH", "EVN", "PID"]
    assert (KIND_LINE_ENDINGS, WARNING) in kinds(res)


def test_zero_byte_file() -> None:
    res = read_bytes(b"", "x", NAME)
    assert not res.ok and kinds(res) == {(KIND_EMPTY, ERROR)}


def test_binary_file() -> None:
    res = read_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "x", NAME)
    assert not res.ok and kinds(res) == {(KIND_BINARY, ERROR)}
    assert res.problems[0].offset is not None


def test_not_hl7_text() -> None:
    res = read_bytes("これはHL7ではありません".encode("utf-8"), "x", NAME)
    assert not res.ok and kinds(res) == {(KIND_NOT_HL7, ERROR)}


def test_truncated_inside_japanese_text() -> None:
    raw = encode_iso2022jp(TEXT)
    cut = raw[: raw.index("太郎".encode("iso2022_jp")[3:5]) + 1]
    res = read_bytes(cut, "x", NAME)
    assert not res.ok and (KIND_TRUNCATED, ERROR) in kinds(res)


def test_truncated_before_required_segments() -> None:
    raw = encode_iso2022jp(TEXT)
    res = read_bytes(raw[: raw.index(b"EVN") + 8], "x", NAME)
    assert not res.ok and (KIND_TRUNCATED, ERROR) in kinds(res)
    assert "PID" in res.problems[0].reason


def test_missing_terminator_alone_is_no_problem() -> None:
    """A file without the CR after its last segment is complete (issue 10 item 5)."""
    res = read_bytes(encode_iso2022jp(TEXT.rstrip("\r")), "x", NAME)
    assert res.ok and res.problems == []


def test_cut_mid_segment_is_an_error_but_keeps_what_was_written() -> None:
    """An OBX that stops before fields every earlier OBX has: truncated (error), message kept."""
    from tests import jahis_fixtures as J
    from storage.names import parse_name

    text = J.OML11_ORU.replace("\rSPM|1|||019^全血^JC10|||||||||||||201608250900\r", "\r")
    text = text.rstrip("\r")
    cut = text[: text.rindex("|15.8-34.8")]  # the last OBX loses OBX-7 .. OBX-11
    res = read_bytes(encode_iso2022jp(cut), "x", parse_name(J.OML11_NAME))
    assert res.ok and (KIND_TRUNCATED, ERROR) in kinds(res)
    assert any(p.kind == KIND_TRUNCATED and "OBX" in p.reason for p in res.problems)
    whole = read_bytes(encode_iso2022jp(text), "x", parse_name(J.OML11_NAME))
    assert whole.ok and KIND_TRUNCATED not in {p.kind for p in whole.problems}


def test_message_type_must_match_data_type() -> None:
    name = FileName("9999013", "20240101", "OMP-01", "1", "20240101000000000", "01", "1")
    res = read_bytes(encode_iso2022jp(TEXT), "x", name)
    assert not res.ok and (KIND_TYPE, ERROR) in kinds(res)


def test_bad_name_and_misplaced_via_storage(tmp_path: Path) -> None:
    name, text = adt00("9999013")
    write(tmp_path, name, text)
    folder = tmp_path / "999" / "901" / "9999013" / "-" / "ADT-00"
    (folder / "not_an_ssmix2_name").write_bytes(b"MSH|^~\\&|x\r")
    wrong = FileName("1111111", "-", "ADT-00", "999999999999999", "20240101000000000", "-", "1")
    write(tmp_path, wrong, text, folder=("999", "901", "9999013", "-", "ADT-00"))
    st = Storage(tmp_path)
    results = {Path(f.relpath).name: read_file(st, f) for f in st.files("9999013")}
    assert results[name.name].ok and results[name.name].problems == []
    assert kinds(results["not_an_ssmix2_name"]) == {(KIND_NAME, ERROR)}
    assert kinds(results[wrong.name]) == {(KIND_MISPLACED, ERROR)}


def test_superseded_and_deleted_files_still_read(tmp_path: Path) -> None:
    name, text = adt00("9999013", flag="2")
    write(tmp_path, name, text)
    name0, _ = adt00("9999013", ts="20111221000000000", flag="0")
    write(tmp_path, name0, text)
    st = Storage(tmp_path)
    (rec,) = st.records("9999013")[0].values()
    assert rec.deleted and all(read_file(st, v).ok for v in rec.history)


def test_every_public_sample_reads_without_exceptions() -> None:
    if not SAMPLES.exists():
        pytest.skip(f"public samples not found at {SAMPLES}")
    count = 0
    for p in SAMPLES.rglob("*"):
        if p.is_file() and not p.name.endswith((".md",)):
            res = read_bytes(p.read_bytes(), p.name)
            count += 1
            assert res.ok or res.errors, p
    assert count > 20


def test_utf8_lf_jahis_samples_report_encoding_and_line_endings() -> None:
    folder = SAMPLES / "Acedia-Belphegor__hl7v2-to-fhir" / "debug"
    if not folder.exists():
        pytest.skip(f"public samples not found at {folder}")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix == ".txt"]
    assert files
    for p in files:
        res = read_bytes(p.read_bytes(), p.name)
        assert res.ok, (p, res.problems)
        got = {k for k, _ in kinds(res)}
        if not p.read_bytes().isascii():
            assert KIND_ENCODING in got
        assert KIND_LINE_ENDINGS in got


def test_patient_mismatch_between_pid3_and_filing() -> None:
    from storage.reader import patient_mismatch

    assert patient_mismatch(read_bytes(encode_iso2022jp(TEXT) + b"\x1c", "x", NAME)) is None
    other = FileName("1111111", "-", "ADT-00", "999999999999999", "20111220224447339", "-", "1")
    reason = patient_mismatch(read_bytes(encode_iso2022jp(TEXT) + b"\x1c", "x", other))
    assert reason == "PID-3 names patient 9999013, but the file is stored for patient 1111111"
    no_pid3 = TEXT.replace("9999013^^^^PI", "")
    assert patient_mismatch(read_bytes(encode_iso2022jp(no_pid3) + b"\x1c", "x", other)) is None
