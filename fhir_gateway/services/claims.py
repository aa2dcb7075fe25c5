"""Claims from UKE receipts (per facility, not per patient folder).

Receipt files are read with :mod:`storage.uke` and mapped with ``mappers.claim.map_receipt``
(when present), cached by (path, size, mtime_ns) like every other file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fhir_gateway.config import Facility
from storage.reader import KIND_MAPPING, Problem

from .cache import Mapped, MappedCache

log = logging.getLogger(__name__)


class ClaimSource:
    def __init__(self, facility: Facility, cache: MappedCache) -> None:
        self.facility = facility
        self.cache = cache

    def _files(self) -> list[tuple[Path, str]]:
        out = []
        for root in self.facility.receipts:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if fn.startswith("."):
                        continue
                    p = Path(dirpath) / fn
                    out.append((p, p.relative_to(root).as_posix()))
        return out

    def _map(self, path: Path, rel: str) -> Mapped:
        try:
            st = path.stat()
        except OSError as exc:
            return Mapped((), (Problem(rel, "io-error", f"cannot read the file: {exc}"),))
        key = ("uke", str(path), st.st_size, st.st_mtime_ns)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        try:
            from mappers.claim import map_receipt_file  # type: ignore[attr-defined]
        except ImportError:
            map_receipt_file = None
        problems: list[Problem] = []
        resources: list[dict] = []
        try:
            if map_receipt_file is not None:
                resources, problems = map_receipt_file(path, rel, self.facility.code)
            else:
                resources, problems = _map_with_receipts(path, rel, self.facility.code)
        except Exception as exc:
            log.exception("receipt mapping failed: %s", rel)
            problems = [Problem(rel, KIND_MAPPING, f"internal mapping error: {exc}")]
        m = Mapped.build(list(resources), list(problems))
        self.cache.put(key, m)
        return m

    def all(self) -> tuple[list[dict], list[Problem]]:
        res: list[dict] = []
        probs: list[Problem] = []
        for path, rel in self._files():
            m = self._map(path, rel)
            res.extend(m.resources)
            probs.extend(p for p in m.problems if p.severity == "error")
        return res, probs

    def for_patient(self, pid: str) -> tuple[list[dict], list[Problem]]:
        if not self.facility.receipts:
            return [], []
        claims, probs = self.all()
        ref = f"Patient/{pid}"
        return [c for c in claims if c.get("patient", {}).get("reference") == ref], []

    def read(self, rid: str) -> dict:
        from .facility import NotFound
        for c in self.all()[0]:
            if c.get("id") == rid:
                return c
        raise NotFound(f"Claim/{rid} not found")


def _map_with_receipts(path: Path, rel: str, facility: str) -> tuple[list[dict], list[Problem]]:
    """Read a UKE file and map each receipt with ``mappers.claim.map_receipt``."""
    try:
        from mappers import claim as claim_mapper  # type: ignore[attr-defined]
        from storage.uke import read_uke_file
    except ImportError:
        return [], []
    uf = read_uke_file(path, rel)
    problems = list(uf.problems)
    out: list[dict] = []
    for receipt in uf.receipts:
        try:
            out.extend(claim_mapper.map_receipt(uf, receipt, facility))
        except Exception as exc:
            problems.append(Problem(rel, KIND_MAPPING, f"receipt: {exc}"))
    return out, problems
