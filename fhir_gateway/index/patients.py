"""The cross-patient Patient index: Whoosh (Whoosh-Reloaded) under ``data_dir/index/{facility}``.

Public surface (what the REST API and the viewer use; small so that a distributed search engine
can replace it): :class:`PatientIndex` with ``build``, ``refresh``, ``search``, ``get``, ``count``
and ``start_background_refresh``.

Concurrency
    * One writer at a time across processes: an ``fcntl`` lock on ``writer.lock`` (the server runs
      several worker processes; each may try its background refresh, only one writes).
    * Readers never wait for the writer: Whoosh commits are a new TOC generation, and the
      process's one searcher is reopened with ``ix.searcher()`` whenever the latest generation
      differs.  ``Searcher.refresh()`` is never called: in Whoosh-Reloaded 2.7.5 it returns
      duplicate hits after a merge (reference/packages.md §3); a freshly opened searcher does
      not.  Whoosh readers keep file positions, so readers hold ``_read_lock`` while they read;
      segment files are read unmapped (:func:`_open_unmapped`).

Layout of one document
    ``pid`` (ID, unique), ``name`` (KEYWORD: name grams, see :mod:`.keys`), ``birth`` (NUMERIC
    YYYYMMDD), ``gender`` (ID), ``keys`` (a column: the normalised name keys and the id, read
    per candidate to verify and sort), ``row`` (a column: the summary as JSON, read only for
    the hits returned), ``sterm``/``updated``/``stub``/``sort`` (FHIR search, :mod:`.stubs`)
    and ``patient`` (the stored Patient).  No stored fields.  Held in memory per index
    generation: two arrays of 4 bytes per document (the documents in id order), nothing else
    that grows with the hospital.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import types
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import orjson
from whoosh import columns, fields, index as windex, writing
from whoosh.query import And, Every, Not, NumericRange, Or, Prefix, Query, Term

from storage.layout import Storage
from storage.replicas import ReplicaSet

from . import keys as K
from .lock import WriterLock
from .stubs import HAS_STUB, narrow, order, plan, sort_keys, stub_of, terms_of, updated_seconds
from .summary import Extracted, NameParts, PatientSummary, extract, names_from_patient
from .walk import Scan, scan

log = logging.getLogger(__name__)

SCHEMA_VERSION = 7  # 7: exact prefix terms, the has-stub term and the sort column
RECEIPT_STATE = "receipt_patients"  # state.json: signature of the indexed receipt Patients
RECEIPT_PREFIX = "uke-"  # receipt-built Patient ids (services.claims.RECEIPT_PATIENT)
POOL_THRESHOLD = 2000  # extract with worker processes when at least this many patients changed
GENDERS = ("male", "female", "other", "unknown")

# Fields of the ``keys`` column ("\x1f"-separated normalised keys; the whole string is the sort
# key: kana, or kanji when there is no kana, or U+FFFF for the nameless, then the rest, id last).
SEP = "\x1f"
K_SORT, K_KANA, K_KANJI, K_FAM, K_GIV, K_KFAM, K_KGIV, K_PID = range(8)


def make_schema() -> fields.Schema:
    # Every indexed field is scorable: Whoosh then writes a field-length column, and without
    # one its segment writer stats a missing file for every posting (3x slower builds).  The
    # scores themselves are not used.  NUMERIC has no such option, hence the attribute.
    birth = fields.NUMERIC(int, bits=32, signed=False, shift_step=8)
    birth.scorable = True
    updated = fields.NUMERIC(int, bits=64, signed=True, shift_step=16)
    updated.scorable = True
    return fields.Schema(
        pid=fields.KEYWORD(unique=True, scorable=True),  # one token: ids have no spaces
        name=fields.KEYWORD(scorable=True),
        birth=birth,
        gender=fields.KEYWORD(scorable=True),
        keys=fields.COLUMN(columns.VarBytesColumn()),  # match and sort keys, see K_*
        row=fields.COLUMN(columns.VarBytesColumn()),  # the PatientSummary as a JSON list
        sterm=fields.KEYWORD(scorable=True),  # search-parameter terms, see .stubs
        updated=updated,  # meta.lastUpdated, epoch seconds
        stub=fields.COLUMN(columns.VarBytesColumn()),  # the search stub (JSON), b"" for none
        patient=fields.COLUMN(columns.VarBytesColumn()),  # {"r": Patient, "f": source}, see get
        sort=fields.COLUMN(columns.VarBytesColumn()),  # stubs.sort_keys as JSON, b"" for none
    )


@dataclass
class IndexStats:
    patients: int = 0  # documents in the index afterwards
    changed: int = 0  # added or re-read
    removed: int = 0
    problems: int = 0  # patients indexed by id only or with a doubtful ADT-00 (this run)
    seconds: float = 0.0
    full: bool = False
    root: str = ""
    skipped: str = ""  # why nothing was done (another writer, storage unreadable)

    def line(self) -> str:
        if self.skipped:
            return f"index: skipped ({self.skipped})"
        kind = "rebuilt" if self.full else "refreshed"
        return (f"index {kind}: {self.patients} patients indexed, {self.changed} changed, "
                f"{self.removed} removed, {self.problems} with problems, {self.seconds:.1f} s "
                f"({self.root})")


# --- documents -----------------------------------------------------------------------------------

def document(pid: str, ex: Extracted) -> dict:
    """The Whoosh document of one patient (runs in extraction workers too)."""
    s, n = ex.summary, ex.names
    parts = [K.search_key(x) for x in (n.family, n.given, n.kana_family, n.kana_given)]
    kanji, kana = parts[0] + parts[1], parts[2] + parts[3]  # keys drop spaces: join = key
    terms = K.name_terms(kana, parts[2:]) | {K.KANJI + t for t in K.name_terms(kanji, parts[:2])}
    row = [pid, s.name, s.kana, s.birthdate, s.gender, s.last_care_date, s.updated, s.problem]
    key = SEP.join([kana or kanji or "\uffff", kana, kanji, *parts, pid])
    doc: dict[str, object] = {"pid": pid, "keys": key.encode("utf-8"), "row": orjson.dumps(row)}
    if terms:
        doc["name"] = " ".join(sorted(terms))
    stub = stub_of(ex.patient)
    doc["patient"] = orjson.dumps({"r": ex.patient, "f": list(ex.source)}) \
        if ex.patient and ex.source else b""
    # the stub's birth date also for a Patient derived from PID (the summary has none then)
    b = K.birth_number(s.birthdate or (stub or {}).get("birthDate"))
    if b is not None:
        doc["birth"] = b
    if s.gender:
        doc["gender"] = s.gender
    doc["stub"] = orjson.dumps(stub) if stub else b""
    doc["sort"] = orjson.dumps(sort_keys(stub)) if stub else b""
    if stub:
        doc["sterm"] = terms_of(stub)
        lu = updated_seconds(stub)
        if lu is not None:
            doc["updated"] = lu
    return doc


def receipt_document(patient: dict) -> dict:
    """The document of a receipt-built Patient: searched like any other (its stub is the
    Patient's), never served from the index (no source: the receipt index builds it)."""
    pid = str(patient["id"])
    names = names_from_patient(patient)
    summary = PatientSummary(pid, names.kanji, names.kana, str(patient.get("birthDate", "")),
                             str(patient.get("gender", "")))
    return document(pid, Extracted(summary, names, patient, None))


def _receipt_signature(patients: list[dict]) -> str:
    import hashlib
    body = orjson.dumps(sorted(patients, key=lambda p: str(p.get("id"))),
                        option=orjson.OPT_SORT_KEYS)
    return f"{SCHEMA_VERSION}:{hashlib.sha256(body).hexdigest()}"


def summary_of(row: list) -> PatientSummary:
    return PatientSummary(*row)


# Extraction in worker processes (spawned: the server process has threads).
_WORKER: tuple[Storage, str] | None = None


def _worker_init(root: str, facility: str) -> None:
    global _WORKER
    _WORKER = (Storage(root), facility)


def _worker_doc(job: tuple[str, str, str]) -> tuple[str, dict, bool]:
    assert _WORKER is not None
    pid, newest, misplaced = job
    return _make(_WORKER[0], _WORKER[1], pid, newest, misplaced)


def _make(storage: Storage, facility: str, pid: str, newest: str, misplaced: str) -> tuple[str, dict, bool]:
    try:
        ex = extract(storage, pid, facility, newest)
    except Exception as exc:  # a bug in a mapper must not stop the index: keep the id findable
        ex = Extracted(PatientSummary(pid, problem=f"cannot read demographics: {exc}"), NameParts())
    if misplaced:
        s = ex.summary
        problem = "; ".join(x for x in (misplaced, s.problem) if x)
        ex = Extracted(PatientSummary(s.patient_id, s.name, s.kana, s.birthdate, s.gender,
                                      s.last_care_date, s.updated, problem), ex.names)
    return pid, document(pid, ex), bool(ex.summary.problem)


# --- the index -----------------------------------------------------------------------------------

@dataclass
class _Plan:
    query: Query
    checks: list[Callable[[list], bool]] = field(default_factory=list)


class PatientIndex:
    """Patient search over one facility's storage (see the module docstring); the embedded
    implementation of :class:`fhir_gateway.index.backends.PatientIndexBackend`."""

    backend = "whoosh"

    def __init__(self, data_dir: Path, facility: str, storage_roots: Sequence[Path]) -> None:
        if data_dir is None:
            raise ValueError("the patient index needs a data directory")
        if not storage_roots:
            raise ValueError("the patient index needs at least one storage root")
        self.facility = facility
        self.dir = Path(data_dir) / "index" / facility
        self.whoosh_dir = self.dir / "whoosh"
        self.state_path = self.dir / "state.json"
        self.replicas = ReplicaSet(list(storage_roots))
        self._lock = WriterLock(self.dir / "writer.lock")
        # one searcher per process, not per thread: at 20,000 patients a searcher with its
        # columns holds ~70 MB (measured), so 4 waitress threads held ~280 MB per worker.
        # Index reads take the lock for a few milliseconds; JSON is decoded outside it.
        self._local = types.SimpleNamespace()
        self._read_lock = threading.RLock()
        self._ix: windex.FileIndex | None = None
        self._ix_lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._receipt_memo: tuple[list[dict], int] | None = None
        self._schema_memo: tuple[int, object, bool] | None = None
        self._thread: threading.Thread | None = None
        from mappers.terminology import patient_identifier_system
        self._id_system = patient_identifier_system(facility)

    # -- writing ----------------------------------------------------------------------------------
    def build(self, progress: bool = False) -> IndexStats:
        """Read every patient again and replace the index (readers keep the old one until the
        commit)."""
        return self._write(full=True, progress=progress, wait=True)

    def refresh(self, progress: bool = False) -> IndexStats:
        """Re-read only patients whose folders changed; builds when there is no index yet."""
        return self._write(full=False, progress=progress, wait=True)

    def try_refresh(self) -> IndexStats:
        """Refresh unless another process is writing (then return at once, ``skipped`` set)."""
        return self._write(full=False, progress=False, wait=False)

    def _open_or_create(self, full: bool, state: dict | None) -> tuple[windex.FileIndex, bool]:
        """The index to write; a new one (and a full build) when absent or of another schema."""
        self.whoosh_dir.mkdir(parents=True, exist_ok=True)
        if windex.exists_in(str(self.whoosh_dir)) and state is not None \
                and state.get("schema") == SCHEMA_VERSION:
            ix = _open_unmapped(self.whoosh_dir, readonly=False)
            if ix.schema.names() == make_schema().names():
                return ix, full
        return windex.create_in(str(self.whoosh_dir), make_schema()), True

    def _load_state(self) -> dict | None:
        # the stdlib parser, not orjson: orjson's parse of the 2 MB state of 20,000 patients
        # peaks at 31 MB (a parse tree beside the objects), json's at 10 MB — in a server
        # worker every refresh, so that peak was part of the worker's size
        import json
        try:
            return json.loads(self.state_path.read_bytes())
        except (OSError, ValueError):
            return None

    def _save_state(self, state: dict) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(state))
        os.replace(tmp, self.state_path)

    def _write(self, full: bool, progress: bool, wait: bool) -> IndexStats:
        t0 = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self._lock.acquire(wait):
            return IndexStats(skipped="another process is writing the index")
        try:
            storage, i = self.replicas.active()
            root = str(storage.root)
            if not self.replicas.states[i].healthy:
                # Never empty the index because the storage is unreachable for a moment.
                return IndexStats(skipped=f"storage unreadable: {self.replicas.states[i].reason}",
                                  root=root)
            if not self.replicas.states[i].seen_data:
                # An unmounted mount point is an empty folder: indexing it would remove everyone.
                return IndexStats(skipped=f"storage unreadable: {root} is empty (not mounted?)",
                                  root=root)
            old = self._load_state()
            ix, full = self._open_or_create(full, old)
            if full:
                old = None
            bar = _progress_bar(progress, "scanning")
            result: Scan = scan(root, old, (lambda n: bar.update(n - bar.n)) if bar else None)
            if bar:
                bar.close()
            todo = list(result.folders) if full else result.changed
            stats = IndexStats(full=full, root=root, removed=0 if full else len(result.removed))
            state = result.state
            state["schema"] = SCHEMA_VERSION
            if not full and old and RECEIPT_STATE in old:
                state[RECEIPT_STATE] = old[RECEIPT_STATE]  # a refresh keeps the uke- documents
            elif old and RECEIPT_STATE in old:
                # a full build drops them: say so before the commit, so no reader trusts them
                self._save_state({k: v for k, v in old.items() if k != RECEIPT_STATE})
            if not full and not result.changed and not result.removed:
                # Nothing to write: no new generation, so readers keep their searchers.
                if state != old:
                    self._save_state(state)
                stats.patients = ix.doc_count()
                stats.seconds = time.perf_counter() - t0
                return stats
            writer = ix.writer(limitmb=128)
            try:
                if not full:
                    for pid in result.removed:
                        writer.delete_by_term("pid", pid)
                add = writer.add_document if full else writer.update_document
                for _pid, doc, bad in self._documents(storage, todo, result, progress):
                    add(**doc)
                    stats.changed += 1
                    stats.problems += bad
                writer.commit(mergetype=writing.CLEAR if full else writing.MERGE_SMALL)
            except BaseException:
                writer.cancel()
                raise
            self._save_state(state)
            with self._ix_lock:
                self._ix = None  # next reader reopens (the generation changed anyway)
            stats.patients = ix.doc_count()
            stats.seconds = time.perf_counter() - t0
            return stats
        finally:
            self._lock.release()

    def _documents(self, storage: Storage, pids: list[str], result: Scan,
                   progress: bool) -> Iterable[tuple[str, dict, bool]]:
        jobs = [(pid, result.newest.get(pid, ""), result.misplaced.get(pid, "")) for pid in pids]
        bar = _progress_bar(progress, "indexing", len(jobs))
        done: set[str] = set()
        try:
            if len(jobs) >= POOL_THRESHOLD and (os.cpu_count() or 1) > 1:
                try:
                    for item in self._pooled(storage, jobs):
                        done.add(item[0])
                        if bar:
                            bar.update()
                        yield item
                except BrokenProcessPool as exc:
                    # e.g. a __main__ that spawned workers cannot import: finish in-process.
                    log.warning("index workers failed (%s); reading in this process", exc)
            for pid, newest, misplaced in jobs:
                if pid in done:
                    continue
                if bar:
                    bar.update()
                yield _make(storage, self.facility, pid, newest, misplaced)
        finally:
            if bar:
                bar.close()

    def _pooled(self, storage: Storage, jobs: list[tuple[str, str, str]]):
        import multiprocessing as mp

        n = min(os.cpu_count() or 2, 8)
        with ProcessPoolExecutor(n, mp.get_context("spawn"), _worker_init,
                                 (str(storage.root), self.facility)) as pool:
            yield from pool.map(_worker_doc, jobs, chunksize=256)

    # -- background refresh ---------------------------------------------------------------------
    def start_background_refresh(self, interval: float = 30) -> None:
        """Refresh every ``interval`` seconds in a daemon thread (skipped while another process
        writes).  Readers are never blocked: they keep their searcher until the commit."""
        if self._thread and self._thread.is_alive():
            return
        self._stop = threading.Event()
        stop = self._stop

        def loop() -> None:
            while True:
                try:
                    st = self.try_refresh()
                    if st.changed or st.removed:
                        log.info("%s", st.line())
                except Exception:  # keep serving with the last good index
                    log.exception("patient index refresh failed")
                if stop.wait(interval):
                    return

        self._thread = threading.Thread(target=loop, name=f"index-refresh-{self.facility}",
                                        daemon=True)
        self._thread.start()

    def stop_background_refresh(self, timeout: float = 10) -> None:
        if self._stop:
            self._stop.set()
        if self._thread:
            self._thread.join(timeout)
            self._thread = None

    # -- reading ----------------------------------------------------------------------------------
    def _index(self) -> windex.FileIndex:
        ix = self._ix
        if ix is not None:
            return ix
        if not windex.exists_in(str(self.whoosh_dir)) or not self.state_path.exists():
            self.refresh()  # first use and no index yet: build it now (waits for a writer)
        with self._ix_lock:
            if self._ix is None:
                self._ix = _open_unmapped(self.whoosh_dir)
            return self._ix

    def _searcher(self):
        """The process's searcher, reopened (never ``refresh()``ed) when the index changed;
        callers hold ``_read_lock`` while they use it and its columns."""
        ix = self._index()
        loc = self._local
        s = getattr(loc, "searcher", None)
        gen = ix.latest_generation()
        if s is None or loc.gen != gen or loc.ix is not ix:
            fresh = ix.searcher()
            if s is not None:
                s.close()
            loc.searcher, loc.gen, loc.ix = fresh, gen, ix
            reader = fresh.reader()
            loc.rows = reader.column_reader("row")
            loc.stubs = reader.column_reader("stub")
            loc.patients = reader.column_reader("patient")
            loc.keys = reader.column_reader("keys")
            loc.sorts = reader.column_reader("sort")
            loc.rank, loc.by_rank = _id_order(loc.keys, reader.doc_count_all())
            s = fresh
        return s

    def count(self) -> int:
        with self._read_lock:
            return self._searcher().doc_count()

    def ready(self) -> bool:
        """Has a first build of this schema finished (until then callers walk the storage)?
        An index of an older schema is not read (it lacks terms the searches rely on); the
        next refresh rebuilds it."""
        if not self.state_path.exists():
            return False
        if self._ix is None and not windex.exists_in(str(self.whoosh_dir)):
            return False  # (exists_in opens the index: 60 µs; once open, its TOC listing: 4 µs)
        ix = self._index()
        gen = ix.latest_generation()
        if gen < 0:
            return False
        memo = self._schema_memo
        if memo is None or memo[0] != gen or memo[1] is not ix:
            memo = self._schema_memo = (gen, ix, ix.schema.names() == make_schema().names())
        return memo[2]

    def health(self) -> dict:
        """For ``/health``: never raises."""
        try:
            return {"backend": self.backend, "status": "ok" if self.ready() else "empty"}
        except Exception as exc:
            return {"backend": self.backend, "status": "down", "reason": str(exc)[:200]}

    def get(self, patient_id: str) -> PatientSummary | None:
        with self._read_lock:
            s = self._searcher()
            raw = next((self._local.rows[d]
                        for d in s.docs_for_query(Term("pid", str(patient_id)))), None)
        return None if raw is None else summary_of(orjson.loads(raw))

    def search(self, *, name: str | None = None, family: str | None = None,
               given: str | None = None, kana: str | None = None,
               birthdate: str | tuple[str | None, str | None] | None = None,
               gender: str | None = None, identifier: str | None = None,
               text: str | None = None, limit: int = 1000) -> list[PatientSummary]:
        """Patients matching every given criterion, sorted by kana then id.

        Comma-separated values are alternatives (FHIR's OR).  Names match as normalised prefix
        (1 character) or substring (2 or more); ``name`` covers kanji and kana.  A criterion that
        cannot match anything (a malformed date) gives an empty list, never an exception.
        """
        try:
            plan = self._plan(name, family, given, kana, birthdate, gender, identifier, text)
        except K.BadCriterion:
            return []
        if plan is None or limit <= 0:
            return []
        with self._read_lock:
            s = self._searcher()
            col, rows = self._local.keys, self._local.rows
            # the receipt Patients (uke-…) are for the FHIR search (stubs), not these summaries
            docs = s.docs_for_query(And([plan.query, Not(Prefix("pid", RECEIPT_PREFIX))]))
            checks = plan.checks
            keyed = [(k, d) for k, d in ((col[d].decode("utf-8"), d) for d in docs)
                     if not checks or all(c(k.split(SEP)) for c in checks)]
            if len(keyed) > limit:
                import heapq
                keyed = heapq.nsmallest(limit, keyed)
            else:
                keyed.sort()
            raw = [rows[d] for _, d in keyed]
        return [summary_of(orjson.loads(b)) for b in raw]

    def stubs(self, criteria: list) -> list[dict]:
        """The search stubs (see :mod:`.stubs`) of a superset of the patients matching the
        conformance ``criteria``; the caller applies the API's matcher to them.  Patients
        without a Patient (a deleted ADT-00) have no stub and are left out."""
        parts = narrow(criteria)
        q = Every() if not parts else parts[0] if len(parts) == 1 else And(parts)
        with self._read_lock:
            s = self._searcher()
            col = self._local.stubs
            raw = [col[d] for d in s.docs_for_query(q)]
        return [orjson.loads(b) for b in raw if b]

    def sync_receipt_patients(self, patients: list[dict]) -> bool:
        """Make the index's receipt-Patient documents (``uke-…``) exactly ``patients`` (the
        receipt-built Patients, ``services.claims.ClaimSource.patients``); True when the index
        holds them now.  Cheap when unchanged: the same list object and index generation as
        last time, else one state read.  False (the caller matches them itself) before a first
        build or while another process writes."""
        if not self.ready():
            return False
        gen = self._index().latest_generation()
        memo = self._receipt_memo
        if memo is not None and memo[0] is patients and memo[1] == gen:
            return True
        sig = _receipt_signature(patients)
        if (self._load_state() or {}).get(RECEIPT_STATE) != sig:
            if not self._write_receipts(patients, sig):
                return False
            gen = self._index().latest_generation()
        self._receipt_memo = (patients, gen)
        return True

    def _write_receipts(self, patients: list[dict], sig: str) -> bool:
        if not self._lock.acquire(False):
            return False
        try:
            state = self._load_state()
            if state is None or state.get("schema") != SCHEMA_VERSION:
                return False
            if state.get(RECEIPT_STATE) == sig:
                return True
            ix = _open_unmapped(self.whoosh_dir, readonly=False)
            writer = ix.writer(limitmb=64)
            try:
                writer.delete_by_query(Prefix("pid", RECEIPT_PREFIX))
                for p in patients:
                    writer.add_document(**receipt_document(p))
                writer.commit(mergetype=writing.MERGE_SMALL)
            except BaseException:
                writer.cancel()
                raise
            state[RECEIPT_STATE] = sig
            self._save_state(state)
            with self._ix_lock:
                self._ix = None
            return True
        finally:
            self._lock.release()

    def stub_bytes(self, criteria: list, sort_keys: bool = False) -> list[tuple]:
        """(patient id, undecoded stub JSON[, undecoded sort keys]) of the same superset as
        :meth:`stubs`, in id order: a caller decodes and matches one at a time, so a broad
        search (``gender=female``: 10,000 matches at 20,000 patients) holds ~0.7 KB of bytes per
        match instead of ~4 KB of dicts, and sorts on the ``sort`` column (``sort_keys``)."""
        parts = narrow(criteria)
        q = Every() if not parts else parts[0] if len(parts) == 1 else And(parts)
        with self._read_lock:
            s = self._searcher()
            loc = self._local
            col, keys, rank = loc.stubs, loc.keys, loc.rank
            docs = sorted(s.docs_for_query(q), key=rank.__getitem__)
            raw: list[tuple]
            if sort_keys:
                raw = [(_pid_of(keys[d]), col[d], loc.sorts[d]) for d in docs]
            else:
                raw = [(_pid_of(keys[d]), col[d]) for d in docs]
        return [x for x in raw if x[1]]

    def patients(self, pids: list[str]) -> dict[str, tuple[dict, tuple]]:
        """The stored Patient of each id with its source ``(ADT-00 relpath, size, mtime_ns,
        folder mtime_ns)``: valid while those are unchanged (the caller checks with two stats);
        ids without one (no single ADT-00, a derived Patient) are left out."""
        with self._read_lock:
            s = self._searcher()
            col = self._local.patients
            raw = [(pid, col[d]) for pid, d in ((p, self._docnum(s, p)) for p in pids)
                   if d is not None]
        return _stored(raw)

    def _docnum(self, searcher, pid: str) -> int | None:
        """The live document of ``pid``: a binary search of the documents in id order (a few
        column reads; a dict of every id would grow with the hospital)."""
        import bisect
        loc = self._local
        want = pid.encode("utf-8")
        keys, by_rank, reader = loc.keys, loc.by_rank, searcher.reader()
        i = bisect.bisect_left(by_rank, want, key=lambda d: _pid_bytes(keys[d]))
        while i < len(by_rank) and _pid_bytes(keys[by_rank[i]]) == want:
            if not reader.is_deleted(by_rank[i]):
                return by_rank[i]
            i += 1
        return None

    def exact_page(self, criteria: list, sort: list[tuple[str, bool]], offset: int, count: int,
                   receipts: bool) -> tuple[int, list[str], dict[str, tuple[dict, tuple]]] | None:
        """One page of a Patient search answered by the index alone, or None when a criterion
        needs the matcher (:func:`.stubs.plan`): (total, the page's ids in the API's order,
        their stored Patients as :meth:`patients`).  The total is the hits' count and the order
        comes from the id order and the ``sort`` column, so no stub is decoded and memory is a
        few bytes per hit.  ``receipts``: the index holds the current receipt Patients."""
        parts, exact = plan(criteria)
        if not exact:
            return None
        if not parts:  # (every exact criterion's term comes from a stub: no need to AND it)
            parts.append(Term("sterm", HAS_STUB))
        if not receipts:
            parts.append(Not(Prefix("pid", RECEIPT_PREFIX)))
        with self._read_lock:
            s = self._searcher()
            loc = self._local
            docs = list(s.docs_for_query(And(parts)))
            total = len(docs)
            if count <= 0 or offset >= total:
                page: list[int] = []
            elif sort:
                sorts = loc.sorts
                docs.sort(key=loc.rank.__getitem__)
                keyed = [(d, orjson.loads(sorts[d])) for d in docs]
                page = [d for d, _ in order(keyed, sort, lambda r: r[1])[offset:offset + count]]
            else:
                import heapq
                page = heapq.nsmallest(offset + count, docs, key=loc.rank.__getitem__)[offset:]
            ids = [_pid_of(loc.keys[d]) for d in page]
            raw = [(pid, loc.patients[d]) for pid, d in zip(ids, page)]
        return total, ids, _stored(raw)

    # -- query planning ---------------------------------------------------------------------------
    def _plan(self, name, family, given, kana, birthdate, gender, identifier, text) -> _Plan | None:
        parts: list[Query] = []
        checks: list[Callable[[list], bool]] = []

        def names(value: str, keys: tuple[int, ...], prefixes: tuple[int, ...],
                  kana_only: bool = False, verify: bool = False, with_id: bool = False) -> bool:
            """One name criterion: its query, and a check of the candidates when the terms
            alone are not exact (a part of the name, or a query longer than a gram)."""
            alts: list[Query] = []
            qs: list[str] = []
            for v in _values(value):
                k = K.search_key(v)
                if not k:
                    continue
                qs.append(k)
                terms = K.query_terms(k)
                kana_q = _and([Term("name", t) for t in terms])
                alts.append(kana_q if kana_only else
                            Or([kana_q, _and([Term("name", K.KANJI + t) for t in terms])]))
            ids = [v.strip() for v in _values(value)] if with_id else []
            alts += [Term("pid", i) for i in ids]
            if not alts:
                return False
            parts.append(alts[0] if len(alts) == 1 else Or(alts))
            if verify or any(len(q) > K.GRAM_MAX for q in qs):
                def check(parts: list[str], qs=qs, ids=ids) -> bool:
                    ks = [parts[i] for i in keys]
                    ps = [parts[i] for i in prefixes]
                    return parts[K_PID] in ids or any(K.contains(q, ks, ps) for q in qs)
                checks.append(check)
            return True

        all_parts = (K_FAM, K_GIV, K_KFAM, K_KGIV, K_KANJI, K_KANA)
        for value, ok in (
            (name, lambda v: names(v, (K_KANJI, K_KANA), all_parts)),
            (family, lambda v: names(v, (K_FAM, K_KFAM), (K_FAM, K_KFAM), verify=True)),
            (given, lambda v: names(v, (K_GIV, K_KGIV), (K_GIV, K_KGIV), verify=True)),
            (kana, lambda v: names(v, (K_KANA,), (K_KFAM, K_KGIV, K_KANA), kana_only=True)),
            (text, lambda v: names(v, (K_KANJI, K_KANA), all_parts, with_id=True)),
        ):
            if value is not None and str(value).strip() and not ok(str(value)):
                return None  # only spaces/punctuation that normalise to nothing: no match
        if birthdate:
            ranges = ([K.birth_range(birthdate)] if isinstance(birthdate, (tuple, list))
                      else [K.birth_range(v) for v in _values(birthdate)])
            rq = [NumericRange("birth", lo, hi) for lo, hi in ranges if lo <= hi]
            if not rq:
                return None
            parts.append(rq[0] if len(rq) == 1 else Or(rq))
        if gender:
            parts.append(Or([Term("gender", g.strip().lower()) for g in _values(gender)]))
        if identifier:
            ids = _identifier_values(identifier, self._id_system)
            if not ids:
                return None
            parts.append(Or([Term("pid", i) for i in ids]))
        if not parts:
            return _Plan(Every())
        return _Plan(parts[0] if len(parts) == 1 else And(parts), checks)

    def close(self) -> None:
        self.stop_background_refresh()
        with self._read_lock:
            s = getattr(self._local, "searcher", None)
            if s is not None:
                s.close()
                self._local.searcher = None


