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

@pytest.mark.parametrize("how,aged", [("rename", False), ("emptied", False), ("rename", True),
                                      ("emptied", True)])
def test_vanished_root_fails_over_at_once(tmp_path: Path, how: str, aged: bool) -> None:
    """Storage.patient_dir answers None (not OSError) when the root is gone: the service must
    still fail over on the very next call, not answer "not found" until the next probe.
    ``aged``: files old enough for the Patient read to be remembered (the short path)."""
    east, west = tmp_path / "east", tmp_path / "west"
    clean_tree(east)
    shutil.copytree(east, west)
    if aged:
        for root in (east, west):
            for dirpath, _, files in os.walk(root):
                for f in files:
                    os.utime(os.path.join(dirpath, f), (PAST, PAST))
            _age(root)
    svc = _svc([east, west], tmp_path)
    pid = PATIENTS[0]
    assert svc.read("Patient", pid)["id"] == pid
    assert (svc.storage._patient_again(pid) is not None) == aged
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


# --- the cached compartment ----------------------------------------------------------------------

PAST = time.time() - 3600


def _age(root: Path, when: float = PAST) -> None:
    """Make every folder look untouched for an hour (fresh folders are 'racy': never cached)."""
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, (when, when))


def _lab(root: Path, pid: str, day: str, n: int, flag: str = "1", value: str = "5.0",
         ts: str = "120000000") -> str:
    pidseg = _pid_seg(pid, PEOPLE[0])
    order = f"{700000 + n:015d}"
    obx = [f"OBX|{k + 1}|NM|{c}^{t}^JC10||{value}|{u}^{u}^99XYZ|1.0-9.0||||F|||{day}0900"
           for k, (c, t, u) in enumerate(LAB_CODES)]
    return _write(root, pid, day, "OML-11", order, f"{day}{ts}", flag, _msg(
        "OUL^R22^OUL_R22", f"{day}120000",
        [pidseg, f"SPM|1|{order}||023^血清^JC10|||||||||||||{day}0900",
         f"OBR|1|{order}|{order}|E001^血液学的検査^99O03|||{day}|{day}",
         f"ORC|SC|{order}|{order}||CM||||{day}1200"] + obx))


def _values(svc, pid: str) -> dict[str, str]:
    return {r["id"]: str(r.get("valueQuantity", {}).get("value"))
            for r in svc.patient_bundle(pid).resources if r["resourceType"] == "Observation"}


def test_compartment_cache_follows_the_files(tmp_path: Path) -> None:
    h = build_hospital(tmp_path / "h", 1)
    pid = h.patients[0]
    days = [f"202401{d:02d}" for d in range(1, 21)]
    names = [_lab(h.root, pid, day, n) for n, day in enumerate(days)]
    _age(h.root)
    svc = Gateway(from_args([str(h.root)], FAC, data_dir=str(h.data_dir))).facility(FAC)
    before = _values(svc, pid)
    first = svc.patient_bundle(pid).resources
    assert svc.compartments.hits >= 1  # the second call reused the sorted compartment
    page = [r["id"] for r in first]
    assert page == [r["id"] for r in svc.patient_bundle(pid).resources]
    pdir = h.root / pid[:3] / pid[3:6] / pid

    # a new file in a new date folder
    _lab(h.root, pid, "20240301", 99)
    _age(pdir, PAST + 10)
    now = _values(svc, pid)
    assert len(now) == len(before) + 3
    hits = svc.compartments.hits
    assert _values(svc, pid) == now and svc.compartments.hits == hits + 1

    # a new version: the old file renamed to flag 2 (the folder's mtime changes), a new flag 1
    folder = pdir / days[3] / "OML-11"
    old = folder / names[3]
    old.rename(folder / (names[3][:-1] + "2"))
    _lab(h.root, pid, days[3], 3, value="8.8", ts="130000000")
    _age(folder, PAST + 20)
    assert sum(v == "8.8" for v in _values(svc, pid).values()) == 3

    # a removed file
    gone = pdir / days[5] / "OML-11" / names[5]
    gone.unlink()
    _age(gone.parent, PAST + 30)
    assert len(_values(svc, pid)) == len(now) - 3

    # rewritten in place (same name, the folder untouched): noticed at the next re-stat
    svc.compartments.restat = 0
    target = pdir / days[7] / "OML-11" / names[7]
    _lab(h.root, pid, days[7], 7, value="6.6")
    os.utime(target, (PAST + 40, PAST + 40))
    _age(target.parent, PAST + 20)  # keep the folder's old mtime
    assert sum(v == "6.6" for v in _values(svc, pid).values()) == 3


