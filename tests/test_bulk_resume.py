"""A Bulk export interrupted after some chunks continues from its last checkpoint (issue 12):
the files are cut back to the checkpoint, only the remaining chunks are mapped, and the result
is exactly what an uninterrupted export writes.  Run on the export function itself (the
restart through real servers is tests/test_bulk.py::test_restart_resumes_and_limits_and_expiry:
there the job is short enough to restart from the start)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import build_hospital
from fhir_gateway.bulk.export import run_export
from fhir_gateway.config import load
from fhir_gateway.services import FacilityService, MappedCache


class Crash(Exception):
    """Stands for the server process dying between two chunks."""


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    h = build_hospital(tmp_path_factory.mktemp("bulk-resume"), n_patients=6)
    cfg = load(h.config)
    return FacilityService(cfg.facilities[h.facility], MappedCache(), cfg.data_dir)


def _lines(folder: Path) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for f in sorted(folder.rglob("*.ndjson")):
        out.setdefault(f.name.split(".")[0], []).extend(f.read_bytes().splitlines())
    return out


def _export(svc, out: Path, **kw):
    return run_export(svc, svc.patient_ids(), {}, out, processes=1, max_file_bytes=4096,
                      chunk_size=1, **kw)


def test_interrupted_export_resumes_from_its_checkpoint(svc, tmp_path):
    _export(svc, tmp_path / "whole")
    want = _lines(tmp_path / "whole")
    assert sum(map(len, want.values())) > 50 and len(svc.patient_ids()) >= 5

    out = tmp_path / "job"
    saved: list[dict] = []

    def crash_after_two(done: int, total: int) -> None:
        if done == 3:
            raise Crash()
    with pytest.raises(Crash):
        _export(svc, out, checkpoint=saved.append, progress=crash_after_two)
    state = saved[-1]
    assert state["chunks"] == 3 and state["patients"] == 3
    # the crash left lines past the checkpoint? they are cut off on resume
    first = next(out.glob("*.ndjson"))
    with first.open("ab") as fh:
        fh.write(b'{"resourceType": "Observation", "id": "half-written')
    seen: list[int] = []
    files, errors = _export(svc, out, resume=state, checkpoint=saved.append,
                            progress=lambda done, total: seen.append(done))
    assert seen[0] == 4 and seen[-1] == len(svc.patient_ids())  # chunks 1-3 were not redone
    assert _lines(out) == want
    assert sum(f["count"] for f in files + errors) == sum(map(len, want.values()))

    # a checkpoint whose files are gone (resumed elsewhere): starts again, same result
    again = tmp_path / "elsewhere"
    seen.clear()
    _export(svc, again, resume=state, progress=lambda done, total: seen.append(done))
    assert seen[0] == 1 and _lines(again) == want
