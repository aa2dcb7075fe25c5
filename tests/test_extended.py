"""Extended storage (storage/extended.py) and its mapping (mappers/extended.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.observation import Observation

from mappers.extended import ExtendedContext, extended_id, map_extended_folder, parse_extended_id
from mappers.ids import FHIR_ID
from mappers.serialize import dumps
from storage.encoding import encode_iso2022jp
from storage.extended import ExtendedStorage, main_document, parse_data_type_folder
from storage.names import BadFileName, parse_content_folder_name

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "ssmix2"
NHO_EXT = SAMPLES / "nhoHQ__SSMIX2_support_documents" / "sample" / "extended_root"
MODELS = {"DocumentReference": DocumentReference, "Observation": Observation}

PID = "0012345678"
NOTE = "^経過記録（医師）^^11506-3^経過記録^LN"
VITALS = "L-OBSERVATIONS^OBSERVATIONS^99ZL01"

ORU = (
    "MSH|^~\\&|HIS|SEND|GW|RCV|20240102000100||ORU^R30^ORU_R30|1|P|2.5||||||~ISO IR87||ISO2022-1994\r"
    f"PID|0001||{PID}^^^^PI||試験^花子^^^^^L^I\r"
    "OBR|1|000000020240101|1|01^バイタル^99ABC|||202401011500\r"
    "OBX|1|NM|9A751000000000001^収縮期血圧^JC10||120|mm(hg)^mmHg^ISO+|<130||||F|||202401010800\r"
    "OBX|2|NM|9P100000000000001^体温^JC10||37.8|cel^℃^ISO+|35.5-37.5|H|||F\r"
)


def validate(resources: list[dict]) -> None:
    for r in resources:
        MODELS[r["resourceType"]].model_validate(json.loads(dumps(r)))
        assert FHIR_ID.match(r["id"]), r["id"]


def folder(root: Path, date: str, dtype: str, name: str, files: dict[str, bytes]) -> None:
    d = root / PID[:3] / PID[3:6] / PID / date / dtype / name
    d.mkdir(parents=True)
    for fname, data in files.items():
        (d / fname).write_bytes(data)


@pytest.fixture()
def tree(tmp_path: Path) -> ExtendedStorage:
    cda = b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"/>'
    base = f"{PID}_20240101_{NOTE}_000000000000001"
    folder(tmp_path, "20240101", NOTE, f"{base}_20240101100000000_01_2", {"doc.xml": cda})
    folder(tmp_path, "20240101", NOTE, f"{base}_20240102100000000_01_1",
           {"doc.xml": cda + b" ", "figure.png": b"\x89PNG"})
    folder(tmp_path, "20240101", VITALS,
           f"{PID}_20240101_{VITALS}_000000020240101_202401011500321_1",
           {"main_document.hl7": encode_iso2022jp(ORU)})
    folder(tmp_path, "-", NOTE, f"{PID}_-_{NOTE}_000000000000009_20240301000000000_0", {})
    folder(tmp_path, "20240101", VITALS, f"9999999_20240101_{VITALS}_1_202401011500321_1", {})
    folder(tmp_path, "20240101", VITALS, "not_a_content_folder", {})
    return ExtendedStorage(tmp_path)


def test_content_folder_names():
    six = parse_content_folder_name(f"{PID}_20160101_{VITALS}_000000020160101_201601011500321_1")
    assert (six.data_type, six.order_no, six.department, six.flag) == (
        VITALS, "000000020160101", "-", "1")
    dt = "A_B^名^^11506-3^経過記録^LN"  # data type holding '_' is taken from the parent folder
    seven = parse_content_folder_name(f"{PID}_20160101_{dt}_K1_20160101150032100_01_2", dt)
    assert (seven.data_type, seven.order_no, seven.department, seven.flag) == (dt, "K1", "01", "2")
    with pytest.raises(BadFileName):
        parse_content_folder_name("a_b_c")
    with pytest.raises(BadFileName):
        parse_content_folder_name(f"{PID}_20160101_{VITALS}_K_notatime_9")


def test_data_type_folder_names():
    d = parse_data_type_folder(NOTE)
    assert (d.local_code, d.local_name, d.code, d.name, d.system) == (
        "", "経過記録（医師）", "11506-3", "経過記録", "LN")
    v = parse_data_type_folder(VITALS)
    assert (v.local_code, v.local_name, v.local_system, v.code) == (
        "L-OBSERVATIONS", "OBSERVATIONS", "99ZL01", "")


def test_main_document_detection():
    assert main_document(["main_document.hl7", "x.css"]) == ("main_document.hl7", "hl7")
    assert main_document(["a.xml", "b.png"]) == ("a.xml", "cda")
    assert main_document(["report.pdf"]) == ("report.pdf", "pdf")
    assert main_document(["a.png", "b.png"]) is None


def test_versions_rejects_and_misplaced(tree: ExtendedStorage):
    recs, rejects = tree.records(PID)
    assert len(recs) == 3
    note = next(r for r in recs.values() if r.key.data_type == NOTE and r.key.date == "20240101")
    assert [v.name.flag for v in note.history] == ["2", "1"]
    assert note.current.name.timestamp == "20240102100000000"
    deleted = next(r for r in recs.values() if r.key.date == "-")
    assert deleted.deleted and deleted.current is None
    assert len(rejects) == 2
    assert any("patient 9999999" in (r.misplaced or "") for r in rejects)
    assert any(r.name is None and "parts" in (r.name_error or "") for r in rejects)


def test_document_reference_and_vitals(tree: ExtendedStorage):
    recs, _ = tree.records(PID)
    out = []
    for rec in recs.values():
        for i, v in enumerate(rec.history, 1):
            files = tree.load(v, with_data=[v.main[0]] if v.main else [])
            out += map_extended_folder(v, ExtendedContext("1312345678", tuple(files), version=i))
    validate(out)
    docs = {(d["id"], d["status"]): d for d in out if d["resourceType"] == "DocumentReference"}
    statuses = sorted(s for _, s in docs)
    assert statuses == ["current", "current", "entered-in-error", "superseded"]
    note = next(d for (i, s), d in docs.items() if s == "current" and "11506-3" in json.dumps(d))
    assert note["type"]["coding"][0] == {"system": "http://loinc.org", "code": "11506-3",
                                         "display": "経過記録"}
    assert [c["attachment"]["title"] for c in note["content"]] == ["doc.xml", "figure.png"]
    assert note["content"][0]["attachment"]["contentType"] == "application/xml"
    assert note["content"][1]["attachment"]["size"] == 4
    assert note["context"]["period"]["start"] == "2024-01-01"
    assert note["context"]["practiceSetting"]["coding"][0]["code"] == "01"
    assert note["meta"]["source"].startswith(f"extended/001/234/{PID}/20240101/")
    assert note["meta"]["versionId"] == "2"
    superseded = next(d for (i, s), d in docs.items() if s == "superseded")
    assert superseded["id"] == note["id"]  # a revision keeps the id
    obs = [o for o in out if o["resourceType"] == "Observation"]
    assert len(obs) == 2
    sbp, temp = obs
    assert sbp["meta"]["profile"] == [
        "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Observation_VitalSigns"]
    assert sbp["category"][0]["coding"][0]["code"] == "vital-signs"
    assert {"system": "http://loinc.org", "code": "8480-6",
            "display": "Systolic blood pressure"} in sbp["code"]["coding"]
    assert sbp["valueQuantity"]["code"] == "mm[Hg]" and sbp["valueQuantity"]["value"] == 120
    assert sbp["effectiveDateTime"] == "2024-01-01T08:00:00+09:00"
    assert temp["effectiveDateTime"] == "2024-01-01T15:00:00+09:00"  # OBR-7 when OBX-14 empty
    assert temp["interpretation"][0]["coding"][0]["code"] == "H"
    assert temp["subject"] == {"reference": f"Patient/{PID}"}


def test_ids_resolve_by_scanning_the_patient(tree: ExtendedStorage):
    recs, _ = tree.records(PID)
    rec = next(r for r in recs.values() if r.key.data_type == VITALS)
    oid = extended_id(rec.current.name, 2)
    parsed = parse_extended_id(oid)
    assert parsed is not None and parsed.patient_id == PID and parsed.position == ("2",)
    found, _ = tree.records(parsed.patient_id, dates=[parsed.date])
    hits = [r for r in found.values() if extended_id(r.current.name) == oid.rsplit(".", 1)[0]]
    assert [h.key for h in hits] == [rec.key]
    assert parse_extended_id(f"{PID}.20240101.OMP-01.1") is None
    assert parse_extended_id("../x.20240101.EXT.aaaaaaaaaa") is None


def test_nho_public_sample():
    if not NHO_EXT.is_dir():
        pytest.skip(f"public extended-storage sample not found at {NHO_EXT}")
    es = ExtendedStorage(NHO_EXT)
    assert list(es.patient_ids()) == ["0123456789"]
    recs, rejects = es.records("0123456789")
    assert len(recs) == 2 and rejects == []
    counts = []
    for rec in recs.values():
        cur = rec.current
        res = map_extended_folder(cur, ExtendedContext("1234567890", tuple(
            es.load(cur, with_data=["main_document.hl7"]))))
        validate(res)
        counts.append(len(res) - 1)
    assert sorted(counts) == [5, 15]  # one Observation per OBX, nothing dropped


def test_a_file_that_cannot_be_read_is_reported_and_the_rest_mapped(tree: ExtendedStorage):
    """A content file that vanished after listing (here a dangling link: listed as a file,
    not readable) gives a read error on that file only; the document and its vital signs
    are still mapped, each Observation with the document's meta and its own profile."""
    recs, _ = tree.records(PID)
    vit = next(r for r in recs.values() if r.key.data_type == VITALS).current
    cdir = tree.resolve(vit.relpath)
    (cdir / "gone.pdf").symlink_to(cdir / "nowhere.pdf")
    recs, _ = tree.records(PID)
    vit = next(r for r in recs.values() if r.key.data_type == VITALS).current
    assert vit.files == ("gone.pdf", "main_document.hl7")
    files = tree.load(vit, with_data=["main_document.hl7"])
    gone = next(f for f in files if f.name == "gone.pdf")
    assert gone.data is None and "No such file" in (gone.error or "") and "gone.pdf" in gone.error
    out = map_extended_folder(vit, ExtendedContext("1312345678", tuple(files), 3))
    doc, *obs = out
    assert [c["attachment"]["title"] for c in doc["content"]] == ["main_document.hl7", "gone.pdf"]
    assert "size" not in doc["content"][1]["attachment"]
    assert len(obs) == 2 and all(o["meta"] == {**doc["meta"], "profile": o["meta"]["profile"]}
                                 for o in obs)
    assert doc["meta"]["versionId"] == "3" and "profile" not in doc["meta"]
    assert obs[0]["meta"] is not obs[1]["meta"]