def test_racy_folders_are_not_cached(tmp_path: Path) -> None:
    h = build_hospital(tmp_path / "h", 1)
    pid = h.patients[0]
    svc = Gateway(from_args([str(h.root)], FAC, data_dir=str(h.data_dir))).facility(FAC)
    n = len(_values(svc, pid))
    _lab(h.root, pid, "20240101", 1)  # same second as the listing: must still be seen
    assert len(_values(svc, pid)) == n + 3
    assert len(svc.compartments) == 0


# --- the Patient read, remembered between reads --------------------------------------------------

def _adt(root: Path, pid: str, person: tuple, ts: str, flag: str = "1") -> str:
    return _write(root, pid, "-", "ADT-00", "999999999999999", ts, flag, _msg(
        "ADT^A08^ADT_A01", ts[:14], [f"EVN||{ts[:14]}", _pid_seg(pid, person), "PV1|0001|O"]))


def test_patient_read_follows_the_files(tmp_path: Path) -> None:
    """The second read of a Patient takes two stats (``StorageSource._patient_again``); every
    change to what the full read depended on is seen by the next read."""
    h = build_hospital(tmp_path / "h", 1)
    pid = h.patients[0]
    folder = h.root / pid[:3] / pid[3:6] / pid / "-" / "ADT-00"

    for f in folder.iterdir():
        os.utime(f, (PAST, PAST))
    _age(h.root)
    svc = _svc([h.root], tmp_path)
    src = svc.storage
    family = svc.read("Patient", pid)["name"][0]["family"]
    assert src._patient_again(pid) is not None  # remembered: the next read is the short one
    assert svc.read("Patient", pid)["name"][0]["family"] == family

    # a new version (a newer file in the folder: its mtime changes)
    new = folder / _adt(h.root, pid, PEOPLE[1], "20230101090000000")
    os.utime(new, (PAST + 10, PAST + 10))  # the old file untouched: only the folder tells
    _age(folder.parent, PAST + 10)
    r = svc.read("Patient", pid)
    assert r["name"][0]["family"] == PEOPLE[1][0] and r["meta"]["versionId"] == "2"
    assert svc.read("Patient", pid)["name"][0]["family"] == PEOPLE[1][0]
    assert src._patient_again(pid) is not None

    # the current file rewritten in place (the folder's mtime kept): its size/mtime key changes
    newest = sorted(folder.iterdir())[-1]
    before = folder.stat().st_mtime
    newest.unlink()
    _adt(h.root, pid, PEOPLE[2], "20230101090000000")
    os.utime(newest, (PAST + 40, PAST + 40))
    os.utime(folder, (before, before))
    assert svc.read("Patient", pid)["name"][0]["family"] == PEOPLE[2][0]

    # rewritten in place just now (a racy file; the folder's mtime kept): seen at once
    _adt(h.root, pid, PEOPLE[3], "20230101090000000")
    os.utime(folder, (before, before))
    for _ in range(2):
        assert svc.read("Patient", pid)["name"][0]["family"] == PEOPLE[3][0]

    # the patient's folder gone: not found (nothing answered from memory)
    _age(h.root, PAST + 50)
    assert svc.read("Patient", pid)["name"][0]["family"] == PEOPLE[3][0]
    shutil.rmtree(h.root / pid[:3] / pid[3:6] / pid)
    with pytest.raises(NotFound):
        svc.read("Patient", pid)


# --- receipts: index first, map only what is asked for -------------------------------------------

def _uke(folder: Path, name: str, month: str, people: list[tuple[str, str]]) -> Path:
    from fhir_gateway.synth.uke import build_record, encode_uke
    recs = [build_record("IR", {"payer": "1", "prefecture": "13", "tensuhyo": "1",
                                "facility_code": "2345678", "facility_name": "テスト病院",
                                "claim_month": month, "volume": "00", "phone": "03-0000-0000"})]
    for n, (karte, name_) in enumerate(people, 1):
        recs += [build_record("RE", {"receipt_no": str(n), "receipt_type": "1112",
                                     "service_month": month, "name": name_, "sex": "1",
                                     "birth_date": "19650415", "karte_no": karte}),
                 build_record("HO", {"insurer_no": "  133066", "days": "1", "points": "100"}),
                 build_record("SI", {"category": "11", "burden": "1", "code": "111000110",
                                     "points": "100", "count": "1", "day09": "1"})]
    recs.append(build_record("GO", {"total_receipts": str(len(people)),
                                    "total_points": str(100 * len(people)), "volume": "99"}))
    p = folder / name
    p.write_bytes(encode_uke(recs))
    return p


