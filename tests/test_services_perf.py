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