def _pid_bytes(key: bytes) -> bytes:
    """The patient id of a ``keys`` column value (its last field), undecoded."""
    return key[key.rindex(b"\x1f") + 1:]


def _pid_of(key: bytes) -> str:
    return _pid_bytes(key).decode("utf-8")


def _id_order(keys, n: int) -> tuple[array, array]:
    """(rank of each document in id order, the documents in id order) as 4-byte arrays: the
    default order of a Patient search and the id lookup, without a Python object per patient
    (≈ 8 bytes per patient; ids compare as UTF-8 bytes, which is their code-point order)."""
    ordered = sorted(range(n), key=lambda d: _pid_bytes(keys[d]))
    by_rank = array("i", ordered)
    rank = array("i", bytes(4 * n))
    for r, d in enumerate(ordered):
        rank[d] = r
    return rank, by_rank


def _stored(raw: list[tuple[str, bytes]]) -> dict[str, tuple[dict, tuple]]:
    out: dict[str, tuple[dict, tuple]] = {}
    for pid, b in raw:
        if b:
            v = orjson.loads(b)
            out[pid] = (v["r"], tuple(v["f"]))
    return out


def _open_unmapped(path: Path, readonly: bool = True) -> windex.FileIndex:
    """The index for reading, its segment files read with ``seek``/``read``, not mapped.

    Whoosh maps a compound segment and then wraps each part it opens in a ``BytesIO`` over the
    mapping, which *copies* the part into the process: at 20,000 patients the Patient and stub
    columns, postings and term index cost ~70 MB of private memory per worker, growing with the
    hospital.  Read through the file, a column value or posting block costs a ``pread``-sized
    read from the page cache (shared, and not the process's memory).  Readers hold the index's
    read lock, so the shared file position is safe.  Writers open it so too (a refresh's
    ``doc_count`` and merges would copy the same parts)."""
    from whoosh.filedb.filestore import FileStorage
    return FileStorage(str(path), supports_mmap=False, readonly=readonly).open_index()


def _and(qs: list[Query]) -> Query:
    return qs[0] if len(qs) == 1 else And(qs)


def _values(value: str) -> list[str]:
    return [v for v in str(value).split(",") if v.strip()]


def _identifier_values(identifier: str, id_system: str) -> list[str]:
    """The patient ids an ``identifier`` criterion names: ``[system|]value`` alternatives whose
    system is the facility's patient-id system (or none)."""
    ids = []
    for v in _values(identifier):
        system, sep, value = v.rpartition("|")
        if sep and system and system != id_system:
            continue
        if value.strip():
            ids.append(value.strip())
    return ids


def _progress_bar(enabled: bool, what: str, total: int | None = None):
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit=" patients", leave=False, dynamic_ncols=True)
