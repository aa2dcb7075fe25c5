"""A patient folder with clinical data but no usable ADT-00 still has a Patient (built from a
message's PID, tagged as such), so the chart is reachable and references never dangle; a
patient whose ADT-00 was deleted stays deleted."""

from __future__ import annotations

import shutil

import requests

from conftest import build_hospital, make_token
from storage.layout import Storage


def test_patient_from_pid_when_adt00_is_missing_and_deleted_stays_deleted(tmp_path, server_factory):
    h = build_hospital(tmp_path)
    st = Storage(h.root)
    missing, deleted, broken = h.patients[0], h.patients[1], h.patients[2]
    shutil.rmtree(st.patient_dir(missing) / "-" / "ADT-00")
    for f in (st.patient_dir(broken) / "-" / "ADT-00").iterdir():
        f.write_bytes(b"")  # a zeroed file: the drill reports it, the chart stays reachable
    adt = st.patient_dir(deleted) / "-" / "ADT-00"
    for f in adt.iterdir():
        f.rename(f.with_name(f.name[:-1] + "0"))
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))

    r = requests.get(f"{srv.base}/Patient/{missing}", headers=srv.headers, timeout=30)
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["id"] == missing and p["identifier"][0]["value"] == missing
    assert [t["code"] for t in p["meta"]["tag"]] == ["derived-from-pid"]
    assert p["meta"]["source"].startswith(f"{missing[:3]}/{missing[3:6]}/{missing}/")
    assert "/ADT-00/" not in p["meta"]["source"] and p.get("name")

    ev = requests.get(f"{srv.base}/Patient/{missing}/$everything", headers=srv.headers,
                      timeout=30).json()
    assert ev["entry"][0]["resource"]["resourceType"] == "Patient"
    assert ev["entry"][0]["resource"]["id"] == missing
    found = requests.get(f"{srv.base}/Patient", params={"_id": missing}, headers=srv.headers,
                         timeout=30).json()
    assert [e["resource"]["id"] for e in found["entry"] if e["search"]["mode"] == "match"] == [missing]

    b = requests.get(f"{srv.base}/Patient/{broken}", headers=srv.headers, timeout=30)
    assert b.status_code == 200 and b.json()["meta"]["tag"][0]["code"] == "derived-from-pid"
    found = requests.get(f"{srv.base}/Patient", params={"_id": broken}, headers=srv.headers,
                         timeout=30).json()
    modes = sorted(e["search"]["mode"] for e in found["entry"])
    assert modes == ["match", "outcome"]  # the Patient, and the unreadable ADT-00 reported

    assert requests.get(f"{srv.base}/Patient/{deleted}", headers=srv.headers,
                        timeout=30).status_code == 410
    ev = requests.get(f"{srv.base}/Patient/{deleted}/$everything", headers=srv.headers, timeout=30)
    types = [e["resource"]["resourceType"] for e in ev.json().get("entry", [])] if ev.ok else []
    assert "Patient" not in types
    assert requests.get(f"{srv.base}/Patient/9999999999", headers=srv.headers,
                        timeout=30).status_code == 404
