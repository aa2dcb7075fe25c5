"""The file job store across processes: the server's workers update one job's state at once
(a cancel in one, the runner's progress in another); no update may be lost."""

from __future__ import annotations

import multiprocessing

from fhir_gateway.bulk.store import JobStore


def _writer(data_dir: str, jid: str, who: int, n: int) -> None:
    store = JobStore(data_dir)
    for k in range(n):
        store.update(jid, **{f"w{who}_{k}": k})


def test_concurrent_updates_from_processes_all_kept(tmp_path):
    store = JobStore(tmp_path)
    store.create({"id": "job1", "status": "running"})
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), "job1", w, 60)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    job = store.get("job1")
    assert job is not None
    missing = [f"w{w}_{k}" for w in range(4) for k in range(60) if f"w{w}_{k}" not in job]
    assert missing == []


def test_cancel_is_not_overwritten_by_a_later_update(tmp_path):
    store = JobStore(tmp_path)
    store.create({"id": "job2", "status": "queued"})
    store.update("job2", status="cancelled")
    store.update("job2", status="running", done=3)
    job = store.get("job2")
    assert job is not None and job["status"] == "cancelled" and job["done"] == 3
