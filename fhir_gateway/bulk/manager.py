"""Bulk Data jobs: kick-off, status, cancel, and the background runner of every worker process.

Jobs never run in a request thread.  Each server process has one scheduler thread and a
bounded pool of job threads (``concurrent`` jobs); a job is *claimed* through the job store
(an ``flock``), so with several worker processes a job runs exactly once, and a job left
``queued`` or ``running`` by a process that died (a restart) is found by the scheduler and run
again from its last checkpoint — the chunks of patients already in its files are not exported
again (``attempts`` counts; after :data:`MAX_ATTEMPTS` it fails visibly).
Finished jobs and their files are deleted ``keep_hours`` after completion."""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fhir_gateway.services import FacilityService
from fhir_gateway.state_errors import StateUnavailable

from .export import ExportCancelled, default_processes, run_export
from .groups import GroupStore, member_ids
from .store import JobStore

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
PIDS = ".pids.json"  # in a job's folder: the patients it exports, in order (for a resume)
ACTIVE = ("queued", "running")


@dataclass
class Settings:
    dir: Path
    keep_hours: float = 24.0
    jobs_per_client: int = 2
    concurrent: int = 1  # job threads per server process
    processes: int = 0  # mapping processes per job (0 = cores + 1, at most 3)
    max_file_mb: float = 256.0
    poll_seconds: float = 2.0
    dask: str = ""  # [export] dask: map the chunks on this Dask scheduler's workers


