"""UKE receipt reader (storage/uke.py) and UKE -> Claim mapping (mappers/claim.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.patient import Patient

from mappers.claim import ClaimContext, claim_id, map_receipt, map_receipt_file, map_uke_file, \
    mtime_instant, parse_claim_id
from mappers.ids import FHIR_ID
from mappers.serialize import dumps
from fhir_gateway.synth.uke import build_record, encode_uke
from mappers.claim import uke_date_fhir
from storage.uke import KIND_DECODE, KIND_FIELDS, KIND_STRUCTURE, KIND_TOTALS, KIND_UNKNOWN, \
    LAYOUTS, iter_uke_files, karte_candidates, match_patient, normalise_karte_no, \
    parse_uke_date, read_uke, read_uke_file
from storage.uke.reader import read_ranges

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "receipt"
MODELS = {"Claim": Claim, "Coverage": Coverage, "Patient": Patient}


def validate(resources: list[dict]) -> None:
    for r in resources:
        MODELS[r["resourceType"]].model_validate(json.loads(dumps(r)))
        assert FHIR_ID.match(r["id"]), r["id"]


def si(category: str, code: str, points: str, count: str, day: int) -> list[str]:
    return build_record("SI", {"category": category, "burden": "1", "code": code,
                               "points": points, "count": count, f"day{day:02d}": count})


def sample_records(go_points: str = "389", karte: str = "００１２６") -> list[list[str]]:
    """A 医科 file with two receipts, written the way a real レセコン does (和暦 dates)."""
    return [
        build_record("IR", {"payer": "2", "prefecture": "13", "tensuhyo": "1",
                            "facility_code": "1234567", "facility_name": "テスト医院",
                            "claim_month": "43101", "volume": "00", "phone": "03-0000-0000"}),
        build_record("RE", {"receipt_no": "1", "receipt_type": "1112", "service_month": "43101",
                            "name": "山下　歩樹", "sex": "2", "birth_date": "4070208",
                            "benefit_ratio": "70", "karte_no": karte, "kana": "ヤマシタ　アユキ"}),
        build_record("HO", {"insurer_no": "  133066", "symbol": "１２３", "number": "４５",
                            "days": "1", "points": "354"}),
        build_record("SY", {"disease_code": "3721002", "start_date": "4310109", "outcome": "1",
                            "modifiers": "80028003", "main": "01"}),
        si("11", "111000110", "282", "1", 9),
        build_record("CO", {"category": "21", "burden": "1", "code": "810000001",
                            "text": "食後に服用"}),
        build_record("IY", {"category": "", "burden": "1", "code": "620098401",
                            "quantity": "1.5", "points": "0", "count": "1", "day09": "1"}),
        si("60", "160020010", "", "1", 9),
        si("", "160022610", "72", "1", 9),
        build_record("RE", {"receipt_no": "2", "receipt_type": "1111", "service_month": "201901",
                            "name": "佐藤花子", "sex": "1", "birth_date": "19500101"}),
        build_record("KO", {"payer_no": "12131017", "recipient_no": "0000000", "points": "35"}),
        si("90", "190000000", "35", "1", 3),
        build_record("GO", {"total_receipts": "2", "total_points": go_points, "volume": "99"}),
    ]


def test_dates_wareki_and_seireki():
    assert parse_uke_date("43101") == (2019, 1, None)  # 平成31年1月
    assert parse_uke_date("4070208") == (1995, 2, 8)
    assert parse_uke_date("50505") == (2023, 5, None)  # 令和5年
    assert parse_uke_date("3641231") == (1989, 12, 31)  # 昭和64 is the same year as 平成1
    assert parse_uke_date("1450730") == (1912, 7, 30)  # 明治45年
    assert parse_uke_date("202406") == (2024, 6, None)
    assert uke_date_fhir("20240630") == "2024-06-30"
    assert uke_date_fhir("4310230") is None  # 2019-02-30
    assert parse_uke_date("9310101") is None  # no era 9
    assert parse_uke_date("") is None and parse_uke_date("4-1") is None


def test_spec_bytes_round_trip_cp932_crlf_eof():
    data = encode_uke(sample_records())
    assert data.endswith(b"\r\n\x1a") and b"\r\n" in data
    assert "山下".encode("cp932") in data
    uf = read_uke(data, "receipts/RECEIPTC.UKE")
    assert uf.codec == "cp932"
    assert uf.problems == []
    assert uf.kind == "医科" and uf.facility_code == "1311234567" and uf.claim_month == "43101"
    assert [r.receipt_no for r in uf.receipts] == ["1", "2"]
    r1 = uf.receipts[0]
    assert r1.ho["insurer_no"] == "133066" and r1.ho.raw("insurer_no") == "  133066"
    assert r1.karte_no == "00126"
    assert r1.lines == (2, 9)
    # CO with 診療識別 21 precedes the IY that leaves 診療識別 empty: it belongs to that drug
    cats = [(i.type, i.category, i.unit) for i in r1.items]
    assert cats == [("SI", "11", 1), ("IY", "21", 2), ("SI", "60", 3), ("SI", "60", 3)]
    assert [c["text"] for c in r1.items[1].comments] == ["食後に服用"]
    assert r1.items[0].record.days() == {9: 1}
    assert uf.go["total_points"] == "389"


def test_utf8_lf_is_read_too():
    text = "\n".join(",".join(r) for r in sample_records()) + "\n"
    uf = read_uke(text.encode("utf-8"), "x.csv")
    assert uf.codec == "utf-8" and uf.problems == [] and len(uf.receipts) == 2


def test_go_total_mismatch_is_reported_with_line():
    uf = read_uke(encode_uke(sample_records(go_points="999")), "r.UKE")
    probs = [p for p in uf.problems if p.kind == KIND_TOTALS]
    assert len(probs) == 1
    assert probs[0].reason.startswith("line 13: GO 総合計点数 is 999")
    assert probs[0].offset is not None and probs[0].offset > 0


def test_defects_are_problems_not_exceptions():
    recs = sample_records()
    recs.insert(3, ["ZZ", "1", "2"])  # unknown record type
    recs.insert(4, ["SY", "1234567"])  # far too few fields
    data = encode_uke(recs).replace("テスト医院".encode("cp932"), b"\x81\x20\xff")
    uf = read_uke(data, "bad.UKE")
    kinds = {p.kind for p in uf.problems}
    assert {KIND_UNKNOWN, KIND_FIELDS, KIND_DECODE} <= kinds
    assert any(r.type == "ZZ" for r in uf.receipts[0].records)  # kept, not lost
    assert read_uke(b"", "empty").problems[0].kind == "zero-bytes"
    assert read_uke(b"\x00\x01garbage", "bin").problems  # no GO, no header...
    orphan = read_uke(encode_uke([["SI", "11"], ["GO", "0", "0", "99"]]), "o.UKE")
    assert any(p.kind == KIND_STRUCTURE for p in orphan.problems) and orphan.orphans


def test_encode_refuses_commas():
    with pytest.raises(ValueError):
        encode_uke([["CO", "1", "a,b"]])


def test_layouts_are_data():
    si_layout = LAYOUTS["SI"][0]
    assert si_layout.count == 44 and si_layout.position("code") == 4
    assert si_layout.position("day01") == 14
    assert LAYOUTS["RE"][0].count == 38 and LAYOUTS["RE"][0].position("karte_no") == 14


def test_patient_matching_rule():
    assert normalise_karte_no(" ００１２６ ") == "00126"
    assert karte_candidates("00126") == ["00126", "0000000126", "126"]
    existing = {"0000000126"}
    assert match_patient("126", existing.__contains__) == "0000000126"
    assert match_patient("00126", {"126"}.__contains__) == "126"
    assert match_patient("A-12", {"A-12"}.__contains__) == "A-12"
    assert match_patient("999", existing.__contains__) is None
    assert match_patient("../etc", lambda _: True) is None  # never reaches the storage


def test_claim_mapping_matched_patient():
    uf = read_uke(encode_uke(sample_records()), "2019/RECEIPTC.UKE")
    ctx = ClaimContext("1311234567", "2019/RECEIPTC.UKE", patient_id="0000000126",
                       last_updated=mtime_instant(1546300800), header=uf.ir)
    res = map_receipt(uf.receipts[0], ctx)
    validate(res)
    claim = res[0]
    assert [r["resourceType"] for r in res] == ["Claim", "Coverage"]  # no Patient: matched
    assert claim["id"] == "uke-1311234567-201901-21-1"
    assert parse_claim_id(claim["id"]) == ("1311234567", "201901", "21", "1")
    assert claim["patient"] == {"reference": "Patient/0000000126"}
    assert claim["meta"]["source"] == "receipts/2019/RECEIPTC.UKE"
    assert claim["meta"]["lastUpdated"] == "2019-01-01T09:00:00+09:00"
    assert claim["billablePeriod"] == {"start": "2019-01-01", "end": "2019-01-31"}
    assert claim["created"] == "2019-01-01"
    assert claim["type"]["coding"][0]["code"] == "professional"  # 1112 = 入院外
    assert claim["provider"]["identifier"]["value"] == "1311234567"
    assert claim["insurer"]["identifier"]["value"] == "133066"  # padding trimmed
    dx = claim["diagnosis"][0]
    assert dx["diagnosisCodeableConcept"]["coding"][0]["code"] == "3721002"
    assert dx["type"][0]["coding"][0]["code"] == "principal"
    mods = [e["valueCoding"]["code"] for e in dx["extension"] if e["url"].endswith("modifier")]
    assert mods == ["8002", "8003"]
    first = claim["item"][0]
    assert first["productOrService"]["coding"][0]["code"] == "111000110"
    assert first["unitPrice"]["value"] == 2820 and first["net"]["currency"] == "JPY"
    assert first["servicedDate"] == "2019-01-09"
    drug = claim["item"][1]
    assert drug["informationSequence"] == [1]
    assert claim["supportingInfo"][0]["valueString"] == "食後に服用"
    assert "unitPrice" not in claim["item"][2]  # points only on the unit's last line
    assert claim["item"][3]["net"]["value"] == 720
    assert claim["total"]["value"] == 3540
    cov = res[1]
    assert cov["payor"][0]["identifier"]["value"] == "133066"
    assert cov["beneficiary"] == claim["patient"]


def test_unmatched_patient_is_built_from_re():
    uf = read_uke(encode_uke(sample_records()), "r.UKE")
    res = map_uke_file(uf, lambda r: ClaimContext("1311234567", "r.UKE"))
    validate(res)
    patients = [r for r in res if r["resourceType"] == "Patient"]
    claims = [r for r in res if r["resourceType"] == "Claim"]
    assert len(claims) == 2 and len(patients) == 2
    p1 = patients[0]
    assert p1["id"] == "uke-1311234567-00126"
    assert claims[0]["patient"]["reference"] == f"Patient/{p1['id']}"
    assert p1["birthDate"] == "1995-02-08" and p1["gender"] == "female"
    assert p1["name"][0]["family"] == "山下" and p1["name"][1]["given"] == ["アユキ"]
    p2 = patients[1]  # no カルテ番号: a hash id, 西暦 birth date, 公費単独 coverage
    assert p2["id"].startswith("uke-1311234567-h") and p2["birthDate"] == "1950-01-01"
    assert claims[1]["type"]["coding"][0]["code"] == "institutional"  # 1111 = 入院
    kos = [r for r in res if r["resourceType"] == "Coverage" and r["id"].endswith("ko1")]
    assert kos[0]["payor"][0]["identifier"]["value"] == "12131017"


def test_claim_id_differs_by_payer():
    recs = sample_records()
    uf1 = read_uke(encode_uke(recs), "a")
    recs[0][1] = "1"  # 支払基金 instead of 国保連
    uf2 = read_uke(encode_uke(recs), "b")
    assert claim_id("F", uf1.ir, uf1.receipts[0]) != claim_id("F", uf2.ir, uf2.receipts[0])


@pytest.fixture(scope="module")
def sample_files() -> list[Path]:
    if not SAMPLES.is_dir():
        pytest.skip(f"public UKE samples not found at {SAMPLES} (shared/ beside the clone)")
    return list(iter_uke_files(SAMPLES))


def test_public_samples_parse_cleanly(sample_files):
    assert len(sample_files) == 12
    total_receipts = 0
    for f in sample_files:
        uf = read_uke_file(f, f.name)
        assert uf.problems == [], (f.name, uf.problems)
        assert uf.go is not None and uf.receipts
        total_receipts += len(uf.receipts)
    assert total_receipts == 137


def test_public_dental_sample(sample_files):
    uf = read_uke_file(next(f for f in sample_files if f.name == "shika_shaho.csv"))
    assert uf.kind == "歯科" and uf.variant == "dental"
    r = uf.receipts[0]
    assert r.hs and all(i.type in ("SS", "TO") for i in r.items)
    assert r.items[0].record["points"] == "226" and r.items[0].record.days() == {14: 1}
    res = map_uke_file(uf, lambda r: ClaimContext("1330012345", "shika_shaho.csv"))
    validate(res)
    assert res[0]["type"]["coding"][0]["code"] == "oral"


def test_dental_file_starting_with_its_ir(sample_files, tmp_path):
    """A dental file usually starts with its IR (点数表 3): the IR itself decides its layout, in
    a whole-file read and in the byte-range read of the export and the per-patient receipts
    (the medical layout read the phone number as 請求年月)."""
    data = next(f for f in sample_files if f.name == "shika_shaho.csv").read_bytes()
    data = data[data.index(b"\nIR") + 1:]  # without the UK line the sample starts with
    uf = read_uke(data, "shika.csv")
    assert uf.ir is not None and uf.ir.type == "IR" and uf.variant == "dental"
    assert uf.ir.layout is not None and uf.ir.layout.variant == "dental"
    assert uf.claim_month == "43102" and uf.problems == []
    f = tmp_path / "shika.csv"
    f.write_bytes(data)
    r = uf.receipts[0]
    ranged = read_ranges(f, "shika.csv", uf.codec, uf.skip,
                         [(uf.ir.offset, uf.ir.end, uf.ir.line),
                          (r.records[0].offset, r.records[-1].end, r.records[0].line)])
    assert ranged.claim_month == "43102" and ranged.problems == []
    validate(map_uke_file(uf, lambda rec: ClaimContext("1330012345", "shika.csv")))


def test_public_samples_map_and_validate(sample_files):
    n = 0
    for f in sample_files:
        uf = read_uke_file(f, f.name)
        res = map_uke_file(uf, lambda r: ClaimContext("1311234567", f.name))
        validate(res)
        claims = [r for r in res if r["resourceType"] == "Claim"]
        assert len(claims) == len(uf.receipts)  # a receipt is never dropped
        n += len(claims)
    assert n == 137


def test_iter_uke_files_sniffs_content(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "RECEIPTC").write_bytes(encode_uke(sample_records()))
    (tmp_path / "notes.csv").write_text("name,value\n")
    (tmp_path / "b.UKE").write_bytes(b"\xef\xbb\xbfIR,1,13,1,1234567\n")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_uke_files(tmp_path)]
    assert found == ["b.UKE", "a/RECEIPTC"]  # root first, then sub-folders; notes.csv skipped


def test_map_receipt_file_matches_patients(tmp_path):
    p = tmp_path / "RECEIPTC.UKE"
    p.write_bytes(encode_uke(sample_records()))
    res, problems = map_receipt_file(
        p, "RECEIPTC.UKE", "1311234567", {"0000000126"}.__contains__)
    assert problems == []
    validate(res)
    claims = [r for r in res if r["resourceType"] == "Claim"]
    assert claims[0]["patient"]["reference"] == "Patient/0000000126"  # matched: no Patient built
    assert [r["id"] for r in res if r["resourceType"] == "Patient"] == [
        claims[1]["patient"]["reference"].split("/")[1]]
    assert claims[0]["meta"]["source"] == "receipts/RECEIPTC.UKE" and claims[0]["meta"]["lastUpdated"]
