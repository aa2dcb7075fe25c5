"""Patient ids of every length the guideline allows are found by the storage walk, the drill,
the patient index and the API, in one tree that mixes them; a short-id layout (``<id>/<id>``)
is assumed only when the names inside say so (issue 10 item 4)."""

from __future__ import annotations

import requests

from conftest import build_hospital, make_token
from fhir_gateway.cli import main
from fhir_gateway.drill.scan import walk_patients
from fhir_gateway.index.walk import scan
from storage.layout import Storage
from treebuilder import adt00, write

IDS = ["99990010",  # 8 digits: 999/900/99990010 (900 looks like a short id, 99990010 like a date)
       "123456789", "1234567890", "123456789012", "1234567890123456", "A1B2C3D4", "12345", "123"]


def _tree(tmp_path):
    h = build_hospital(tmp_path, n_patients=2)
    for pid in IDS:
        name, text = adt00(pid)
        write(h.root, name, text)
    return h


def test_storage_drill_and_index_walks_find_every_id(tmp_path, capsys) -> None:
    h = _tree(tmp_path)
    expected = set(IDS) | set(h.patients)
    st = Storage(h.root)
    assert set(st.patient_ids()) == expected
    assert st.patient_dir("99990010") == h.root / "999" / "900" / "99990010"
    problems: list[dict] = []
    assert {pid for pid, _ in walk_patients(h.root, problems)} == expected and not problems
    found = scan(h.root, None)
    assert set(found.folders) == expected and not found.misplaced
    assert found.folders["99990010"] == "999/900/99990010"
    assert found.folders["123"] == "/".join(Storage.candidate_dirs("123")[0])

    code = main(["check", "--storage", str(h.root), "--workers", "1", "--json",
                 "--data-dir", str(tmp_path / "dd")])
    import json
    report = json.loads(capsys.readouterr().out)
    fac = report["facilities"][0]
    assert fac["patients"] == len(expected)
    assert not [p for p in fac["problems"] if p["kind"] in ("misplaced", "bad-name")]
    assert code in (0, 1)


def test_short_id_layout_only_when_names_say_so(tmp_path) -> None:
    root = tmp_path / "st"
    name, text = adt00("123")
    write(root, name, text, folder=("123", "123", "-", "ADT-00"))
    name8, text8 = adt00("99990010")
    write(root, name8, text8)
    st = Storage(root)
    assert set(st.patient_ids()) == {"123", "99990010"}
    assert st.patient_dir("123") == root / "123" / "123"
    # a level-2 folder named like its parent but holding a patient folder is no patient
    assert "999" not in set(st.patient_ids()) and "900" not in set(st.patient_ids())


def test_api_lists_and_searches_every_id(tmp_path, server_factory) -> None:
    h = _tree(tmp_path)
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))
    bundle = requests.get(f"{srv.base}/Patient", params={"_count": 100}, headers=srv.headers,
                          timeout=60).json()
    listed = {e["resource"]["id"] for e in bundle.get("entry", [])
              if e["resource"]["resourceType"] == "Patient"}
    assert set(IDS) <= listed, set(IDS) - listed
    for pid in IDS:
        r = requests.get(f"{srv.base}/Patient", params={"identifier": pid}, headers=srv.headers,
                         timeout=30).json()
        assert [e["resource"]["id"] for e in r.get("entry", [])
                if e["resource"]["resourceType"] == "Patient"] == [pid], pid
        assert requests.get(f"{srv.base}/Patient/{pid}", headers=srv.headers,
                            timeout=30).status_code == 200
