"""Claims (with their Coverages) from UKE receipts: per facility, not per patient folder.

Files below each receipts folder are discovered like ``storage.uke.iter_uke_files`` (any name,
sniffed), read with ``storage.uke.read_uke_file`` and mapped with ``mappers.claim.map_uke_file``,
cached by (path, size, mtime_ns) like every other file.  ``Claim.patient`` is resolved against the
SS-MIX2 storage with ``storage.uke.match_patient``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from fhir_gateway.config import Facility
from storage.reader import ERROR, KIND_MAPPING, Problem

from .cache import Mapped, MappedCache

log = logging.getLogger(__name__)


class ClaimSource:
    def __init__(self, facility: Facility, cache: MappedCache,
                 patient_exists: Callable[[str], bool] | None = None) -> None:
        self.facility = facility
        self.cache = cache
        self.patient_exists = patient_exists or (lambda pid: False)

    def _files(self) -> list[tuple[Path, str]]:
        out = []
        for root in self.facility.receipts:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if not fn.startswith("."):
                        p = Path(dirpath) / fn
                        out.append((p, p.relative_to(root).as_posix()))
        return out

    def _map(self, path: Path, rel: str) -> Mapped:
        try:
            st = path.stat()
        except OSError as exc:
            return Mapped((), (Problem(f"receipts/{rel}", "io-error", f"cannot read: {exc}"),))
        key = ("uke", str(path), st.st_size, st.st_mtime_ns)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        try:
            resources, problems = self._read(path, rel, st.st_mtime)
        except Exception as exc:  # a mapper bug must not become a 500
            log.exception("receipt mapping failed: %s", rel)
            resources, problems = [], [Problem(f"receipts/{rel}", KIND_MAPPING,
                                               f"internal mapping error: {exc}")]
        m = Mapped.build(resources, problems)
        self.cache.put(key, m)
        return m

    def _read(self, path: Path, rel: str, mtime: float) -> tuple[list[dict], list[Problem]]:
        from mappers.claim import map_receipt_file
        from storage.uke import sniff_uke
        if not sniff_uke(path):
            return [], []
        return map_receipt_file(path, rel, self.facility.code, self.patient_exists)

    def _everything(self) -> tuple[list[dict], list[Problem]]:
        res: list[dict] = []
        probs: list[Problem] = []
        for path, rel in self._files():
            m = self._map(path, rel)
            res.extend(m.resources)
            probs.extend(p for p in m.problems if p.severity == ERROR)
        return res, probs

    def all(self) -> tuple[list[dict], list[Problem]]:
        """Every Claim of the facility (and the problems of unreadable receipt files)."""
        if not self.facility.receipts:
            return [], []
        res, probs = self._everything()
        return [r for r in res if r.get("resourceType") == "Claim"], probs

    def for_patient(self, pid: str) -> tuple[list[dict], list[Problem]]:
        """The patient's Claims and their Coverages."""
        if not self.facility.receipts:
            return [], []
        ref = f"Patient/{pid}"
        res, _ = self._everything()
        return [r for r in res if r.get("resourceType") in ("Claim", "Coverage")
                and (r.get("patient") or r.get("beneficiary") or {}).get("reference") == ref], []

    def read(self, rid: str) -> dict:
        from .facility import NotFound
        if self.facility.receipts:
            for c in self._everything()[0]:
                if c.get("resourceType") == "Claim" and c.get("id") == rid:
                    return c
        raise NotFound(f"Claim/{rid} not found")