def test_scan_receipts_agrees_with_read_uke(tmp_path: Path) -> None:
    from storage.uke import Receipt, read_uke, scan_receipts
    p = _uke(tmp_path, "A.UKE", "202304", [(str(i), f"患者{i}") for i in range(1, 30)])
    data = p.read_bytes()
    header, res = scan_receipts(data)
    full = read_uke(data, "A.UKE")
    assert header is not None and header.fields == full.ir.fields
    assert [(r.line, Receipt(r).karte_no, Receipt(r).receipt_no) for r in res] == \
        [(r.re.line, r.karte_no, r.receipt_no) for r in full.receipts]
    assert scan_receipts(b"") == (None, []) and scan_receipts(b"\x00garbage") == (None, [])


def test_claims_map_only_the_patients_receipts(tmp_path: Path) -> None:
    h = build_hospital(tmp_path / "h", 3)
    pid = h.patients[0]
    others = [(str(5000 + i), f"他人{i}") for i in range(40)]
    big = _uke(h.receipts, "B.UKE", "202304", others + [(str(int(pid)), "山田　太郎")])
    svc = Gateway(from_args([str(h.root)], FAC, data_dir=str(h.data_dir),
                            receipts=[str(h.receipts)])).facility(FAC)
    part = svc.claims.for_patient(pid)
    claims, problems = part.resources, part.problems
    mine = sorted(c["id"] for c in claims if c["resourceType"] == "Claim")
    assert len(mine) == 2 and not problems  # one in RECEIPTC.UKE, one in B.UKE
    mapped = [k for k in svc.cache._data if k[0] == "uke"]
    assert len(mapped) == 2  # 43 receipts indexed, 2 mapped
    assert svc.read("Claim", mine[0])["patient"]["reference"] == f"Patient/{pid}"
    # the whole facility agrees with the per-patient view
    every, _ = svc.claims.all()
    assert len(every) == 43 and svc.claims.count() == 43
    assert sorted(c["id"] for c in every
                  if c["patient"]["reference"] == f"Patient/{pid}") == mine
    # a rewritten file is re-indexed: a new receipt of the patient appears
    _uke(h.receipts, "B.UKE", "202304", others + [(str(int(pid)), "山田　太郎")] * 2)
    os.utime(big, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    again = [c for c in svc.claims.for_patient(pid).resources if c["resourceType"] == "Claim"]
    assert len(again) == 3
    assert any(r["resourceType"] == "Claim" for r in svc.everything(pid).resources)


# --- memory: the cache's charge is an upper bound of what an entry holds -------------------------

def _deep(o, seen: set) -> int:
    import sys
    if id(o) in seen:
        return 0
    seen.add(id(o))
    n = sys.getsizeof(o)
    if isinstance(o, dict):
        n += sum(_deep(k, seen) + _deep(v, seen) for k, v in o.items())
    elif isinstance(o, (list, tuple)):
        n += sum(_deep(x, seen) for x in o)
    return n


def test_cache_charge_covers_the_real_size(tmp_path: Path) -> None:
    from fhir_gateway.services.cache import per_worker_bytes
    h = build_hospital(tmp_path / "h", 3)
    svc = Gateway(from_args([str(h.root)], FAC, data_dir=str(h.data_dir))).facility(FAC)
    for pid in h.patients:
        svc.everything(pid)
    entries = [m for m in svc.cache._data.values() if m.resources]
    assert len(entries) > 20
    seen: set = set()
    real = sum(_deep(m.resources, seen) for m in entries)
    charged = sum(m.cost for m in entries)
    assert real <= charged <= 3 * real, (real, charged)
    assert svc.cache.size_bytes <= svc.cache.max_bytes
    assert per_worker_bytes(None, 2) == 64 * 2**20 and per_worker_bytes(100, 4) == 25 * 2**20


def test_compartments_are_bounded_in_bytes(tmp_path: Path) -> None:
    """Cached compartments pin mapped resources after the mapped-file cache let them go: they
    count in bytes against their own bound (half the mapped-file cache's)."""
    h = build_hospital(tmp_path / "h", 5)
    _age(h.root)
    svc = Gateway(from_args([str(h.root)], FAC, data_dir=str(h.data_dir))).facility(FAC)
    one = svc.patient_bundle(h.patients[0])
    cost = svc.compartments._data[next(iter(svc.compartments._data))].cost
    assert one.resources and cost > 0
    svc.compartments.max_bytes = int(cost * 2.5)  # room for two such charts
    for pid in h.patients:
        svc.patient_bundle(pid)
        assert svc.compartments._bytes <= svc.compartments.max_bytes
    assert 1 <= len(svc.compartments) <= 3
