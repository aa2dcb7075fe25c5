"""The synthetic hospital: determinism, round trip through storage/, injected defects, receipts."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from fhir_gateway.cli import main
from fhir_gateway.synth import Options, encode_message, generate
from fhir_gateway.synth import content as C
from fhir_gateway.synth.patients import HEAVY_PATIENT_ID, patient_id
from fhir_gateway.synth.writer import encode_text
from storage.encoding import encode_iso2022jp
from storage.extended import ExtendedStorage
from storage.layout import Storage
from storage.names import FLAG_CURRENT, FLAG_DELETED, FLAG_SUPERSEDED, NO_ORDER
from storage.reader import read_bytes, read_file
from storage.uke import iter_uke_files, read_uke_file

ISSUE_TYPES = {"ADT-00", "ADT-12", "ADT-21", "ADT-22", "ADT-41", "ADT-42", "ADT-51", "ADT-52",
               "ADT-61", "PPR-01", "OMP-01", "OMP-11", "OMP-02", "OMP-12", "OML-01", "OML-11",
               "OMG-01", "OMG-11", "OMG-02", "OMG-12", "OMG-03", "OMG-13", "OMD"}


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def hospital(tmp_path_factory) -> tuple[Path, object]:
    base = tmp_path_factory.mktemp("synth")
    summary = generate(Options(out=base / "ss", patients=20, seed=7, years=2, messy=0.03,
                               heavy_patient=True, workers=2, progress=False))
    return base, summary


@pytest.fixture(scope="module")
def manifest(hospital) -> dict[str, dict]:
    base, _ = hospital
    return {m["path"]: m for m in json.loads((base / "ss-messy.json").read_text("utf-8"))}


@pytest.fixture(scope="module")
def reads(hospital):
    base, _ = hospital
    st = Storage(base / "ss")
    return st, {f.relpath: (f, read_file(st, f)) for pid in st.patient_ids() for f in st.files(pid)}


def test_outputs_are_siblings_and_summary_counts_match(hospital):
    base, summary = hospital
    assert sorted(p.name for p in base.iterdir()) == ["ss", "ss-extended", "ss-messy.json",
                                                     "ss-receipts"]
    files = [p for p in (base / "ss").rglob("*") if p.is_file()]
    assert len(files) == sum(summary.files.values())
    assert sum(p.stat().st_size for p in files) == summary.bytes
    assert summary.heavy_patient == HEAVY_PATIENT_ID
    assert ISSUE_TYPES <= set(summary.files), ISSUE_TYPES - set(summary.files)
    text = "\n".join(summary.lines())
    assert "heavy patient: 9000000001" in text and "OML-11" in text


def test_same_seed_same_bytes_for_any_worker_count(tmp_path):
    runs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}" / "ss"
        generate(Options(out=out, patients=6, seed=11, years=1, messy=0.05, workers=workers,
                         progress=False))
        runs.append(_tree_digest(out.parent))
    assert runs[0] == runs[1]
    assert len(runs[0]) > 50
    other = tmp_path / "s12" / "ss"
    generate(Options(out=other, patients=6, seed=12, years=1, workers=1, progress=False))
    assert _tree_digest(other.parent) != runs[0]


def test_patient_ids_are_ten_digits_and_deterministic(hospital):
    base, _ = hospital
    ids = sorted(Storage(base / "ss").patient_ids())
    assert HEAVY_PATIENT_ID in ids
    assert len(ids) == 21 and all(re.fullmatch(r"\d{10}", i) for i in ids)
    assert ids[0].startswith("0")  # zero-padded hospital numbers: leading zeros are significant
    assert [patient_id(7, i) for i in range(20)] == sorted(set(ids) - {HEAVY_PATIENT_ID})


def test_every_file_reads_cleanly_except_the_injected_defects(reads, manifest):
    st, results = reads
    unexpected = {path: [(p.kind, p.reason) for p in res.problems]
                  for path, (_f, res) in results.items() if res.problems and path not in manifest}
    assert unexpected == {}
    assert len(results) > 1000


def test_every_injected_defect_is_reported_with_its_kind(reads, manifest):
    _st, results = reads
    kinds = Counter(m["defect"] for m in manifest.values())
    assert set(kinds) == {"wrong-encoding", "nonstandard-characters", "line-endings", "truncated",
                          "zero-bytes", "misplaced", "bad-name", "binary"}
    for path, m in manifest.items():
        assert path in results, f"manifest path {path} is not in the tree"
        found = [p.kind for p in results[path][1].problems]
        assert m["defect"] in found, (path, m, found)


def test_files_are_guideline_bytes(reads, manifest):
    st, results = reads
    checked = 0
    for path, (f, res) in results.items():
        if path in manifest:
            continue
        data = st.resolve(path).read_bytes()
        assert data.endswith(b"\r\x1c") and b"\n" not in data
        assert max(data) < 0x80 and b"\x1b$B" in data  # 7-bit ISO-2022-JP with Japanese text
        assert res.codec == "iso-2022-jp"
        msh = res.message.segment("MSH")
        assert msh[18].raw == "~ISO IR87" and msh[20].raw == "ISO 2022-1994"
        assert msh[21].raw.startswith("SS-MIX2_1.20^SS-MIX2^1.2.392.200250.2.1.100.1.2.120")
        checked += 1
    assert checked > 1000


def test_cached_encoder_equals_the_storage_encoder(reads):
    st, results = reads
    for path, (f, res) in list(results.items())[:300]:
        if res.ok:
            text = "\r".join(s.line for s in res.message)
            assert encode_text(text) == encode_iso2022jp(text)
    sample = "PID|0001||1^^^^PI||山田^太郎^^^^^L^I~ヤマダ^タロウ^^^^^L^P|①\r"
    assert encode_message(sample) == encode_iso2022jp(sample) + b"\r\x1c"


def test_version_chains_updates_and_cancellations(reads):
    st, _ = reads
    flags = Counter()
    cancelled = superseded = 0
    for pid in st.patient_ids():
        records, _rejects = st.records(pid)
        for key, rec in records.items():
            fl = [v.name.flag for v in rec.versions]
            flags.update(fl)
            if key.data_type in ("PPR-01", "ADT-00") and key.order_no == NO_ORDER:
                assert len(rec.currents) <= 1
            if FLAG_DELETED in fl and FLAG_CURRENT not in fl and len(fl) >= 2:
                cancelled += 1
            if FLAG_SUPERSEDED in fl and FLAG_CURRENT in fl:
                superseded += 1
                assert rec.current is rec.versions[-1]  # the new version has the later 発生日時
    assert flags[FLAG_SUPERSEDED] and flags[FLAG_DELETED]
    assert cancelled >= 1 and superseded >= 10


def _current(st: Storage, pid: str, dtype: str):
    records, _ = st.records(pid, [dtype])
    out = []
    for rec in records.values():
        if rec.current is not None:
            res = read_file(st, rec.current)
            if res.ok:
                out.append(res.message)
    return out


def test_message_content_follows_the_guideline_fields(reads):
    st, _ = reads
    pid = HEAVY_PATIENT_ID
    (adt00,) = _current(st, pid, "ADT-00")
    names = adt00.segment("PID")[5].repetitions
    assert [n.component(8) for n in names] == ["I", "P"] and [n.component(7) for n in names] == ["L", "L"]
    assert re.fullmatch(r"[ァ-ヶー]+", names[1].component(1))
    codes = [o[3].component(1) for o in adt00.segments("OBX")]
    assert codes[:3] == ["9N001000000000001", "9N006000000000001", "5H010000001999911"]
    assert adt00.segment("NK1") and adt00.segment("IN1")[2].component(3) == "JHSD0001"
    (ppr,) = _current(st, pid, "PPR-01")
    prbs = ppr.segments("PRB")
    assert len(prbs) >= 8 and len(ppr.segments("ZPR")) == len(prbs)
    assert any(p[18].component(1) == "1" for p in prbs) and any(p[9].raw for p in prbs)
    assert all(p[3].component(3) == "MDCDX2" and p[10].component(3) == "I10" for p in prbs)
    rx = _current(st, pid, "OMP-01")[0]
    assert rx.message_type[:2] == ("RDE", "O11")
    assert all(r[2].component(3) == "HOT9" and r[31].component(3) == "YJ" for r in rx.segments("RXE"))
    assert all(t[3].raw.endswith("&JAMISDP01") for t in rx.segments("TQ1"))
    results = [m for m in _current(st, pid, "OML-11")]
    obx = [o for m in results for o in m.segments("OBX")]
    assert {o[8].raw for o in obx} >= {"H", ""}
    assert all(o[6].component(1) == o[6].component(2) for o in obx if o[6].raw)  # no ^ in units
    hba1c = [o for o in obx if o[3].component(1) == C.LABS["hba1c"].jlac10]
    assert hba1c and all(o[7].raw == "4.9-6" for o in hba1c)  # the diabetic gets HbA1c
    assert sum(float(o[5].raw) > 6.0 for o in hba1c) > len(hba1c) / 2
    inj = _current(st, pid, "OMP-12")
    assert inj and all(m.segment("RXE")[2].component(3) == "JHSI0002" for m in inj)


def test_vocabulary_holds_no_hl7_delimiters():
    tables = [C.DRUGS.values(), C.LABS.values(), C.DISEASES.values(), C.INJECTIONS.values(),
              C.INSURANCES, C.ALLERGENS, C.VACCINES, C.RADIOLOGY, C.ENDOSCOPY, C.VITALS,
              C.SURNAMES, C.MALE_NAMES, C.FEMALE_NAMES, C.ADDRESSES, C.DIETS.values()]
    for table in tables:
        for row in table:
            values = row if isinstance(row, tuple) else tuple(vars(row).values())
            for v in values:
                assert not (isinstance(v, str) and set(v) & set("|^~\\&,\r\n")), (row, v)


def test_all_patients_corrected_results_and_vaccinations(reads):
    st, results = reads
    statuses, vaccines, kinds = Counter(), 0, Counter()
    for path, (f, res) in results.items():
        if not res.ok or f.name is None:
            continue
        if f.name.data_type == "OML-11":
            statuses.update(o[11].raw for o in res.message.segments("OBX"))
            kinds.update(o[2].raw for o in res.message.segments("OBX"))
        if f.name.data_type == "OMP-12" and res.message.segment("RXE")[2].component(1) == "06":
            vaccines += 1
            assert res.message.segment("RXA")[15].raw  # lot number
    assert statuses["F"] and statuses["C"] and statuses["P"]
    assert kinds["NM"] and kinds["ST"]  # numeric and text results
    assert vaccines >= 1


def test_extended_storage_documents_and_vitals(hospital):
    base, summary = hospital
    ext = ExtendedStorage(base / "ss-extended")
    kinds = Counter()
    for pid in ext.patient_ids():
        for folder in ext.content_folders(pid):
            assert folder.usable, folder
            kinds[folder.relpath.split("/")[4].split("^")[0]] += 1
            path = ext.resolve(folder.relpath)
            if (path / "main_document.hl7").exists():
                res = read_bytes((path / "main_document.hl7").read_bytes(), folder.relpath)
                assert res.ok and not res.problems and res.message.message_type[:2] == ("ORU", "R30")
            else:
                assert (path / "main_document.xml").read_bytes().startswith(b"<?xml")
    assert kinds["L-OBSERVATIONS"] and kinds["L-DS"] and kinds["L-PN"]
    assert sum(kinds.values()) * 1 <= summary.ext_files


def test_receipts_read_back_and_match_the_storage(hospital, manifest):
    base, summary = hospital
    damaged = {path.split("/")[2] for path in manifest}
    st = Storage(base / "ss")
    ids = set(st.patient_ids())
    files = list(iter_uke_files(base / "ss-receipts"))
    assert files and len(files) == len(summary.receipt_files)
    drug_by_receipt = {d.receipt: d.hot9 for d in C.DRUGS.values()}
    disease_by_receipt = {d.receipt: d.medis for d in C.DISEASES.values()}
    checked = 0
    for path in files:
        raw = path.read_bytes()
        assert raw.endswith(b"\r\n\x1a") and re.fullmatch(r"RECEIPTC_\d{6}_[12]\.UKE", path.name)
        uf = read_uke_file(path)
        assert uf.problems == [], uf.problems[:3]
        for r in uf.receipts:
            pid = r.karte_no
            assert pid in ids
            if checked > 40 or pid in damaged:
                continue
            checked += 1
            (ppr,) = _current(st, pid, "PPR-01")
            medis = {p[3].component(1) for p in ppr.segments("PRB")}
            assert {disease_by_receipt[s["disease_code"]] for s in r.sy} <= medis
            hot = {rxe[2].component(1) for m in _current(st, pid, "OMP-01") for rxe in m.segments("RXE")}
            for item in r.items:
                if item.record.type == "IY" and item.record["code"] in drug_by_receipt:
                    assert drug_by_receipt[item.record["code"]] in hot
    assert checked > 10


def test_cli_writes_and_refuses_to_mix_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["synth", "--out", str(out), "--patients", "3", "--years", "1", "--seed", "5",
                 "--workers", "1", "--receipts-out", str(tmp_path / "uke")]) == 0
    printed = capsys.readouterr().out
    assert "standardized storage" in printed and "ADT-00" in printed and str(tmp_path / "uke") in printed
    assert (tmp_path / "demo-extended").is_dir() and any((tmp_path / "uke").iterdir())
    assert main(["synth", "--out", str(out), "--patients", "3"]) == 2
    assert main(["synth", "--out", str(tmp_path / "x"), "--patients", "3", "--facility", "12"]) == 2


def test_mappers_accept_every_generated_message(reads):
    from mappers import map_message
    from mappers.context import MapContext

    _st, results = reads
    types = Counter()
    for path, (f, res) in results.items():
        if not res.ok:
            continue
        for resource in map_message(res.message, MapContext("1310000017", path, f.name)):
            types[resource["resourceType"]] += 1
            assert resource.get("meta", {}).get("source", path).endswith(path)
    assert {"Patient", "Encounter", "Condition", "MedicationRequest", "Observation",
            "AllergyIntolerance"} <= set(types)


def test_fast_uke_lines_equal_the_shared_encoder():
    from fhir_gateway.synth.uke import encode_lines
    from fhir_gateway.synth.uke import build_record, encode_uke

    recs = [build_record("RE", {"receipt_no": "1", "name": "山田　太郎", "kana": "ヤマダ　タロウ"}),
            build_record("CO", {"category": "21", "code": "810000001", "text": "長期処方～１－２"}),
            build_record("GO", {"total_receipts": "1", "total_points": "0", "volume": "99"})]
    assert encode_lines(recs) + b"\x1a" == encode_uke(recs)
    with pytest.raises(ValueError):
        encode_lines([build_record("CO", {"text": "a,b"})])


# 診療日 source field per data type (reference §1.4, TT SSMIX_CAREDATE.json).
CARE_DATE = {"ADT-12": "PV1.44", "ADT-21": "PV2.8", "ADT-22": "PV1.44", "ADT-41": "PV2.8",
             "ADT-42": "EVN.6", "ADT-51": "PV2.9", "ADT-52": "PV1.45", "OMP-01": "ORC.9",
             "OMP-02": "ORC.9", "OML-01": "ORC.9", "OMD": "ORC.9", "OMG-01": "ORC.9",
             "OMG-02": "ORC.9", "OMG-03": "ORC.9", "OMP-11": "RXA.3", "OMP-12": "RXA.3",
             "OML-11": "SPM.17", "OMG-11": "OBR.7", "OMG-12": "OBR.7", "OMG-13": "OBR.7"}


def test_date_folders_follow_the_care_date_field(reads, manifest):
    _st, results = reads
    seen = Counter()
    for path, (f, res) in results.items():
        if path in manifest or not res.ok:
            continue
        dtype = f.name.data_type
        if dtype in CARE_DATE:
            value = res.message.value(CARE_DATE[dtype])
            assert value[:8] == f.name.date, (path, CARE_DATE[dtype], value)
            seen[dtype] += 1
        else:
            assert f.name.date == "-" and dtype in ("ADT-00", "ADT-61", "PPR-01")
    assert set(seen) == set(CARE_DATE)


def test_a_stay_shares_one_visit_number(reads):
    st, _ = reads
    pid = HEAVY_PATIENT_ID
    admissions = {m.segment("PV1")[19].raw: m.value("PV1.44") for m in _current(st, pid, "ADT-22")}
    discharges = {m.segment("PV1")[19].raw: m.value("PV1.44") for m in _current(st, pid, "ADT-52")}
    assert admissions and admissions == discharges  # same 入院番号 and admission time
    visits = {m.segment("PV1")[19].raw for m in _current(st, pid, "ADT-12")}
    assert len(visits) == len(_current(st, pid, "ADT-12")) and "" not in visits
