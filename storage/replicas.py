"""Several copies of one storage (primary first, then mirrors) and which one to read from.

A root is healthy when it exists, is a directory and can be listed.  The first healthy root in
configuration order serves reads; when the primary fails, reads move to the next root and the
switch is visible through :meth:`ReplicaSet.status` (the server puts it in a header, the viewer
in its banner).  Health is re-checked at most every ``recheck`` seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .layout import Storage

log = logging.getLogger(__name__)


@dataclass
class RootState:
    path: Path
    healthy: bool = True
    reason: str = ""
    checked: float = 0.0


class ReplicaSet:
    def __init__(self, roots: list[Path] | tuple[Path, ...], recheck: float = 5.0) -> None:
        if not roots:
            raise ValueError("a replica set needs at least one root")
        self.states = [RootState(Path(r)) for r in roots]
        self.storages = [Storage(r) for r in roots]
        self.recheck = recheck
        self._lock = threading.Lock()
        self._active = 0

    def _probe(self, state: RootState) -> None:
        try:
            if not state.path.is_dir():
                raise OSError(f"{state.path} is missing or not a directory")
            with os.scandir(state.path) as it:
                next(it, None)
            state.healthy, state.reason = True, ""
        except OSError as exc:
            state.healthy, state.reason = False, str(exc)
        state.checked = time.monotonic()

    def active(self) -> tuple[Storage, int]:
        """The storage to read from now and its index (0 = primary)."""
        now = time.monotonic()
        with self._lock:
            for i, state in enumerate(self.states):
                if now - state.checked > self.recheck:
                    self._probe(state)
                if state.healthy:
                    if i != self._active:
                        log.warning("storage failover: reading from root %d (%s); %s", i,
                                    state.path, "; ".join(s.reason for s in self.states[:i]))
                        self._active = i
                    return self.storages[i], i
            return self.storages[0], 0

    def report_failure(self, index: int, reason: str) -> None:
        """Called when a read from root ``index`` failed with an I/O error: fail over now."""
        with self._lock:
            st = self.states[index]
            st.healthy, st.reason, st.checked = False, reason, time.monotonic()

    def status(self) -> list[dict]:
        self.active()
        return [
            {"index": i, "root": str(s.path), "healthy": s.healthy, "reason": s.reason,
             "active": i == self._active}
            for i, s in enumerate(self.states)
        ]

    @property
    def failed_over(self) -> bool:
        return self._active != 0
