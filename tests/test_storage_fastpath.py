"""The read path's shortcuts give the same answers as the plain versions they replaced.

Each shortcut in storage/ (see docs/performance.md, "Storage read path") is checked here against
a straightforward reference implementation written out in the test, on generated input.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.encoding import _iso2022jp_via_cp932, decode, encode_iso2022jp, fold, strip_framing
from storage.hl7 import Field, bad_segment_ids, parse
from fhir_gateway.services.listing import DirCache, patient_records
from storage import reader
from storage.layout import Storage, UnsafePath, classify, classify_folder
from storage.names import FileName
from storage.reader import (
    KIND_IO, KIND_MOJIBAKE, _CHUNK, ReadAhead, _ends_inside_kanji, _read_all, read_bytes,
    read_file, read_path,
)

# --- references: the plain versions -----------------------------------------------------------


def ref_ends_inside_kanji(data: bytes) -> bool:
    last_2byte = max(data.rfind(b"\x1b$B"), data.rfind(b"\x1b$@"))
    return last_2byte >= 0 and data.rfind(b"\x1b(", last_2byte) < 0


def ref_has_segment(msg, segment_id: str) -> bool:
    fs, text = msg.delimiters.field, msg.text
    return (f"\r{segment_id}{fs}" in text or f"\n{segment_id}{fs}" in text
            or text.startswith(f"{segment_id}{fs}") or segment_id in msg.lines)


def ref_message_type(msg) -> tuple[str, str, str]:
    parts = msg.lines[0].split(msg.delimiters.field, 9)
    msh9 = Field(parts[8] if len(parts) > 8 else "", msg.delimiters)
    return (msh9.component(1), msh9.component(2), msh9.component(3))


def ref_decode_iso(data: bytes):
    """decode() for 7-bit data with ESC, before the one-pass JIS X 0201 test."""
    jis_roman = b"\x1b(J" in data
    text = None
    if not jis_roman:
        try:
            text = data.decode("iso2022_jp")
        except UnicodeDecodeError:
            text = None
    if jis_roman:
        text = _iso2022jp_via_cp932(data)
        if "\ufffd" not in text:
            return fold(text), "iso-2022-jp", 0
        text = None
    if text is not None:
        return fold(text), "iso-2022-jp", 0
    text = _iso2022jp_via_cp932(data)
    return fold(text), "iso-2022-jp+cp932", text.count("\ufffd")


# --- generated input ----------------------------------------------------------------------------

ESCAPES = [b"\x1b$B", b"\x1b$@", b"\x1b(B", b"\x1b(J", b"\x1b(I", b"\x1b(", b"\x1b$", b"\x1b"]
PIECES = ESCAPES + [b"0!", b"-!", b"!A", b"y|", b"\\", b"~", b"1", b"AB", b"\r", b"\n", b"|^"]
iso_bytes = st.lists(st.sampled_from(PIECES), max_size=30).map(b"".join)

SEG_IDS = ["MSH", "PID", "PV1", "ORC", "OBR", "OBX", "ZPR", "pid", "P1", "PIDX", " PI", ""]
line = st.tuples(st.sampled_from(SEG_IDS), st.sampled_from(["|", "", "|a|b", "#x", "^"])).map("".join)
breaks = st.sampled_from(["\r", "\n", "\r\n", "\r\r", " \r"])


@st.composite
def messages(draw):
    msh9 = draw(st.sampled_from(["OUL^R22^OUL_R22", "ADT^A08", "", "RDE", 'A""^B', "A~B^C",
                                 "A\\F\\^B", "A&x^B^C^D", "^^"]))
    text = f"MSH|^~\\&|S||R||20111219||{msh9}|1|P|2.5"
    for _ in range(draw(st.integers(0, 8))):
        text += draw(breaks) + draw(line)
    return text + draw(st.sampled_from(["", "\r", "\r\n", "\x1c"]))


# --- properties ---------------------------------------------------------------------------------


@given(iso_bytes)
@settings(max_examples=400, deadline=None)
def test_ends_inside_kanji_matches_reference(data: bytes) -> None:
    assert _ends_inside_kanji(data) == ref_ends_inside_kanji(data)


@given(iso_bytes)
@settings(max_examples=400, deadline=None)
def test_iso2022jp_decode_matches_reference_and_kana_flag(body: bytes) -> None:
    data = b"MSH|^~\\&|" + body + b"\r\x1c"
    stripped = strip_framing(data)
    if not stripped.isascii() or 0x1B not in stripped:
        return
    dec = decode(data)
    assert (dec.text, dec.codec, dec.replaced) == ref_decode_iso(stripped)
    assert dec.kana == (b"\x1b(I" in data)


@given(messages())
@settings(max_examples=400, deadline=None)
def test_has_segment_and_message_type_match_reference(text: str) -> None:
    msg = parse(text)
    assert msg.message_type == ref_message_type(msg)
    for seg_id in ("MSH", "PID", "OBX", "ZPR", "pid", "P1", "PIDX"):
        assert parse(text).has_segment(seg_id) == ref_has_segment(msg, seg_id), seg_id


@given(messages())
@settings(max_examples=200, deadline=None)
def test_segments_and_fields_unchanged(text: str) -> None:
    msg = parse(text)
    fs = msg.delimiters.field
    segs = list(msg)
    assert [s.line for s in segs] == msg.lines and [s.index for s in segs] == list(range(len(segs)))
    assert segs == msg.all_segments and msg.segments("PID") == [s for s in segs if s.id == "PID"]
    for s in segs:
        expect = s.line.split(fs)
        if s.id == "MSH":
            expect = [expect[0], fs] + expect[1:]
        assert s.fields == expect and len(s) == len(expect) - 1
        assert [s[n].raw for n in range(len(expect) + 2)] == expect + ["", ""]


def test_bad_segment_cache_respects_the_field_separator() -> None:
    parse_ok = parse("MSH|^~\\&|A\rPID|1\r")
    assert bad_segment_ids(parse_ok) == []  # "PID|" now cached as a good head for "|"
    other = parse("MSH#^~\\&#A\rPID|1\rPID#2\r")
    assert bad_segment_ids(other) == [(1, "PID|1")]


# --- reader -------------------------------------------------------------------------------------

NAME = FileName("1000000000", "20111219", "OML-11", "000000000000001", "20111219120000000", "01", "1")
TEXT = ("MSH|^~\\&|HIS|S|GW|R|20111219||OUL^R22^OUL_R22|1|P|2.5||||||~ISO IR87||ISO 2022-1994\r"
        "PID|1||1000000000^^^^PI||山田^花子\rOBR|1|1\r")


def test_kana_after_jis_roman_still_gets_the_mojibake_check() -> None:
    # ESC ( J makes our decoder run (codec stays iso-2022-jp), ESC ( I adds half-width kana.
    data = encode_iso2022jp(TEXT).replace(b"PID|1|", b"PID|1\x1b(J|\x1b(I12\x1b(B|", 1)
    res = read_bytes(data + b"\x1c", "x", NAME)
    assert res.ok and res.codec == "iso-2022-jp"
    assert any(p.kind == KIND_MOJIBAKE and "half-width" in p.reason for p in res.problems)


@pytest.mark.parametrize("size", [0, 1, 1000, _CHUNK - 1, _CHUNK, _CHUNK + 1, 3 * _CHUNK])
def test_read_all_reads_whole_files(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert _read_all(str(tmp_path / "f")) == data


def test_vanished_or_folder_path_is_an_io_problem(tmp_path: Path) -> None:
    st_ = Storage(tmp_path)
    path = tmp_path / f"100/000/1000000000/20111219/OML-11/{NAME.name}"
    path.parent.mkdir(parents=True)
    path.write_bytes(encode_iso2022jp(TEXT))
    (stored,) = st_.files("1000000000")
    assert read_file(st_, stored).ok
    path.unlink()  # vanished between listing and reading
    assert read_file(st_, stored).problems[0].kind == KIND_IO
    path.mkdir()  # a folder where the file was: os.open succeeds, os.read fails
    res = read_file(st_, stored)
    assert not res.ok and res.problems[0].kind == KIND_IO and "directory" in res.problems[0].reason


@pytest.mark.parametrize("rel", ["a/./b", "a/../b", "..", "./x", "a/..", "x/.."])
def test_abspath_refuses_dot_parts(tmp_path: Path, rel: str) -> None:
    with pytest.raises(UnsafePath):
        Storage(tmp_path).abspath(rel)


def test_abspath_joins_like_os_path_join(tmp_path: Path) -> None:
    for root in (str(tmp_path), str(tmp_path) + "/"):
        for rel in ("a/b_c", "a/b.c", "a/.hidden/x", "a/..b"):
            assert Storage(root).abspath(rel) == os.path.join(Path(root), rel)
    assert re.fullmatch(r".*/a/b", Storage(tmp_path).abspath("a/b"))


# --- listing ------------------------------------------------------------------------------------

NAME_PARTS = {  # well-formed pieces first, then near misses parse_name must judge
    "pid": ["1000000000", "12", "2000000000", "1000000000\n", "１０", "a_b", ""],
    "date": ["20111219", "-", "20111218", "2011121", "２0111219", "20111219\n"],
    "dtype": ["OML-11", "ADT-00", "OML_11", "XYZ-99", ""],
    "order": ["000000000000001", "A-b9", "x" * 23, "1\n", "", "a.b", "１"],
    "ts": ["20111219120000000", "201112191200", "20111219120000000\n", "2011121912", "１" * 12],
    "dept": ["01", "-", "ABCDE", "ABCDEF", "", "0_1"],
    "flag": ["1", "2", "0", "3", "1\n", ""],
}
file_names = st.tuples(*(st.sampled_from(v) for v in NAME_PARTS.values())).map("_".join)
folders = st.tuples(st.sampled_from(["1000000000", "12", "a_b"]),
                    st.sampled_from(["20111219", "-", "2011-12-19", "20111219\n"]),
                    st.sampled_from(["OML-11", "ADT-00", "OML_11", "XYZ-99"]))


@given(folders, st.lists(file_names, max_size=6), st.booleans())
@settings(max_examples=400, deadline=None)
def test_classify_folder_matches_classify(folder, names: list[str], ok: bool) -> None:
    pid, date, dtype = folder
    pdir = "/".join(Storage.candidate_dirs(pid)[0]) if ok else "x/y/" + pid
    rel = f"{pdir}/{date}/{dtype}"
    got = classify_folder(rel, pid, date, dtype, names, ok)
    assert got == [classify(f"{rel}/{n}", pid, date, dtype, n) for n in names]


def test_uncached_listing_is_the_cached_one(tmp_path: Path) -> None:
    from treebuilder import adt00, write
    pid = "1000000000"
    name, text = adt00(pid)
    write(tmp_path, name, text)
    for ts, flag in (("20111219120000000", "2"), ("20111219130000000", "1")):
        write(tmp_path, FileName(pid, "20111219", "OML-11", "1", ts, "01", flag), "x")
    write(tmp_path, FileName("2000000000", "20111219", "OML-11", "2", "20111219120000000", "01",
                             "1"), "x", folder=("100", "000", pid, "20111219", "OML-11"))
    odd = tmp_path / "100/000" / pid / "20111219"
    (odd / "OML-11" / "not_a_name").write_text("x")
    (odd / "OML-11" / ".hidden").write_text("x")
    (odd / "OML-11" / "sub").mkdir()
    (odd / "OMP-01").write_text("a file where a data-type folder belongs")
    st_ = Storage(tmp_path)
    want = st_.records(pid)
    assert len(want[0]) == 2 and len(want[1]) == 2
    for dirs in (None, DirCache()):
        assert patient_records(st_, dirs, pid) == want
        assert patient_records(st_, dirs, pid, ["OML-11"]) == st_.records(pid, ["OML-11"])


# --- read-ahead ---------------------------------------------------------------------------------


def _files(tmp_path: Path, sizes: list[int]) -> list[tuple[str, bytes]]:
    out = []
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        (tmp_path / f"f{i}").write_bytes(data)
        out.append((str(tmp_path / f"f{i}"), data))
    return out


def test_read_ahead_reads_whole_files_and_reports_like_a_read(tmp_path: Path) -> None:
    files = _files(tmp_path, [0, 1, 1000, _CHUNK - 1, _CHUNK, _CHUNK + 1, 3 * _CHUNK])
    (tmp_path / "dir").mkdir()
    paths = [p for p, _ in files] + [str(tmp_path / "gone"), str(tmp_path / "dir"), files[2][0]]
    ahead = ReadAhead(paths)
    for path, data in files:
        assert ahead.read(path) == data
    for bad in paths[len(files):-1]:
        res = read_path(bad, "rel", None, ahead)
        assert not res.ok and res.problems[0].kind == KIND_IO
    assert "directory" in read_path(paths[-2], "rel", None, ReadAhead(paths[-2:])).problems[0].reason
    assert ahead.read(paths[-1]) == files[2][1]  # the list goes on after a failed read


def _evict(path: str) -> None:
    """Drop the file from the page cache (written back first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.skipif(reader._NOWAIT is None, reason="no preadv2 RWF_NOWAIT here")
def test_read_ahead_announces_only_files_not_in_the_cache(tmp_path: Path, monkeypatch) -> None:
    files = _files(tmp_path, [5000] * 6)
    paths = [p for p, _ in files]
    announced: list[list[str]] = []
    monkeypatch.setattr(reader, "prefetch", lambda ps: announced.append(list(ps)))
    monkeypatch.setattr(ReadAhead, "WINDOW", 2)
    fd = os.open(paths[0], os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(16)], 0, os.RWF_NOWAIT)
    except OSError as exc:  # a file system without RWF_NOWAIT: every window is announced
        if exc.errno in reader._NOWAIT_REFUSED:
            pytest.skip(f"RWF_NOWAIT refused here: {exc}")
    finally:
        os.close(fd)
    ahead = ReadAhead(paths)
    assert [ahead.read(p) for p in paths] == [d for _, d in files]
    assert announced == []  # just written: all cached, nothing announced
    for p in paths[2:5]:
        _evict(p)
    ahead = ReadAhead(paths)
    assert [ahead.read(p) for p in paths] == [d for _, d in files]
    if not announced:
        pytest.skip("the kernel kept the files cached")
    # f2 missed: f2, f3 announced; f4 (past the window) missed again: f4, f5
    assert announced == [paths[2:4], paths[4:6]]


def test_read_ahead_without_nowait_announces_every_window(tmp_path: Path, monkeypatch) -> None:
    files = _files(tmp_path, [100, 0, _CHUNK + 5, 7, 8])
    paths = [p for p, _ in files]
    announced: list[list[str]] = []
    monkeypatch.setattr(reader, "prefetch", lambda ps: announced.append(list(ps)))
    monkeypatch.setattr(reader, "_NOWAIT", None)  # not Linux, or an old kernel
    monkeypatch.setattr(ReadAhead, "WINDOW", 2)
    ahead = ReadAhead(paths)
    assert [ahead.read(p) for p in paths] == [d for _, d in files]
    assert announced == [paths[0:2], paths[2:4], paths[4:5]]