class TooManyJobs(Exception):
    pass


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class BulkManager:
    def __init__(self, gateway, data_dir: Path, settings: Settings,
                 jobs: JobStore | None = None) -> None:
        self.gateway = gateway
        self.settings = settings
        self.jobs = jobs if jobs is not None else JobStore(data_dir)
        self.groups = GroupStore(data_dir)
        self._pool = ThreadPoolExecutor(max(1, settings.concurrent),
                                        thread_name_prefix="bulk-export")
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- API side ---------------------------------------------------------------------------
    def kick_off(self, facility: str, owner: str, level: str, params: dict[str, list[str]],
                 request_url: str, group: str | None = None) -> dict:
        active = [j for j in self.jobs.all() if j.get("owner") == owner
                  and j.get("status") in ACTIVE]
        if len(active) >= self.settings.jobs_per_client:
            raise TooManyJobs(f"{len(active)} exports of this client are still running "
                              f"(limit {self.settings.jobs_per_client})")
        job: dict[str, object] = {"id": secrets.token_hex(12), "facility": facility, "owner": owner,
               "level": level, "group": group, "params": params, "request": request_url,
               "status": "queued", "created": time.time(), "transactionTime": _now_iso(),
               "attempts": 0, "done": 0, "total": 0, "output": [], "error": [],
               "finished": None, "message": None}
        self.jobs.create(job)
        self.start()
        self._wake.set()
        return job

    def get(self, jid: str, owner: str) -> dict | None:
        job = self.jobs.get(jid)
        if job is None or job.get("owner") != owner or job.get("status") == "cancelled":
            return None
        return job

    def cancel(self, jid: str, owner: str) -> bool:
        job = self.get(jid, owner)
        if job is None:
            return False
        self.jobs.update(jid, status="cancelled", finished=time.time())
        if job.get("status") not in ACTIVE:
            self._remove(jid)
        return True

    def file_path(self, job: dict, name: str) -> Path | None:
        """The file of a completed job named in its manifest (nothing else is served)."""
        names = {f["name"] for f in job.get("output", [])} | \
            {f"errors/{f['name']}" for f in job.get("error", [])}
        if job.get("status") != "completed" or name not in names:
            return None
        return self.settings.dir / job["id"] / name

    # -- runner side --------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="bulk-scheduler",
                                                daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                self.tick()
            except StateUnavailable as exc:  # the state database is away: say so once per poll
                log.warning("bulk scheduler: %s; retrying in %s s", exc, self.settings.poll_seconds)
            except Exception:  # the scheduler must survive anything a job file holds
                log.exception("bulk scheduler")
            self._wake.wait(self.settings.poll_seconds)
            self._wake.clear()

    def tick(self) -> None:
        """Claim runnable jobs (new, or orphaned by a dead process) and expire old ones."""
        now = time.time()
        for job in self.jobs.all():
            jid = job["id"]
            status = job.get("status")
            if status in ACTIVE:
                with self._lock:
                    if jid in self._running or len(self._running) >= self.settings.concurrent:
                        continue
                claim = self.jobs.claim(jid)
                if claim is None:
                    continue  # another process runs it
                with self._lock:
                    self._running.add(jid)
                self._pool.submit(self._run, jid, claim)
            elif status == "cancelled":
                claim = self.jobs.claim(jid)  # not while its runner is still stopping
                if claim is not None:
                    claim.release()
                    self._remove(jid)
            elif job.get("finished") and now - job["finished"] > self.settings.keep_hours * 3600:
                self._remove(jid)

    def _remove(self, jid: str) -> None:
        shutil.rmtree(self.settings.dir / jid, ignore_errors=True)
        self.jobs.delete(jid)

    def _run(self, jid: str, claim) -> None:
        try:
            job = self.jobs.get(jid)
            if job is None or job.get("status") not in ACTIVE:
                return
            attempts = job.get("attempts", 0) + 1
            if attempts > MAX_ATTEMPTS:
                self.jobs.update(jid, status="failed", finished=time.time(),
                                 message=f"the export was interrupted {MAX_ATTEMPTS} times "
                                         "(server restarts) and was given up")
                return
            out = self.settings.dir / jid
            resume = job.get("checkpoint")
            if not resume or not (out / PIDS).exists():
                resume = None
                shutil.rmtree(out, ignore_errors=True)  # no checkpoint: start again cleanly
            self.jobs.update(jid, status="running", attempts=attempts,
                             done=resume["patients"] if resume else 0,
                             resumed_from=resume["patients"] if resume else None)
            try:
                files, errors = self._export(job, out, resume)
            except ExportCancelled:
                self._remove(jid)
                return
            except Exception as exc:
                log.exception("export %s failed", jid)
                shutil.rmtree(out, ignore_errors=True)
                self.jobs.update(jid, status="failed", finished=time.time(),
                                 message=f"the export failed: {type(exc).__name__}: {exc}")
                return
            if (self.jobs.get(jid) or {}).get("status") == "cancelled":
                shutil.rmtree(out, ignore_errors=True)
                self.jobs.delete(jid)
                return
            self.jobs.update(jid, status="completed", finished=time.time(), output=files,
                             error=errors, checkpoint=None)
        finally:
            claim.release()
            with self._lock:
                self._running.discard(jid)

    def _dask_executor(self):
        """The ``[export] dask`` cluster's executor (one client per manager), or None: local
        processes.  A cluster that cannot be reached is logged and the job runs locally."""
        if not self.settings.dask:
            return None
        client = getattr(self, "_dask_client", None)
        if client is None or client.status != "running":
            try:
                from distributed import Client
                client = self._dask_client = Client(self.settings.dask, timeout=20)
            except Exception as exc:  # ImportError, OSError, TimeoutError
                log.warning("export: Dask scheduler %s unusable (%s); mapping locally",
                            self.settings.dask, exc)
                return None
        return client.get_executor(pure=False)

    def _export(self, job: dict, out: Path, resume: dict | None = None):
        svc: FacilityService | None = self.gateway.facility(job["facility"])
        if svc is None:
            raise RuntimeError(f"facility {job['facility']} is no longer configured")
        extra: list[dict] = []
        if job["level"] == "group":
            group = self.groups.get(job["facility"], job["group"])
            if group is None:
                raise RuntimeError(f"Group/{job['group']} no longer exists")
            pids = list(member_ids(group))
        else:
            from fhir_gateway.services import WalkIndex
            pids = WalkIndex(svc).all()
            if job["level"] == "system":
                extra = list(self.groups.list(job["facility"]))
        if resume is not None:  # the patients the checkpoint counted chunks of
            pids = json.loads((out / PIDS).read_text(encoding="utf-8"))
        else:
            out.mkdir(parents=True, exist_ok=True)
            (out / PIDS).write_text(json.dumps(pids), encoding="utf-8")
        jid = job["id"]
        self.jobs.update(jid, total=len(pids))
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if time.monotonic() - last[0] > 0.5 or done == total:
                last[0] = time.monotonic()
                self.jobs.update(jid, done=done)

        def checkpoint(state: dict) -> None:
            self.jobs.update(jid, checkpoint=state)

        def cancelled() -> bool:
            return (self.jobs.get(jid) or {}).get("status") == "cancelled"

        sources = getattr(svc, "_sources", [])

        def plugin_extras(pid: str) -> list[dict]:
            out_: list[dict] = []
            for fn in sources:
                try:
                    out_.extend(fn(svc.code, pid))
                except Exception:
                    log.exception("patient source failed in export")
            return out_

        files, errors = run_export(
            svc, pids, job["params"], out,
            processes=self.settings.processes or default_processes(),
            max_file_bytes=int(self.settings.max_file_mb * (1 << 20)),
            extra_resources=extra, plugin_extras=plugin_extras if sources else None,
            progress=progress, cancelled=cancelled, executor=self._dask_executor(),
            resume=resume, checkpoint=checkpoint)
        return ([{"type": f["type"], "name": f["name"], "count": f["count"]} for f in files
                 if f["count"]],
                [{"type": f["type"], "name": f["name"], "count": f["count"]} for f in errors
                 if f["count"]])
