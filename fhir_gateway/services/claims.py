"""Claims, Coverages and receipt-built Patients from UKE receipts, through the receipt index.

A monthly UKE file holds every patient's receipt; a request must cost what its own receipts
cost.  So every request asks the receipt index (:mod:`fhir_gateway.index.receipts`, a SQLite
file shared by all workers) which receipts it needs — by candidate patient id (カルテ番号
variants, then confirmed with ``storage.uke.match_patient`` against the SS-MIX2 storage), by
Claim id, or by receipt Patient id — and reads just their byte ranges
(``storage.uke.read_ranges``).  Mapped receipts are cached one by one in the shared
:class:`MappedCache`.

Each request lists the receipts folders (a walk, no file opened) and compares sizes and mtimes
with the index: a new or rewritten file is re-indexed before use.  While the index is being built
(a fresh data directory: the server builds it at start-up in the background), files not indexed
yet are left out and the answer says so (an outcome entry); ``/health`` shows the state.

``GET Claim`` without a patient pages from the index too (:meth:`ClaimSource.refs`): the full
search's order is the Claim id, which the index holds, and each receipt has a *stub* in the index
— the Claim mapped from its header and RE record alone, cut to the elements those records decide
(:data:`INDEX_PARAMS`) — so a page maps only the receipts it shows.

A receipt whose カルテ番号 names no SS-MIX2 patient gets a Patient built from its RE record
(``Patient/uke-{facility}-…``, ``mappers.claim.receipt_patient_id``): readable, searchable and
with its own ``$everything`` (:meth:`patient`, :meth:`patients`, :meth:`for_patient`)."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from conformance import Query
from fhir_gateway.config import Facility
from fhir_gateway.index.receipts import FileRow, IndexUnusable, ReceiptIndex, ReceiptRow
from storage.reader import ERROR, KIND_IO, Problem

from ..masters import Names
from . import match
from .cache import Mapped, MappedCache
from .errors import NotFound
from .readmap import map_safely
from .resource_source import PatientPart, SearchResult, version_of

log = logging.getLogger(__name__)
T = TypeVar("T")

# Claim search parameters whose elements come from the IR/UK/YK header and the RE record only, so a
# receipt's index stub answers them exactly as its full Claim would.
INDEX_PARAMS = frozenset({"_id", "_lastUpdated", "identifier", "created", "use", "status"})
KIND_INDEX = "receipt-index"
# ``uke-{facility}-{カルテ番号 | h<hash>}`` (mappers.claim.receipt_patient_id)
RECEIPT_PATIENT = re.compile(r"^uke-[A-Za-z0-9]{1,20}-[A-Za-z0-9\-]{1,20}$")


def is_receipt_patient_id(pid: str) -> bool:
    return bool(RECEIPT_PATIENT.match(pid))


ReceiptNotFound = NotFound  # the service layer's NotFound (no import cycle: services.errors)


@dataclass(frozen=True)
class ReceiptRef:
    """One indexed receipt, known by its Claim id."""

    cid: str
    file: FileRow
    row: ReceiptRow

    @property
    def stub(self) -> dict | None:
        return self.row.stub


@dataclass
class _Live:
    """The index rows of the files as they are now, by file id, and what the answer lacks."""

    files: dict[int, FileRow]
    problems: list[Problem]


class ClaimSource:
    """A :class:`~fhir_gateway.services.resource_source.ResourceSource` (not cached: the
    receipt index is its own cache)."""

    name = "receipts"
    types: frozenset[str] | None = frozenset({"Claim", "Coverage"})
    BUILD_WAIT = 1.0  # seconds a request waits for a running first build before answering without

    def __init__(self, facility: Facility, cache: MappedCache,
                 patient_exists: Callable[[str], bool] | None = None,
                 data_dir: Path | None = None) -> None:
        self.facility = facility
        self.cache = cache
        self.patient_exists = patient_exists or (lambda pid: False)
        self.index = ReceiptIndex(data_dir, facility.code, facility.receipts) \
            if facility.receipts else None
        self._lock = threading.Lock()
        self._local = threading.local()  # file ids whose index rows proved wrong (this call)
        self._bg: threading.Thread | None = None
        self._listing_cache: tuple[tuple, list] | None = None
        self._patients_cache: tuple[tuple, float, list[dict]] | None = None
        self._patients_running = threading.Lock()
        self.mapped = 0  # receipts read and mapped (for tests and the benchmark)
        from ..masters import MasterStore
        self.masters = MasterStore(data_dir)  # names for receipt codes (fhir_gateway/masters.py)

    # -- the index --------------------------------------------------------------------------------
    def start_background_build(self) -> None:
        """Bring the index up to date in a thread (at server start-up): one process builds, the
        others find the lock taken and rely on it."""
        if self.index is None or self._bg is not None:
            return
        idx = self.index

        def run() -> None:
            try:
                stats = idx.refresh(wait=False)
                if stats.skipped:  # another process builds; should it die (the fail-fast
                    stats = idx.refresh(wait=True)  # child of `serve`), finish here: no-op else
                if not stats.skipped:
                    log.info("%s: %s", self.facility.code, stats.line())
                self.patients()  # the receipt Patients, so no Patient search waits for them
            except Exception:  # the requests still work without it
                log.exception("receipt index build failed")

        self._bg = threading.Thread(target=run, name="receipt-index", daemon=True)
        self._bg.start()

    def status(self) -> dict | None:
        return self.index.state() if self.index is not None else None

    def _dirs_signature(self) -> tuple:
        """(folder, mtime_ns) of every folder below the receipts roots: a file added, removed
        or renamed changes it (a file rewritten in place does not: see :meth:`_stat_check`)."""
        out: list[tuple[str, int | None]] = []
        todo = [str(r) for r in self.facility.receipts]
        while todo:
            d = todo.pop()
            try:
                out.append((d, os.stat(d).st_mtime_ns))
                with os.scandir(d) as it:
                    todo.extend(e.path for e in it if e.is_dir() and not e.name.startswith("."))
            except OSError:
                out.append((d, None))
        return tuple(sorted(out))

    def _listing(self, full: bool) -> tuple[list, bool]:
        """The files below the receipts folders and whether their stats are current: a full
        walk (a stat per file) when asked or when a folder changed, else the last one."""
        assert self.index is not None
        sig = self._dirs_signature()
        cached = self._listing_cache
        if not full and cached is not None and cached[0] == sig:
            return cached[1], False
        listing = list(self.index.listing())
        self._listing_cache = (sig, listing)
        return listing, True

    @staticmethod
    def _restat(files: list) -> list:
        """Listing entries with a current stat (a reused listing's may be old)."""
        out = []
        for root, path, rel, _ in files:
            try:
                out.append((root, path, rel, os.stat(path)))
            except OSError:
                continue
        return out

    def _stat_check(self, files: Iterable[FileRow]) -> None:
        """The files a request is about to use, stat'ed: one whose size or mtime is not what
        the index says (rewritten in place) is distrusted, so the query runs again after it
        is re-indexed (:meth:`_checked`)."""
        for f in files:
            try:
                st = os.stat(f.path)
            except OSError:
                st = None
            if st is None or (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns):
                self._listing_cache = None
                self._untrusted().add(f.id)

    def _live(self, full: bool = False) -> _Live:
        """Compare the receipts folders with the index (no file opened); re-index new or
        rewritten files, unless the first build is still running (then they are left out).
        Unless ``full``, the last walk is reused while no folder changed: the files actually
        read are stat'ed then (:meth:`_stat_check`)."""
        assert self.index is not None
        idx = self.index
        deadline = time.monotonic() + self.BUILD_WAIT
        while True:
            listing, current = self._listing(full)
            try:
                rows = idx.files()
                usable = True
            except IndexUnusable:
                rows, usable = {}, False
            stale = [f for f in listing
                     if not _fresh(rows.get((f[0], f[2])), f[3] if current else None)]
            if not stale:
                break
            building = idx.building()
            if not building and (not usable or not idx.complete()):
                idx.refresh(wait=True)  # nobody builds it (no server start-up): build now
                continue
            if not building:
                try:
                    idx.index_files(self._restat(stale))
                except IndexUnusable:
                    idx.refresh(wait=True)
                continue
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            if usable and idx.complete():  # a refresh is running; these files changed since
                try:
                    idx.index_files(self._restat(stale))
                    continue
                except IndexUnusable:
                    pass
            break
        live = {rows[(r, rel)].id: rows[(r, rel)] for r, _, rel, st in listing
                if _fresh(rows.get((r, rel)), st if current else None) and rows[(r, rel)].uke}
        problems = []
        if stale:
            problems.append(Problem(
                "receipts", KIND_INDEX,
                f"the receipt index is being built: {len(stale)} of {len(listing)} receipt files "
                "are not indexed yet, so their Claims and Coverages are missing from this answer; "
                "retry shortly"))  # an error: the answer is incomplete, not just doubtful
        return _Live(live, problems)

    def _untrusted(self) -> set[int]:
        bad = getattr(self._local, "bad", None)
        if bad is None:
            bad = self._local.bad = set()
        return bad

    def _checked(self, fn: Callable[[], T]) -> T:
        """Run a query; when a byte range turned out not to hold the receipt the index says
        (a file rewritten with its size and mtime kept, a tampered index), forget that file's
        rows (the next look re-indexes it) and run the query once more."""
        self._untrusted().clear()
        try:
            out = fn()
        except Exception:
            if not self._untrusted():
                raise
        bad = set(self._untrusted())
        if bad and self.index is not None:
            log.warning("receipt index rows of file(s) %s did not match the bytes; re-indexing",
                        sorted(bad))
            for fid in bad:
                self.index.forget(fid)
            self._untrusted().clear()
            out = fn()
        return out

    # -- mapping receipts --------------------------------------------------------------------------
    def _map(self, f: FileRow, rows: list[ReceiptRow]) -> list[Mapped]:
        """The mapped receipts ``rows`` of file ``f`` (each cached on its own), reading only their
        byte ranges."""
        self._stat_check([f])
        if f.id in self._untrusted():  # rewritten since indexed: the query runs again
            return [Mapped(()) for _ in rows]
        out: dict[int, Mapped] = {}
        missing = []
        for r in rows:
            hit = self.cache.get(("uke", str(f.path), f.size, f.mtime_ns, r.i, self.masters.version))
            if hit is None:
                missing.append(r)
            else:
                out[r.i] = hit
        if missing:
            out.update(self._read(f, sorted(missing, key=lambda r: r.i)))
        return [out[r.i] for r in rows]

    def _read(self, f: FileRow, rows: list[ReceiptRow], keep: bool = True,
              known: dict[int, str] | None = None, names: Names | None = None
              ) -> dict[int, Mapped]:
        """The receipts ``rows`` of ``f`` read (their byte ranges) and mapped; ``keep``: put
        each in the mapped-file cache (an export reads each once: no cache, no size estimate);
        ``known``: the patient each receipt (by ``row.i``) was just matched to; ``names``: the
        master table (looked up here when not given)."""
        from mappers.claim import ClaimContext, map_receipt, mtime_instant
        from storage.uke import match_patient, read_ranges

        from ..masters import name_resources
        spans = [(r.start, r.end, r.line) for r in rows]
        uf = read_ranges(f.path, f.rel, f.codec, f.skip, ([f.header] if f.header else []) + spans)
        with self._lock:
            self.mapped += len(rows)
        out: dict[int, Mapped] = {}
        last = mtime_instant(f.mtime)
        header = uf.ir if f.header else None
        if names is None:
            names = self.masters.table()  # one look for the file's receipts
        by_start = {r.re.offset: r for r in uf.receipts}
        for r in rows:
            got = by_start.get(r.start)
            if got is None or got.receipt_no != r.receipt_no or got.re.line != r.line:
                # the bytes are not what the index says: never trust it, re-index the file
                self._untrusted().add(f.id)
                out[r.i] = Mapped.build([], [Problem(f"receipts/{f.rel}", KIND_IO,
                                                     "the file changed while reading; retry")])
                continue
            problems = [p for p in uf.problems if p.severity == ERROR and p.offset is not None
                        and r.start <= p.offset < r.end]

            def map_one(got=got, i=r.i) -> list[dict]:
                pid = known[i] if known and i in known else \
                    match_patient(got.re["karte_no"], self.patient_exists)
                resources = map_receipt(got, ClaimContext(self.facility.code, f.rel, pid, last,
                                                          header))
                name_resources(resources, names)  # master names after the pure mapping
                return resources

            resources, failed = map_safely(f"receipts/{f.rel}", map_one,
                                           prefix=f"line {r.line}: receipt {r.receipt_no}: ")
            problems += failed
            if not keep:
                out[r.i] = Mapped(tuple(resources), tuple(problems))
                continue
            m = Mapped.build(resources, problems)
            self.cache.put(("uke", str(f.path), f.size, f.mtime_ns, r.i, self.masters.version), m)
            out[r.i] = m
        return out

    def _map_grouped(self, live: _Live, rows: list[ReceiptRow]
                     ) -> Iterator[tuple[ReceiptRow, Mapped]]:
        """(row, mapped) for the rows in live files, file by file, in the rows' order."""
        by_file: dict[int, list[ReceiptRow]] = {}
        for r in rows:
            if r.file in live.files:
                by_file.setdefault(r.file, []).append(r)
        for fid, group in by_file.items():
            yield from zip(group, self._map(live.files[fid], group))

    # -- queries -----------------------------------------------------------------------------------
    def count(self) -> int:
        """Number of Claims of the facility (one per receipt) from the index alone."""
        return len(self.refs())

    def refs(self) -> list[ReceiptRef]:
        """Every receipt of the facility from the index alone, in the full search's default
        order: by Claim id, ties in file order (the order :meth:`iter_all` yields them)."""
        if self.index is None:
            return []
        live = self._live(full=True)
        if not live.files:
            return []
        out = [ReceiptRef(r.claim_id, live.files[r.file], r)
               for r in self.index.all_receipts(with_stubs=True) if r.file in live.files]
        order = {fid: n for n, fid in enumerate(live.files)}
        out.sort(key=lambda x: (x.cid, order[x.file.id], x.row.i))
        return out

    def map_refs(self, refs: list[ReceiptRef]) -> tuple[list[dict], list[Problem]]:
        """The Claims of exactly these receipts, in their order, and the problems of those
        receipts and of the files they are in."""
        return self._checked(lambda: self._map_refs(refs))

    def _map_refs(self, refs: list[ReceiptRef]) -> tuple[list[dict], list[Problem]]:
        if not refs:
            return [], []
        live = _Live({r.file.id: r.file for r in refs}, [])
        mapped = {(row.file, row.i): m for row, m in self._map_grouped(live, [r.row for r in refs])}
        probs: list[Problem] = []
        for f in live.files.values():
            probs.extend(f.problems)
        claims: list[dict] = []
        for r in refs:
            m = mapped[(r.file.id, r.row.i)]
            claims.extend(c for c in m.resources if c.get("resourceType") == "Claim")
            probs.extend(p for p in m.problems if p.severity == ERROR)
        return claims, probs

    def iter_all(self) -> Iterator[tuple[list[dict], list[Problem]]]:
        """(Claims, problems) file by file, mapping each file only when reached."""
        if self.index is None:
            return
        live = self._live(full=True)
        if live.problems:
            yield [], list(live.problems)
        rows: dict[int, list[ReceiptRow]] = {}
        for r in self.index.all_receipts() if live.files else []:
            rows.setdefault(r.file, []).append(r)
        for fid, f in live.files.items():
            mine = rows.get(fid, [])
            mapped = self._map(f, mine) if mine else []
            yield ([r for m in mapped for r in m.resources if r.get("resourceType") == "Claim"],
                   list(f.problems) + [p for m in mapped for p in m.problems
                                       if p.severity == ERROR])

    def all(self) -> tuple[list[dict], list[Problem]]:
        """Every Claim of the facility (and the problems of unreadable receipts)."""
        res: list[dict] = []
        probs: list[Problem] = []
        for claims, problems in self.iter_all():
            res.extend(claims)
            probs.extend(problems)
        return res, probs

    def _rows_of(self, pid: str, with_stubs: bool = False, live: _Live | None = None
                 ) -> tuple[_Live, list[ReceiptRow]]:
        """The live receipts whose Claims name ``pid``: an SS-MIX2 patient (カルテ番号 matched
        now) or a receipt Patient (its receipts match no SS-MIX2 patient now)."""
        live = live if live is not None else self._live()
        return live, self._rows_of_many([pid], live, with_stubs).get(pid, [])

    def _rows_of_many(self, pids: list[str], live: _Live, with_stubs: bool = False
                      ) -> dict[str, list[ReceiptRow]]:
        """:meth:`_rows_of` of many patients (the SS-MIX2 ones in one index query)."""
        assert self.index is not None
        if not live.files:
            return {}
        matched = self._matcher()  # a patient's receipts mostly share one カルテ番号
        out: dict[str, list[ReceiptRow]] = {}
        for pid in pids:
            if is_receipt_patient_id(pid):
                out[pid] = [r for r in self.index.by_uke_pid(pid, with_stubs)
                            if r.file in live.files and matched(r.karte) is None]
        found = self.index.by_candidates([p for p in pids if p not in out], with_stubs)
        for pid, rows in found.items():
            out[pid] = [r for r in rows if r.file in live.files and matched(r.karte) == pid]
        return out

    def _matcher(self) -> Callable[[str], str | None]:
        """``match_patient(karte, patient_exists)``, each カルテ番号 looked up once (a few
        ``stat`` calls each) for as long as the caller keeps the function."""
        from storage.uke import match_patient
        seen: dict[str, str | None] = {}

        def matched(karte: str) -> str | None:
            if karte not in seen:
                seen[karte] = match_patient(karte, self.patient_exists)
            return seen[karte]
        return matched

    def for_patient(self, pid: str, types: set[str] | None = None,
                    files: list | None = None) -> PatientPart:
        """The patient's Claims and their Coverages: only the receipts that name ``pid`` are
        read (their byte ranges) and mapped."""
        return PatientPart(*self._checked(lambda: self._for_patient(pid)))

    def _for_patient(self, pid: str) -> tuple[list[dict], list[Problem]]:
        if self.index is None:
            return [], []
        live, rows = self._rows_of(pid)
        res, probs = self._map_patient(pid, live, rows)
        return res, list(live.problems) + probs

    def stream_patients(self, pids: list[str]
                        ) -> Iterator[tuple[str, list[dict], list[Problem]]]:
        """(pid, Claims and Coverages, problems) of the receipts of many patients, each UKE
        file read once for all of them (the byte ranges of their receipts) and nothing cached:
        the bulk export's path (one batch per file and patient; memory is one file's receipts
        of these patients).  Same resources as :meth:`for_patient` for each."""
        if self.index is None or not pids:
            return
        self._untrusted().clear()
        live = self._live()
        if live.problems:
            yield "", [], list(live.problems)
        by_file: dict[int, list[tuple[str, ReceiptRow]]] = {}
        rows_of = self._rows_of_many(pids, live)
        names = self.masters.table()  # one look for the whole batch
        for pid in pids:
            for r in rows_of.get(pid, ()):
                by_file.setdefault(r.file, []).append((pid, r))
        for fid in sorted(by_file):
            f = live.files[fid]
            todo = sorted(by_file[fid], key=lambda x: x[1].i)
            self._stat_check([f])
            mapped = self._read(f, [r for _, r in todo], keep=False,
                                known={r.i: pid for pid, r in todo}, names=names) \
                if f.id not in self._untrusted() else {}
            got: dict[str, tuple[list[dict], list[Problem]]] = {}
            for pid, r in todo:
                if pid not in got:
                    got[pid] = ([], [])
                res, probs = got[pid]
                m = mapped.get(r.i)
                if m is None:  # rewritten since it was indexed: said, never skipped silently
                    probs.append(Problem(f"receipts/{f.rel}", KIND_IO,
                                         f"receipt {r.receipt_no} not exported: the file "
                                         "changed while reading; export again"))
                    continue
                if m.problems:
                    probs.extend(p for p in m.problems if p.severity == ERROR)
                ref = f"Patient/{pid}"
                res.extend(x for x in m.resources if x.get("resourceType") in ("Claim", "Coverage")
                           and (x.get("patient") or x.get("beneficiary") or {}).get("reference")
                           == ref)
            for pid, (res, probs) in got.items():
                yield pid, res, probs
        for fid in set(self._untrusted()):  # the next look re-indexes those files
            self.index.forget(fid)
        self._untrusted().clear()

    def receipts_by_day(self, pid: str, day_of: Callable[[dict | None], str]
                        ) -> tuple[dict[str, list[ReceiptRow]], list[Problem], object]:
        """The patient's receipts grouped by ``day_of(stub)`` without reading them (a
        ``$everything`` page maps only its days' receipts with :meth:`map_receipts`):
        (rows by day, problems, a handle for :meth:`map_receipts`)."""
        if self.index is None:
            return {}, [], None
        live, rows = self._checked(lambda: self._rows_of(pid, with_stubs=True))
        out: dict[str, list[ReceiptRow]] = {}
        for r in rows:
            out.setdefault(day_of(r.stub), []).append(r)
        return out, list(live.problems), live

    def map_receipts(self, pid: str, live: object, rows: list[ReceiptRow]
                     ) -> tuple[list[dict], list[Problem]]:
        """The Claims and Coverages of ``rows`` (from :meth:`receipts_by_day`) for ``pid``."""
        assert isinstance(live, _Live)
        return self._checked(lambda: self._map_patient(pid, live, rows))

    def _map_patient(self, pid: str, live: _Live, rows: list[ReceiptRow]
                     ) -> tuple[list[dict], list[Problem]]:
        ref = f"Patient/{pid}"
        res: list[dict] = []
        probs: list[Problem] = []
        for _, m in self._map_grouped(live, rows):
            probs.extend(p for p in m.problems if p.severity == ERROR)
            res.extend(r for r in m.resources if r.get("resourceType") in ("Claim", "Coverage")
                       and (r.get("patient") or r.get("beneficiary") or {}).get("reference")
                       == ref)
        return res, probs

    # -- the ResourceSource interface ---------------------------------------------------------------
    def owns(self, rtype: str, rid: str) -> bool:
        """Claims, and the receipt-built Patients: ``uke-…`` ids no patient folder has, whose
        receipts match no SS-MIX2 patient."""
        if rtype == "Claim":
            return True
        if rtype != "Patient" or not is_receipt_patient_id(rid) or self.patient_exists(rid):
            return False
        try:
            self.patient(rid)
        except NotFound:
            return False
        return True

    def search(self, rtype: str, query: Query) -> SearchResult | None:
        """``GET Claim`` without a patient: every receipt of the facility."""
        if rtype != "Claim":
            return None
        claims, problems = self.all()
        return SearchResult([r for r in claims if match.matches_all(r, query.criteria)],
                            list(problems))

    def vread(self, rtype: str, rid: str, vid: str) -> dict:
        return version_of(self.read(rtype, rid), vid, f"{rtype}/{rid}")

    def history(self, rtype: str, rid: str) -> list[dict]:
        return [self.read(rtype, rid)]

    def read(self, rtype: str, rid: str) -> dict:
        """A Claim by id (the index says which receipt it is; only that one is read), or a
        receipt-built Patient (:meth:`patient`)."""
        if rtype == "Patient":
            return self.patient(rid)
        return self._checked(lambda: self._read_claim(rid))

    def _read_claim(self, rid: str) -> dict:
        if self.index is not None:
            live = self._live()
            rows = self.index.by_claim(rid) if live.files else []
            for _, m in self._map_grouped(live, rows):
                for c in m.resources:
                    if c.get("resourceType") == "Claim" and c.get("id") == rid:
                        return c
        raise ReceiptNotFound(f"Claim/{rid} not found")

    # -- receipt-built Patients ----------------------------------------------------------------------
    def patient(self, pid: str) -> dict:
        """The Patient built from the newest receipt of ``pid`` (a receipt Patient id whose
        receipts match no SS-MIX2 patient); the same resource the receipt's mapping emits."""
        if self.index is None or not is_receipt_patient_id(pid):
            raise ReceiptNotFound(f"Patient/{pid} not found")
        return self._checked(lambda: self._patient(pid))

    def _patient(self, pid: str) -> dict:
        live, rows = self._rows_of(pid)
        self._stat_check({r.file: live.files[r.file] for r in rows}.values())
        if not rows:
            raise ReceiptNotFound(f"Patient/{pid} not found")
        return self._patient_of(live, rows)

    def _patient_of(self, live: _Live, rows: list[ReceiptRow]) -> dict:
        from mappers.claim import ClaimContext, map_re_patient, mtime_instant
        from storage.uke import facility_code, uke_month

        def newest(r: ReceiptRow) -> tuple:
            h = live.files[r.file].header_record()
            return (uke_month(h["claim_month"]) or "" if h else "", r.file, r.i)

        row = max(rows, key=newest)
        f = live.files[row.file]
        header = f.header_record()
        ctx = ClaimContext(self.facility.code, f.rel, None, mtime_instant(f.mtime), header)
        return map_re_patient(row.receipt(), row.uke_pid,
                              facility_code(header) or self.facility.code, ctx)

    PATIENTS_TTL = 30.0  # seconds the list of receipt Patients is reused (as the Patient index)

    def patients(self) -> list[dict]:
        """Every receipt-built Patient (one per person whose receipts match no SS-MIX2 patient),
        by id.  Telling them apart checks every person's カルテ番号 against the storage (a stat
        or three each: ~0.5 s at 2,000 patients), so the list is built after the start-up index
        build and kept: rebuilt at once when the receipt files changed, and in the background
        when older than :data:`PATIENTS_TTL` (a patient folder created meanwhile shows within
        that time, like the Patient index; reading ``Patient/uke-…`` checks at once)."""
        if self.index is None:
            return []
        live = self._live()
        key = tuple(sorted((f.id, f.size, f.mtime_ns) for f in live.files.values()))
        hit = self._patients_cache
        if hit is not None and hit[0] == key:
            if time.monotonic() - hit[1] >= self.PATIENTS_TTL and \
                    self._patients_running.acquire(blocking=False):
                threading.Thread(target=self._refresh_patients, args=(live, key),
                                 name="receipt-patients", daemon=True).start()
            return hit[2]
        return self._refresh_patients(live, key, locked=False)

    def _refresh_patients(self, live: _Live, key: tuple, locked: bool = True) -> list[dict]:
        try:
            out = self._all_patients(live)
            self._patients_cache = (key, time.monotonic(), out)
            return out
        finally:
            if locked:
                self._patients_running.release()

    def _all_patients(self, live: _Live) -> list[dict]:
        from storage.uke import match_patient
        assert self.index is not None
        out: list[dict] = []
        for pid, karte in self.index.uke_patients() if live.files else []:
            if match_patient(karte, self.patient_exists) is not None:
                continue  # cheap pre-check by the person's カルテ番号; rows confirm below
            rows = [r for r in self.index.by_uke_pid(pid) if r.file in live.files
                    and match_patient(r.karte, self.patient_exists) is None]
            if rows:
                out.append(self._patient_of(live, rows))
        return out


def _fresh(row: FileRow | None, st: os.stat_result | None) -> bool:
    """The row is the file as it is (``st`` None: the stat is not current, presence only)."""
    if row is None:
        return False
    return st is None or (row.size == st.st_size and row.mtime_ns == st.st_mtime_ns)
