"""Claims (with their Coverages) from UKE receipts: per facility, not per patient folder.

Mapping every receipt of a facility to answer one patient's ``$everything`` is the cost to avoid
(hundreds of files, seconds per worker).  So each UKE file is first *indexed*: its header and RE
records only (``storage.uke.scan_receipts``, ~40x cheaper than a full read), cached by
(path, size, mtime_ns) — receipt number i of the index is ``read_uke(...).receipts[i]``.  The
index says which receipts name a patient (``storage.uke.karte_candidates``, then confirmed with
``storage.uke.match_patient`` against the SS-MIX2 storage) and which receipt a Claim id is
(``mappers.claim.claim_id``).  Only those receipts are read and mapped (``mappers.claim``),
cached per receipt in the shared :class:`MappedCache`.

``GET Claim`` without a patient pages from the index too (:meth:`ClaimSource.refs`): the full
search's order is the Claim id, which the index holds, and each receipt keeps a *stub* — the
Claim mapped from its header and RE record alone, cut to the elements those records decide
(:data:`INDEX_PARAMS`) — so a page maps only the receipts it shows.

Files are discovered like ``storage.uke.iter_uke_files`` (any name, sniffed)."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from fhir_gateway.config import Facility
from storage.reader import ERROR, KIND_IO, KIND_MAPPING, Problem

from .cache import Mapped, MappedCache

log = logging.getLogger(__name__)

# Claim search parameters whose elements come from the IR/UK/YK header and the RE record only, so a
# receipt's index stub answers them exactly as its full Claim would.
INDEX_PARAMS = frozenset({"_id", "_lastUpdated", "identifier", "created", "use", "status"})
_STUB_KEYS = ("resourceType", "id", "meta", "identifier", "status", "use", "created")


@dataclass
class FileIndex:
    """The receipts of one UKE file as of (size, mtime_ns)."""

    size: int
    mtime_ns: int
    mtime: float
    uke: bool = False  # sniffed as a UKE file
    ids: tuple[str, ...] = ()  # Claim id of receipt i
    karte: tuple[str, ...] = ()  # raw カルテ番号 of receipt i
    lines: tuple[int, ...] = ()  # line of the RE record of receipt i
    by_candidate: dict[str, list[int]] = field(default_factory=dict)  # possible pid -> [i]
    stubs: tuple[dict | None, ...] = ()  # receipt i's Claim cut to _STUB_KEYS (None: unmappable)


@dataclass(frozen=True)
class ReceiptRef:
    """Receipt ``i`` of one indexed file, known by its Claim id."""

    cid: str
    path: Path
    rel: str
    idx: FileIndex
    i: int

    @property
    def stub(self) -> dict | None:
        return self.idx.stubs[self.i]


class ClaimSource:
    def __init__(self, facility: Facility, cache: MappedCache,
                 patient_exists: Callable[[str], bool] | None = None) -> None:
        self.facility = facility
        self.cache = cache
        self.patient_exists = patient_exists or (lambda pid: False)
        self._index: dict[str, FileIndex] = {}
        self._lock = threading.Lock()
        self.scans = 0  # files indexed (for tests and the benchmark)
        self.mapped = 0  # receipts read and mapped in full (for tests and the benchmark)

    # -- discovery and index -----------------------------------------------------------------------
    def _files(self) -> list[tuple[Path, str, os.stat_result]]:
        out = []
        for root in self.facility.receipts:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if fn.startswith("."):
                        continue
                    p = Path(dirpath) / fn
                    try:
                        st = p.stat()
                    except OSError:
                        continue
                    out.append((p, p.relative_to(root).as_posix(), st))
        return out

    def _indexed(self, path: Path, st: os.stat_result) -> FileIndex:
        key = str(path)
        hit = self._index.get(key)
        if hit is not None and hit.size == st.st_size and hit.mtime_ns == st.st_mtime_ns:
            return hit
        from mappers.claim import claim_id
        from storage.uke import Receipt, karte_candidates, scan_receipts, sniff_uke
        idx = FileIndex(st.st_size, st.st_mtime_ns, st.st_mtime)
        if sniff_uke(path):
            idx.uke = True
            try:
                header, res = scan_receipts(path.read_bytes())
            except OSError as exc:
                log.warning("receipt file unreadable: %s: %s", path, exc)
                header, res = None, []
            receipts = [Receipt(r, records=[r]) for r in res]
            idx.ids = tuple(claim_id(self.facility.code, header, r) for r in receipts)
            idx.karte = tuple(r.re["karte_no"] for r in receipts)
            idx.lines = tuple(r.line for r in res)
            idx.stubs = tuple(self._stub(header, r, st.st_mtime) for r in receipts)
            for i, k in enumerate(idx.karte):
                for c in karte_candidates(k):
                    idx.by_candidate.setdefault(c, []).append(i)
        with self._lock:
            self._index[key] = idx
            self.scans += 1
        return idx

    def _stub(self, header, receipt, mtime: float) -> dict | None:
        """The receipt's Claim mapped from the header and RE record alone, cut to the elements
        those records decide (≈ 40 µs a receipt, at indexing)."""
        from mappers.claim import ClaimContext, map_receipt, mtime_instant
        try:
            claim = map_receipt(receipt, ClaimContext(self.facility.code, "", None,
                                                      mtime_instant(mtime), header))[0]
        except Exception:  # the full mapping reports it; the stub just cannot answer
            return None
        out = {k: claim[k] for k in _STUB_KEYS if k in claim}
        out["meta"] = {"lastUpdated": claim.get("meta", {}).get("lastUpdated")}
        return out

    def _entries(self) -> Iterator[tuple[Path, str, os.stat_result, FileIndex]]:
        for path, rel, st in self._files():
            yield path, rel, st, self._indexed(path, st)

    # -- mapping one receipt -------------------------------------------------------------------------
    def _map_receipts(self, path: Path, rel: str, idx: FileIndex, wanted: list[int]
                      ) -> list[Mapped]:
        """The mapped receipts ``wanted`` of one file (each cached on its own)."""
        out: dict[int, Mapped] = {}
        missing = []
        for i in wanted:
            hit = self.cache.get(("uke", str(path), idx.size, idx.mtime_ns, i))
            if hit is None:
                missing.append(i)
            else:
                out[i] = hit
        if missing:
            out.update(self._read_receipts(path, rel, idx, missing))
        return [out[i] for i in wanted]

    def _read_receipts(self, path: Path, rel: str, idx: FileIndex, wanted: list[int]
                       ) -> dict[int, Mapped]:
        from dataclasses import replace

        from mappers.claim import ClaimContext, map_receipt, mtime_instant
        from storage.uke import match_patient, read_uke_file
        uf = read_uke_file(path, rel)
        with self._lock:
            self.mapped += len(wanted)
        self.cache.put(("uke-file", str(path), idx.size, idx.mtime_ns),
                       Mapped.build([], [p for p in uf.problems if p.severity == ERROR]))
        out: dict[int, Mapped] = {}
        last = mtime_instant(idx.mtime)
        for i in wanted:
            problems: list[Problem] = []
            resources: list[dict] = []
            r = uf.receipts[i] if i < len(uf.receipts) else None
            if r is None or r.re.line != idx.lines[i]:
                problems.append(Problem(f"receipts/{rel}", KIND_IO,
                                        "the file changed while reading; retry"))
                out[i] = Mapped.build([], problems)
                continue  # not cached: the next request re-indexes the file
            try:
                pid = match_patient(r.re["karte_no"], self.patient_exists)
                ctx = ClaimContext(self.facility.code, rel, pid, last, uf.ir)
                resources = map_receipt(r, replace(ctx, header=ctx.header or uf.ir))
            except Exception as exc:  # a mapper bug must not become a 500
                log.exception("receipt mapping failed: %s line %s", rel, r.re.line)
                problems.append(Problem(f"receipts/{rel}", KIND_MAPPING,
                                        f"line {r.re.line}: receipt {r.receipt_no}: "
                                        f"{type(exc).__name__}: {exc}"))
            m = Mapped.build(resources, problems)
            self.cache.put(("uke", str(path), idx.size, idx.mtime_ns, i), m)
            out[i] = m
        return out

    # -- queries -------------------------------------------------------------------------------------
    def count(self) -> int:
        """Number of Claims of the facility (one per receipt) from the index alone."""
        return sum(len(idx.ids) for *_, idx in self._entries()) if self.facility.receipts else 0

    def _file_problems(self, path: Path, rel: str, idx: FileIndex) -> list[Problem]:
        """Errors of the file as a whole (read once per file version, then cached)."""
        fkey = ("uke-file", str(path), idx.size, idx.mtime_ns)
        if self.cache.get(fkey) is None:
            self._read_receipts(path, rel, idx, [])
        return list((self.cache.get(fkey) or Mapped(())).problems)

    def iter_all(self) -> Iterator[tuple[list[dict], list[Problem]]]:
        """(Claims, problems) file by file, mapping each file only when reached."""
        if not self.facility.receipts:
            return
        for path, rel, _, idx in self._entries():
            if not idx.uke:
                continue
            mapped = self._map_receipts(path, rel, idx, list(range(len(idx.ids))))
            fprobs = self._file_problems(path, rel, idx)
            yield ([r for m in mapped for r in m.resources if r.get("resourceType") == "Claim"],
                   fprobs + [p for m in mapped for p in m.problems if p.severity == ERROR])

    def refs(self) -> list[ReceiptRef]:
        """Every receipt of the facility from the index alone, in the full search's default
        order: by Claim id, ties in file order (the order :meth:`iter_all` yields them)."""
        if not self.facility.receipts:
            return []
        out = [ReceiptRef(cid, path, rel, idx, i) for path, rel, _, idx in self._entries()
               if idx.uke for i, cid in enumerate(idx.ids)]
        out.sort(key=lambda r: r.cid)  # stable: equal ids keep the file order
        return out

    def map_refs(self, refs: list[ReceiptRef]) -> tuple[list[dict], list[Problem]]:
        """The Claims of exactly these receipts, in their order, and the problems of those
        receipts and of the files they are in."""
        by_file: dict[str, list[ReceiptRef]] = {}
        for r in refs:
            by_file.setdefault(str(r.path), []).append(r)
        mapped: dict[tuple[str, int], Mapped] = {}
        probs: list[Problem] = []
        for group in by_file.values():
            first = group[0]
            wanted = [r.i for r in group]
            for i, m in zip(wanted, self._map_receipts(first.path, first.rel, first.idx, wanted)):
                mapped[(str(first.path), i)] = m
            probs.extend(self._file_problems(first.path, first.rel, first.idx))
        claims: list[dict] = []
        for r in refs:
            m = mapped[(str(r.path), r.i)]
            claims.extend(c for c in m.resources if c.get("resourceType") == "Claim")
            probs.extend(p for p in m.problems if p.severity == ERROR)
        return claims, probs

    def all(self) -> tuple[list[dict], list[Problem]]:
        """Every Claim of the facility (and the problems of unreadable receipts)."""
        res: list[dict] = []
        probs: list[Problem] = []
        for claims, problems in self.iter_all():
            res.extend(claims)
            probs.extend(problems)
        return res, probs

    def for_patient(self, pid: str) -> tuple[list[dict], list[Problem]]:
        """The patient's Claims and their Coverages: only the receipts whose カルテ番号 resolves
        to ``pid`` are read and mapped."""
        if not self.facility.receipts:
            return [], []
        from storage.uke import match_patient
        ref = f"Patient/{pid}"
        res: list[dict] = []
        probs: list[Problem] = []
        for path, rel, _, idx in self._entries():
            cand = idx.by_candidate.get(pid)
            if not cand:
                continue
            mine = [i for i in cand if match_patient(idx.karte[i], self.patient_exists) == pid]
            for m in self._map_receipts(path, rel, idx, mine):
                probs.extend(p for p in m.problems if p.severity == ERROR)
                res.extend(r for r in m.resources if r.get("resourceType") in ("Claim", "Coverage")
                           and (r.get("patient") or r.get("beneficiary") or {}).get("reference")
                           == ref)
        return res, probs

    def read(self, rid: str) -> dict:
        """A Claim by id: the index says which receipt it is; only that one is mapped."""
        from .facility import NotFound
        if self.facility.receipts:
            for path, rel, _, idx in self._entries():
                wanted = [i for i, cid in enumerate(idx.ids) if cid == rid]
                for m in self._map_receipts(path, rel, idx, wanted):
                    for c in m.resources:
                        if c.get("resourceType") == "Claim" and c.get("id") == rid:
                            return c
        raise NotFound(f"Claim/{rid} not found")
