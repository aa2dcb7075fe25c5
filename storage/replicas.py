"""Several copies of one storage (primary first, then mirrors) and which one to read from.

A root is healthy when it exists, is a directory, can be listed, and — once it has been seen
holding data — is not suddenly empty (an unmounted mount point is an empty folder).  The first
healthy root in configuration order serves reads.  When the primary fails (probe, or an I/O
error reported by a reader through :meth:`ReplicaSet.report_failure`), reads move to the next
root; the switch is logged once and visible through :meth:`status` / :attr:`failed_over` (the
server puts it in a header and ``/health``, the viewer in its banner).

Probing is cheap (one ``stat`` and the first directory entry), so the active root is re-probed
every ``recheck_active`` seconds and the others every ``recheck`` seconds: a renamed or
unmounted primary is noticed within a second, and a recovered primary is taken back.
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
    checked: float = 0.0  # monotonic time of the last probe (0 = never)
    errors: int = 0  # I/O errors reported by readers since start
    probes_failed: int = 0
    seen_data: bool = False  # the root held entries at some probe
    since: float = 0.0  # wall-clock time of the last health change
    last_error: str = ""
    hold_until: float = 0.0  # a root with a reported read error is not re-probed before this


class ReplicaSet:
    def __init__(self, roots: list[Path] | tuple[Path, ...], recheck: float = 5.0,
                 recheck_active: float = 1.0) -> None:
        if not roots:
            raise ValueError("a replica set needs at least one root")
        self.states = [RootState(Path(r)) for r in roots]
        self.storages = [Storage(r) for r in roots]
        self.recheck = recheck
        self.recheck_active = recheck_active
        self._lock = threading.Lock()
        self._active = 0
        self.failovers = 0  # how often reads moved away from a root

    # -- probing ----------------------------------------------------------------------------
    def _probe(self, state: RootState) -> None:
        was = state.healthy
        try:
            if not state.path.is_dir():
                raise OSError(f"{state.path} is missing or not a directory")
            with os.scandir(state.path) as it:
                first = next((e for e in it if not e.name.startswith(".")), None)
            if first is None:
                if state.seen_data:
                    raise OSError(f"{state.path} is empty now (not mounted?)")
            else:
                state.seen_data = True
                if first.is_dir():  # read one level down: a hung or broken mount fails here
                    with os.scandir(first.path) as it:
                        next(it, None)
            state.healthy, state.reason = True, ""
        except OSError as exc:
            state.healthy, state.reason = False, str(exc)
            state.probes_failed += 1
        state.checked = time.monotonic()
        if state.healthy != was:
            state.since = time.time()

    def _due(self, i: int, state: RootState, now: float) -> bool:
        if now < state.hold_until:  # a real read failed: the shallow probe must not undo that
            return False
        interval = self.recheck_active if i == self._active else self.recheck
        return state.checked == 0.0 or now - state.checked > interval

    # -- the API the service layer uses -----------------------------------------------------------
    def active(self) -> tuple[Storage, int]:
        """The storage to read from now and its index (0 = primary)."""
        now = time.monotonic()
        with self._lock:
            for i, state in enumerate(self.states):
                if self._due(i, state, now):
                    self._probe(state)
                if state.healthy:
                    if i != self._active:
                        self._switch(i)
                    return self.storages[i], i
            # nothing healthy: keep the current one; the caller's read reports the error
            return self.storages[self._active], self._active

    def _switch(self, i: int) -> None:
        if i > self._active:
            self.failovers += 1
            log.warning("storage failover: reading from root %d (%s); %s", i, self.states[i].path,
                        "; ".join(f"root {j}: {s.reason}" for j, s in enumerate(self.states[:i])))
        else:
            log.warning("storage failback: root %d (%s) is healthy again", i, self.states[i].path)
        self._active = i

    def report_failure(self, index: int, reason: str) -> None:
        """Called when a read from root ``index`` failed with an I/O error: fail over now."""
        with self._lock:
            st = self.states[index]
            st.errors += 1
            st.last_error = reason
            if st.healthy:
                st.since = time.time()
            st.healthy, st.reason, st.checked = False, reason, time.monotonic()
            st.hold_until = st.checked + self.recheck

    # -- reporting ----------------------------------------------------------------------------------
    def status(self) -> list[dict[str, object]]:
        """Each root's state, for ``/health`` and the viewer banner."""
        self.active()
        with self._lock:
            return [
                {"index": i, "root": str(s.path), "role": "primary" if i == 0 else "mirror",
                 "healthy": s.healthy, "reason": s.reason, "active": i == self._active,
                 "io_errors": s.errors, "failed_probes": s.probes_failed,
                 "last_error": s.last_error,
                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(s.since))
                 if s.since else None}
                for i, s in enumerate(self.states)
            ]

    @property
    def active_index(self) -> int:
        return self._active

    @property
    def failed_over(self) -> bool:
        return self._active != 0

    def failover_header(self) -> str | None:
        """``root=1 reason=...`` while reads do not come from the primary, else None."""
        if not self.failed_over:
            return None
        reason = "; ".join(s.reason for s in self.states[: self._active] if s.reason)
        text = f"root={self._active} reason={reason or 'primary unhealthy'}"
        return text.encode("ascii", "backslashreplace").decode()[:300]
