"""Memo journal: append-only, corrections, fsync durability across kill -9, FHIR shape."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fhir_gateway.memos import MemoError, MemoJournal, memo_to_fhir


def test_append_and_correct(tmp_path):
    j = MemoJournal(tmp_path)
    a = j.append("F1", "P1", "ワーファリン内服中", author="naika", person="山田", staff_no="12")
    j.append("F1", "P2", "other patient", author="naika")
    b = j.append("F1", "P1", "ワーファリンではなくエリキュース", author="naika", person="山田",
                 staff_no="12", corrects=a.id)
    memos = j.for_patient("F1", "P1")
    assert [m.id for m in memos] == [b.id, a.id]
    old = next(m for m in memos if m.id == a.id)
    assert old.status == "entered-in-error" and old.corrected_by == [b.id]
    assert old.text == "ワーファリン内服中"  # never edited
    assert j.verify("F1") == (True, 3)
    with pytest.raises(MemoError):
        j.append("F1", "P2", "fix", author="x", corrects=a.id)  # other patient's memo
    with pytest.raises(MemoError):
        j.append("F1", "P1", "   ", author="x")
    with pytest.raises(MemoError):
        j.append("../x", "P1", "t", author="x")


def test_tampering_is_detected(tmp_path):
    j = MemoJournal(tmp_path)
    for i in range(3):
        j.append("F1", "P1", f"memo {i}", author="a")
    path = j.path("F1")
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], lines[2]]) + "\n", encoding="utf-8")
    assert j.verify("F1")[0] is False


def test_torn_tail_is_skipped_and_isolated(tmp_path):
    j = MemoJournal(tmp_path)
    j.append("F1", "P1", "first", author="a")
    with open(j.path("F1"), "ab") as fh:
        fh.write(b'{"id": "memo-torn", "pat')
    j.append("F1", "P1", "second", author="a")
    assert sorted(m.text for m in j.for_patient("F1", "P1")) == ["first", "second"]


def test_memo_as_document_reference(tmp_path):
    j = MemoJournal(tmp_path)
    a = j.append("F1", "P1", "転倒歴あり", author="er", person="佐藤", staff_no="9")
    b = j.append("F1", "P1", "転倒歴なし(訂正)", author="er", staff_no="9", corrects=a.id)
    res = {r["id"]: r for r in j.patient_source("F1", "P1")}
    assert res[a.id]["resourceType"] == "DocumentReference"
    assert res[a.id]["status"] == "entered-in-error" and res[b.id]["status"] == "current"
    assert res[b.id]["relatesTo"][0]["target"]["reference"] == f"DocumentReference/{a.id}"
    text = base64.b64decode(res[a.id]["content"][0]["attachment"]["data"]).decode()
    assert text == "転倒歴あり" and res[a.id]["subject"]["reference"] == "Patient/P1"
    assert res[a.id]["meta"]["source"] == "memos/F1.jsonl"
    assert "佐藤" in res[a.id]["author"][0]["display"]
    assert memo_to_fhir(j.get("F1", b.id))["id"] == b.id


def test_acknowledged_memos_survive_kill_9(tmp_path):
    """A child appends memos and prints each id after append() returns; we SIGKILL it mid-stream
    and every acknowledged id must be in the journal."""
    code = textwrap.dedent(f"""
        import sys
        from fhir_gateway.memos import MemoJournal
        j = MemoJournal({str(tmp_path)!r})
        i = 0
        while True:
            m = j.append("F1", "P1", "memo %d " % i + "x" * 500, author="a")
            print(m.id, flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked = []
    for line in proc.stdout:
        acked.append(line.strip())
        if len(acked) >= 40:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    acked += [ln.strip() for ln in proc.stdout.read().splitlines() if ln.strip()]
    stored = {m.id for m in MemoJournal(tmp_path).for_patient("F1", "P1")}
    assert set(acked) <= stored and len(acked) >= 40
    assert MemoJournal(tmp_path).verify("F1")[0]


def test_memo_served_by_id_through_the_fhir_api(tmp_path, server_factory):
    """A memo is readable as DocumentReference/{id} (read, vread, history) and searchable."""
    import requests
    from conftest import build_hospital, make_token

    hospital = build_hospital(tmp_path)
    pid = hospital.patients[0]
    memo = MemoJournal(hospital.data_dir).append(hospital.facility, pid, "API から読めるメモ",
                                                 author="tester", person="試験 太郎")
    srv = server_factory(["--config", str(hospital.config)], token=make_token(hospital.data_dir))
    base, headers = srv.base, srv.headers
    r = requests.get(f"{base}/DocumentReference/{memo.id}", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["subject"]["reference"] == f"Patient/{pid}" and doc["meta"]["versionId"] == "1"
    assert base64.b64decode(doc["content"][0]["attachment"]["data"]).decode() == "API から読めるメモ"
    assert requests.get(f"{base}/DocumentReference/{memo.id}/_history/1", headers=headers,
                        timeout=30).status_code == 200
    assert requests.get(f"{base}/DocumentReference/{memo.id}/_history/2", headers=headers,
                        timeout=30).status_code == 404
    assert requests.get(f"{base}/DocumentReference/memo-{'0' * 32}", headers=headers,
                        timeout=30).status_code == 404
    found = requests.get(f"{base}/DocumentReference", params={"patient": pid}, headers=headers,
                         timeout=30).json()
    assert memo.id in [e["resource"]["id"] for e in found.get("entry", [])]
