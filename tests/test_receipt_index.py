"""The receipt index (fhir_gateway/index/receipts.py) and the byte-range reader behind it:
build, refresh, a corrupt index file (rebuilt, not trusted), a UKE file rewritten between index
and read (size/mtime, or bytes that no longer hold the receipt), and a server whose index is
being built elsewhere (answers without it and says so)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import requests
from conftest import BIN, FACILITY, build_hospital

from fhir_gateway.config import from_args
from fhir_gateway.index.receipts import ReceiptIndex
from fhir_gateway.services import Gateway
from fhir_gateway.synth.uke import build_record, encode_uke
from storage.uke import iter_uke_files, read_ranges, read_uke

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "receipt"


def write_uke(folder: Path, name: str, month: str, people: list[tuple[str, str]],
              pad: str = "") -> Path:
    """A 医科 UKE file, one receipt per (カルテ番号, name); ``pad`` lengthens every comment."""
    recs = [build_record("IR", {"payer": "1", "prefecture": "13", "tensuhyo": "1",
                                "facility_code": "2345678", "facility_name": "テスト病院",
                                "claim_month": month, "volume": "00", "phone": "03-0000-0000"})]
    for n, (karte, person) in enumerate(people, 1):
        recs += [build_record("RE", {"receipt_no": str(n), "receipt_type": "1112",
                                     "service_month": month, "name": person, "sex": "1",
                                     "birth_date": "19650415", "karte_no": karte,
                                     "kana": "テスト　タロウ"}),
                 build_record("HO", {"insurer_no": "  133066", "days": "1", "points": "100"}),
                 build_record("CO", {"category": "11", "burden": "1", "code": "810000001",
                                     "text": "コメント" + pad}),
                 build_record("SI", {"category": "11", "burden": "1", "code": "111000110",
                                     "points": "100", "count": "1", "day09": "1"})]
    recs.append(build_record("GO", {"total_receipts": str(len(people)),
                                    "total_points": str(100 * len(people)), "volume": "99"}))
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(encode_uke(recs))
    return p


def bump(path: Path, seconds: int = 5) -> None:
    ns = time.time_ns() + seconds * 1_000_000_000
    os.utime(path, ns=(ns, ns))


def service(h, data_dir: Path | None = None):
    cfg = from_args([str(h.root)], FACILITY, receipts=[str(h.receipts)],
                    data_dir=str(data_dir or h.data_dir))
    return Gateway(cfg).facility(FACILITY)


def claim_ids(svc, pid: str) -> list[str]:
    part = svc.claims.for_patient(pid)
    claims, problems = part.resources, part.problems
    assert not [p for p in problems if p.severity == "error"], problems
    return sorted(c["id"] for c in claims if c["resourceType"] == "Claim")


# --- the byte-range reader -----------------------------------------------------------------------

def _same(a, b) -> bool:
    def key(r):
        return ([(x.fields, x.line, x.offset, x.category) for x in r.records],
                [(i.record.line, i.category, i.unit, [c.line for c in i.comments])
                 for i in r.items], [c.line for c in r.comments])
    return key(a) == key(b)


def test_a_receipt_read_by_its_range_is_the_receipt_read_whole(tmp_path: Path) -> None:
    files = [write_uke(tmp_path / "r", "A.UKE", "202304", [(str(i), f"患者{i}") for i in range(9)])]
    bom = tmp_path / "r" / "B.csv"  # UTF-8 with a BOM and LF: offsets after the BOM
    bom.write_bytes(b"\xef\xbb\xbf" + files[0].read_bytes().decode("cp932")
                    .replace("\r\n", "\n").rstrip("\x1a").encode("utf-8"))
    files.append(bom)
    if SAMPLES.is_dir():
        files += list(iter_uke_files(SAMPLES))
    n = 0
    for p in files:
        whole = read_uke(p.read_bytes(), p.name)
        assert whole.ir is not None
        for r in whole.receipts:
            part = read_ranges(p, p.name, whole.codec, whole.skip,
                               [(whole.ir.offset, whole.ir.end, whole.ir.line), r.span])
            assert part.ir.fields == whole.ir.fields
            assert len(part.receipts) == 1 and _same(part.receipts[0], r), (p, r.receipt_no)
            n += 1
    assert n >= 18


# --- build and refresh ---------------------------------------------------------------------------

def test_build_and_refresh(tmp_path: Path) -> None:
    h = build_hospital(tmp_path / "h", 3)
    pid = h.patients[0]
    b = write_uke(h.receipts, "B.UKE", "202304", [("5001", "他人"), (str(int(pid)), "山田　太郎")])
    idx = ReceiptIndex(h.data_dir, FACILITY, [h.receipts])
    stats = idx.refresh()
    assert (stats.files, stats.receipts, stats.changed) == (2, 4, 2)
    assert (h.data_dir / "receipts" / f"{FACILITY}.sqlite3").is_file()
    assert [r.karte for r in idx.by_candidate(pid)] == [str(int(pid))] * 2
    assert idx.refresh().changed == 0  # nothing changed: nothing re-read
    # a new file, a rewritten file and a removed file
    write_uke(h.receipts, "C.UKE", "202305", [(str(int(pid)), "山田　太郎")])
    write_uke(h.receipts, "B.UKE", "202304", [("5001", "他人")])
    bump(b)
    (h.receipts / "RECEIPTC.UKE").unlink()
    stats = idx.refresh()
    assert (stats.changed, stats.removed, stats.files, stats.receipts) == (2, 1, 2, 2)
    assert len(idx.by_candidate(pid)) == 1
    # the CLI refreshes it beside the Patient index; --rebuild re-reads every file
    out = subprocess.run([str(BIN / "fhir-gateway"), "index", "--config", str(h.config),
                          "--rebuild"], capture_output=True, text=True, check=True).stdout
    assert "receipt index: 2 UKE files, 2 receipts, 2 re-read" in out, out


def test_the_service_reads_only_the_receipts_of_the_patient(tmp_path: Path) -> None:
    h = build_hospital(tmp_path / "h", 3)
    pid = h.patients[0]
    write_uke(h.receipts, "B.UKE", "202304",
              [(str(5000 + i), f"他人{i}") for i in range(40)] + [(str(int(pid)), "山田　太郎")])
    svc = service(h)
    assert len(claim_ids(svc, pid)) == 2
    assert svc.claims.mapped == 2  # of 43 receipts, only the patient's two were read
    assert svc.claims.status()["state"] == "ready"
    # a second service (another worker) opens the same file: nothing to build, nothing re-read
    other = service(h)
    assert other.claims.index.refresh().changed == 0
    assert claim_ids(other, pid) == claim_ids(svc, pid)


# --- not trusted ---------------------------------------------------------------------------------

def test_a_corrupt_index_file_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    h = build_hospital(tmp_path / "h", 2)
    pid = h.patients[0]
    svc = service(h)
    want = claim_ids(svc, pid)
    path = h.data_dir / "receipts" / f"{FACILITY}.sqlite3"
    svc.claims.index.close()
    for garbage in (b"not a database at all" * 100, path.read_bytes()[:3000]):
        path.write_bytes(garbage)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        fresh = service(h)
        assert claim_ids(fresh, pid) == want
        assert fresh.claims.status()["state"] == "ready"
        with sqlite3.connect(path) as con:
            assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        fresh.claims.index.close()
    stats = ReceiptIndex(h.data_dir, FACILITY, [h.receipts])
    path.write_bytes(b"\x00" * 4096)
    assert stats.refresh().rebuilt  # says why it threw the file away


def test_rows_that_do_not_match_the_bytes_are_not_trusted(tmp_path: Path) -> None:
    h = build_hospital(tmp_path / "h", 2)
    pid = h.patients[0]
    svc = service(h)
    want = claim_ids(svc, pid)
    path = h.data_dir / "receipts" / f"{FACILITY}.sqlite3"
    with sqlite3.connect(path) as con:  # a tampered (or stale) index: ranges off by a few bytes
        con.execute("UPDATE receipts SET start = start + 7, end = end + 7")
    fresh = service(h)
    assert claim_ids(fresh, pid) == want  # detected, re-indexed, answered right


def test_a_file_rewritten_between_index_and_read_is_reindexed(tmp_path: Path) -> None:
    h = build_hospital(tmp_path / "h", 2)
    pid = h.patients[0]
    karte = str(int(pid))
    b = write_uke(h.receipts, "B.UKE", "202304", [("5001", "他人"), (karte, "山田　太郎")])
    svc = service(h)
    assert len(claim_ids(svc, pid)) == 2
    # rewritten with longer records before the patient's receipt: every range moves
    write_uke(h.receipts, "B.UKE", "202304", [("5001", "他人"), (karte, "山田　太郎"),
                                              (karte, "山田　太郎")], pad="追記" * 20)
    bump(b)
    ids = claim_ids(svc, pid)
    assert len(ids) == 3
    row = svc.claims.index.files()[(str(h.receipts), "B.UKE")]
    assert (row.size, row.mtime_ns) == (b.stat().st_size, b.stat().st_mtime_ns)
    comments = [i for c in svc.claims.for_patient(pid).resources if c["resourceType"] == "Claim"
                for i in c.get("supportingInfo", []) if "追記" in i.get("valueString", "")]
    assert len(comments) == 2  # the new bytes were read, not the old ranges
    # rewritten keeping size and mtime (a copy tool that preserves them): the bytes at the
    # indexed ranges are checked, so the receipts are still the right ones
    st = b.stat()
    write_uke(h.receipts, "B.UKE", "202304", [(karte, "山田　太郎"), (karte, "山田　太郎"),
                                              ("5001", "他人")], pad="追記" * 20)
    assert b.stat().st_size == st.st_size
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    other = service(h)  # another worker: its cache is empty, the index file is the same
    claims = [c for c in other.claims.for_patient(pid).resources if c["resourceType"] == "Claim"]
    assert sorted(c["identifier"][0]["value"] for c in claims if "B.UKE" in c["meta"]["source"]) \
        == ["1", "2"]


# --- a server while the index is being built ------------------------------------------------------

def test_server_without_the_index_still_answers_and_says_so(tmp_path: Path, server_factory):
    from conftest import make_token
    h = build_hospital(tmp_path / "h", 2)
    pid = h.patients[0]
    lock = h.data_dir / "receipts" / f"{FACILITY}.lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # "another process is building it", for as long as we hold it
    try:
        tok = make_token(h.data_dir)
        s = server_factory(["--config", str(h.config)], token=tok)
        health = requests.get(f"{s.url}/health", headers=s.headers, timeout=10).json()
        assert health["facilities"][FACILITY]["receipt_index"]["state"] == "building"
        b = requests.get(f"{s.base}/Patient/{pid}/$everything", headers=s.headers,
                         timeout=30).json()
        types = {e["resource"]["resourceType"] for e in b["entry"]
                 if e["search"]["mode"] == "match"}
        assert "Patient" in types and "Claim" not in types
        outcome = [i for e in b["entry"] if e["search"]["mode"] == "outcome"
                   for i in e["resource"]["issue"]]
        assert any("receipt index is being built" in i["diagnostics"] for i in outcome), outcome
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    # the workers' start-up threads were waiting for the lock: they build it now, not a request
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = requests.get(f"{s.url}/health", headers=s.headers,
                             timeout=10).json()["facilities"][FACILITY]["receipt_index"]
        if state["state"] == "ready" and state.get("complete"):
            break
        time.sleep(0.1)
    assert state["state"] == "ready" and state["complete"], state
    b = requests.get(f"{s.base}/Patient/{pid}/$everything", headers=s.headers, timeout=30).json()
    assert "Claim" in {e["resource"]["resourceType"] for e in b["entry"]}


def test_server_builds_the_index_at_start_up(tmp_path: Path, server_factory) -> None:
    from conftest import make_token
    h = build_hospital(tmp_path / "h", 2)
    s = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # no request but /health: the build is the server's own
        state = requests.get(f"{s.url}/health", headers=s.headers, timeout=10).json()["facilities"][FACILITY]
        if state["receipt_index"]["state"] == "ready" and state["receipt_index"]["complete"]:
            break
        time.sleep(0.1)
    assert state["receipt_index"]["receipts"] == 2, state


def test_the_stub_is_what_the_full_mapping_writes(tmp_path: Path) -> None:
    from mappers.claim import ClaimContext, claim_stub, map_receipt
    files = [write_uke(tmp_path / "r", "A.UKE", "202304", [(str(i), f"患者{i}") for i in range(5)])]
    if SAMPLES.is_dir():
        files += list(iter_uke_files(SAMPLES))
    for p in files:
        uf = read_uke(p.read_bytes(), p.name)
        for r in uf.receipts:
            ctx = ClaimContext(FACILITY, p.name, None, "2026-01-01T00:00:00+09:00", uf.ir)
            stub = claim_stub(r, ctx)
            full = map_receipt(r, ctx)[0]
            assert stub == {**{k: full[k] for k in stub if k != "meta"},
                            "meta": {"lastUpdated": full["meta"]["lastUpdated"]}}
