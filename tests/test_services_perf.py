"""The service layer's caches and failover: what the REST API and the viewer both rely on.

Each test changes files under a live :class:`FacilityService` and checks the next call sees it:
the caches only save work, the files stay the truth."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import LAB_CODES, PEOPLE, _msg, _pid_seg, _write, build_hospital
from fhir_gateway.config import from_args
from fhir_gateway.services import Gateway, NotFound
from test_drill import PATIENTS, clean_tree

FAC = "1310000001"


def _svc(roots: list[Path], tmp_path: Path, **kw):
    cfg = from_args([str(r) for r in roots], FAC, data_dir=str(tmp_path / "data"), **kw)
    return Gateway(cfg).facility(FAC)


# --- failover ------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["rename", "emptied"])
def test_vanished_root_fails_over_at_once(tmp_path: Path, how: str) -> None:
    """Storage.patient_dir answers None (not OSError) when the root is gone: the service must
    still fail over on the very next call, not answer "not found" until the next probe."""
    east, west = tmp_path / "east", tmp_path / "west"
    clean_tree(east)
    shutil.copytree(east, west)
    svc = _svc([east, west], tmp_path)
    pid = PATIENTS[0]
    assert svc.read("Patient", pid)["id"] == pid
    assert svc.storage_status(full=False)["active"] == 0
    if how == "rename":
        east.rename(tmp_path / "east-gone")
    else:  # an unmounted mount point: the folder stays, empty
        for child in east.iterdir():
            shutil.rmtree(child)
    # no sleep: the replica set would re-probe the active root only after a second
    assert svc.read("Patient", pid)["id"] == pid
    assert svc.patient_exists(pid)
    assert len(svc.patient_bundle(pid).resources) > 5
    st = svc.storage_status(full=True)
    assert st["active"] == 1 and st["failed_over"]
    assert st["roots"][0]["healthy"] is False


def test_unknown_patient_on_a_healthy_root_is_not_a_failover(tmp_path: Path) -> None:
    east, west = tmp_path / "east", tmp_path / "west"
    clean_tree(east)
    shutil.copytree(east, west)
    svc = _svc([east, west], tmp_path)
    with pytest.raises(NotFound):
        svc.read("Patient", "9999999")
    assert not svc.patient_exists("9999999")
    assert svc.storage_status(full=False)["active"] == 0


# --- extended storage in the patient compartment -------------------------------------------------

def _hospital_with_extended(tmp_path: Path):
    from test_extended import ORU, VITALS, NOTE, folder
    from storage.encoding import encode_iso2022jp
    import test_extended as te
    h = build_hospital(tmp_path / "h", 2)
    pid = h.patients[0]
    ext = tmp_path / "ext"
    old = te.PID
    te.PID = pid  # the helper writes below te.PID
    try:
        cda = b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"/>'
        base = f"{pid}_20240101_{NOTE}_000000000000001"
        folder(ext, "20240101", NOTE, f"{base}_20240101100000000_01_2", {"doc.xml": cda})
        folder(ext, "20240101", NOTE, f"{base}_20240102100000000_01_1", {"doc.xml": cda + b" "})
        folder(ext, "20240101", VITALS, f"{pid}_20240101_{VITALS}_000000020240101_"
               "202401011500321_1", {"main_document.hl7": encode_iso2022jp(
                   ORU.replace(old, pid))})
        folder(ext, "20240101", VITALS, "not_a_content_folder", {})
    finally:
        te.PID = old
    cfg = from_args([str(h.root)], FAC, data_dir=str(h.data_dir), extended=[str(ext)],
                    receipts=[str(h.receipts)])
    return Gateway(cfg).facility(FAC), pid, ext


def test_extended_documents_in_compartment_read_and_search(tmp_path: Path) -> None:
    from conformance import Criterion, Query, registry
    svc, pid, ext = _hospital_with_extended(tmp_path)
    data = svc.everything(pid)
    docs = [r for r in data.resources if r["resourceType"] == "DocumentReference"]
    vitals = [r for r in data.resources if r["resourceType"] == "Observation"
              and r["id"].split(".")[2] == "EXT"]
    assert len(docs) == 2 and {d["status"] for d in docs} == {"current"}
    assert len(vitals) == 2 and all(v["subject"]["reference"] == f"Patient/{pid}" for v in vitals)
    assert all(d["meta"]["source"].startswith("extended/") for d in docs)
    assert any(p.path.startswith("extended/") and "not_a_content_folder" in p.path
               for p in data.problems)
    # the versioned note: read = current version, history = both, vread of version 1
    note = next(d for d in docs if d["meta"]["versionId"] == "2")
    assert svc.read("DocumentReference", note["id"]) == note
    hist = svc.history("DocumentReference", note["id"])
    assert [h["meta"]["versionId"] for h in hist] == ["2", "1"]
    assert svc.vread("DocumentReference", note["id"], "1")["status"] == "superseded"
    assert svc.read("Observation", vitals[0]["id"]) == vitals[0]
    with pytest.raises(NotFound):
        svc.read("DocumentReference", f"{pid}.20240101.EXT.aaaaaaaaaa")
    # only DocumentReference asked for: no lab Observations, no vitals
    only = svc.patient_bundle(pid, {"DocumentReference"})
    assert {r["resourceType"] for r in only.resources} == {"DocumentReference"}
    # search by _id names the patient through the extended id
    rdef = registry().get("Observation")
    q = Query("Observation", [Criterion(rdef.params["_id"], None, [vitals[0]["id"]])])
    assert [r["id"] for r in svc.search("Observation", q).matches] == [vitals[0]["id"]]
    # a new document shows up on the next request
    from test_extended import NOTE, folder
    import test_extended as te
    old, te.PID = te.PID, pid
    try:
        folder(ext, "20240105", NOTE, f"{pid}_20240105_{NOTE}_000000000000002_"
               "20240105100000000_01_1", {"doc.xml": b"<x/>"})
    finally:
        te.PID = old
    assert len([r for r in svc.everything(pid).resources
                if r["resourceType"] == "DocumentReference"]) == 3
