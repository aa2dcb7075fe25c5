"""The receipt fast paths (bulk-export throughput) give what the plain paths give.

* ``UkeRecord.values(names)`` is ``[rec[n] for n in names]`` for every layout, every field count
  (short records, extra fields, names a layout lacks, no layout);
* a byte range is decoded once when it can be (``reader._decoded_lines``): the records are the
  ones decoding line by line gives (CRLF, LF, EOF, BOM, characters the reader folds), and a
  range with undecodable bytes is still decoded line by line, the problem saying where;
* ``ReceiptIndex.by_candidates`` (one query for an export chunk) is ``by_candidate`` per pid.
"""

from __future__ import annotations

import random
from pathlib import Path

from conftest import FACILITY, build_hospital
from test_receipt_index import SAMPLES, write_uke

from fhir_gateway.index.receipts import ReceiptIndex
from fhir_gateway.synth.uke import build_record, encode_uke
from storage.uke import KIND_DECODE, LAYOUTS, UkeRecord, iter_uke_files, read_ranges, read_uke
from storage.uke import reader


def test_values_is_the_fields_by_name() -> None:
    rnd = random.Random(12)
    for layouts in LAYOUTS.values():
        for lay in layouts:
            names = lay.fields + ("no_such_field", "day31", "points", "code")
            for count in range(1, lay.count + 4):
                fields = [lay.record] + [rnd.choice(["", " ", " 12 ", "x", "　全角　"])
                                         for _ in range(count - 1)]
                rec = UkeRecord(fields, 1, layout=lay)
                assert rec.values(names) == [rec[n] for n in names], (lay.record, count)
                assert rec.values(names) == rec.values(names)  # (indices remembered)
    bare = UkeRecord(["ZZ", "1"], 1)
    assert bare.values(("a", "b")) == [bare["a"], bare["b"]] == ["", ""]


def _records(data: bytes, codec: str, whole: bool) -> list[tuple]:
    uf = reader.UkeFile("x")
    saved = reader._decoded_lines
    if not whole:
        reader._decoded_lines = lambda data, codec: None  # type: ignore[assignment]
    try:
        recs = reader._records(uf, data, codec, 7, 100)
    finally:
        reader._decoded_lines = saved
    return [(r.fields, r.line, r.offset, r.end) for r in recs] + [
        (p.kind, p.reason, p.offset) for p in uf.problems]


def _sample_bytes() -> list[tuple[bytes, str]]:
    recs = [build_record("IR", {"payer": "1", "prefecture": "13", "tensuhyo": "1",
                                "facility_code": "2345678", "facility_name": "テスト〜病院",
                                "claim_month": "202304"}),
            build_record("RE", {"receipt_no": "1", "name": "山田　太郎", "karte_no": "１２"}),
            build_record("SI", {"category": "11", "code": "111000110", "points": "100",
                                "comment_text_1": "−５ ～ ￠"}),
            build_record("GO", {"total_receipts": "1", "total_points": "100"})]
    cp932 = encode_uke(recs)  # CRLF and the EOF byte
    text = cp932.decode("cp932")
    out = [(cp932, "cp932"), (text.replace("\r\n", "\n").encode("utf-8"), "utf-8"),
           (b"\r\n\r\n  \r\n" + cp932 + b"\x1a\x1a\r\n", "cp932"),
           ("SI,11,,1\u2212\n\nCO,x\u2016\r\x1a\n".encode("utf-8"), "utf-8")]
    if SAMPLES.is_dir():
        for p in iter_uke_files(SAMPLES):
            data = p.read_bytes()
            out.append((data[3:] if data.startswith(b"\xef\xbb\xbf") else data,
                        read_uke(data, p.name).codec))
    return out


def test_a_range_decoded_at_once_is_the_range_decoded_line_by_line() -> None:
    for data, codec in _sample_bytes():
        assert reader._decoded_lines(data, codec) is not None
        assert _records(data, codec, True) == _records(data, codec, False)
        for k in range(0, len(data), max(1, len(data) // 7)):  # cut anywhere: same records
            part = data[k:]
            assert _records(part, codec, True) == _records(part, codec, False)


def test_undecodable_bytes_are_still_found_line_by_line() -> None:
    good = "SI,11,,111000110\r\nCO,11,,810000001,テスト\r\n".encode("cp932")
    bad = good.replace("テスト".encode("cp932"), b"\x81\x20\xff")
    assert reader._decoded_lines(bad, "cp932") is None
    got = _records(bad, "cp932", True)
    assert got == _records(bad, "cp932", False)
    decode = [x for x in got if x[0] == KIND_DECODE]
    assert len(decode) == 1 and decode[0][2] == 100 + bad.index(b"CO")  # the line's offset
    where = 100 + bad.index(b"\x81")
    assert f"offset {where} " in decode[0][1]
    assert reader._decoded_lines(good, "utf-16") is None  # only CP932 and UTF-8 at once


def test_a_range_with_undecodable_bytes_reads_as_before(tmp_path: Path) -> None:
    p = write_uke(tmp_path, "A.UKE", "202304", [("1", "患者一"), ("2", "患者二")])
    p.write_bytes(p.read_bytes().replace("患者二".encode("cp932"), b"\x81\x20\xff"))
    whole = read_uke(p.read_bytes(), p.name)
    assert whole.ir is not None
    for r in whole.receipts:
        part = read_ranges(p, p.name, whole.codec, whole.skip,
                           [(whole.ir.offset, whole.ir.end, whole.ir.line), r.span])
        assert [x.fields for x in part.receipts[0].records] == [x.fields for x in r.records]
        start, end, _ = r.span
        mine = [(q.kind, q.reason, q.offset) for q in whole.problems
                if q.offset is not None and start <= q.offset < end]
        assert [(q.kind, q.reason, q.offset) for q in part.problems
                if q.offset is not None and q.offset >= start] == mine
    assert any(q.kind == KIND_DECODE for q in whole.problems)


def test_candidates_of_many_patients_in_one_query(tmp_path: Path) -> None:
    h = build_hospital(tmp_path / "h", 3)
    people = [(str(int(pid)), "山田　太郎") for pid in h.patients] + [("5001", "他人")]
    write_uke(h.receipts, "B.UKE", "202304", people)
    write_uke(h.receipts, "C.UKE", "202305", people[::-1])
    idx = ReceiptIndex(h.data_dir, FACILITY, [h.receipts])
    idx.refresh()
    pids = list(h.patients) + ["5001", "0000005001", "nobody", h.patients[0]]
    for stubs in (False, True):
        many = idx.by_candidates(pids, with_stubs=stubs)
        assert many == {p: idx.by_candidate(p, stubs) for p in pids if idx.by_candidate(p)}
        assert all(r.stub is not None for rows in many.values() for r in rows) == stubs
    assert len(many[h.patients[0]]) >= 2 and "nobody" not in many
