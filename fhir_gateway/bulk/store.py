"""Export job state: one JSON document per job, behind a deliberately small interface
(``create / get / update / all / delete`` and ``claim``) so another state store (e.g.
PostgreSQL) can replace it.  This one keeps ``{data_dir}/bulk-jobs/{id}.json`` (atomic
replace) and uses an ``flock`` per job as the claim: the process that runs a job holds the lock,
so a job whose lock is free while it is queued or running has lost its runner (a restart) and
may be resumed by any worker.  An update reads, changes and writes the document under one
``flock`` of the store (the server's worker processes share it: a cancel handled by one worker
must not be overwritten by the runner's progress in another)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import Iterator, Protocol

import orjson

JOB_DIR = "bulk-jobs"


class JobClaim(Protocol):
    def release(self) -> None: ...


class _FlockClaim:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def release(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


class JobStore:
    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir) / JOB_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, jid: str) -> Path:
        if not jid.isalnum():
            raise KeyError(jid)
        return self.dir / f"{jid}.json"

    def create(self, job: dict) -> None:
        self._write(job)

    def get(self, jid: str) -> dict | None:
        try:
            return orjson.loads(self._path(jid).read_bytes())
        except (KeyError, FileNotFoundError, orjson.JSONDecodeError):
            return None

    def update(self, jid: str, **changes) -> dict | None:
        """Merge ``changes`` into the job (a cancelled job stays cancelled)."""
        with self._lock, self._locked():
            job = self.get(jid)
            if job is None:
                return None
            if job.get("status") == "cancelled" and changes.get("status") not in (None,
                                                                                  "cancelled"):
                changes.pop("status")
            job.update(changes)
            self._write(job)
            return job

    def all(self) -> list[dict]:
        out = []
        for p in sorted(self.dir.glob("*.json")):
            job = self.get(p.stem)
            if job is not None:
                out.append(job)
        return out

    def delete(self, jid: str) -> None:
        for p in (self._path(jid), self.dir / f"{jid}.lock"):
            p.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The store's update lock, across processes (``flock`` of ``.update.lock``)."""
        fd = os.open(self.dir / ".update.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # (releases the lock)

    def claim(self, jid: str) -> JobClaim | None:
        """Exclusive right to run the job in this process, or None when another holds it."""
        fd = os.open(self.dir / f"{jid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return _FlockClaim(fd)

    def _write(self, job: dict) -> None:
        path = self._path(job["id"])
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(orjson.dumps(job))
        os.replace(tmp, path)
