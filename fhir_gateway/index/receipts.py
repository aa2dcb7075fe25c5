"""The receipt index: where each receipt of every UKE file is, so a request reads only its own.

A monthly UKE file holds every patient's receipt of the month; parsing one to answer one patient
is the cost this removes.  The index is a SQLite file, ``DATA_DIR/receipts/{facility}.sqlite3``,
derived from the files and rebuildable at any time (``fhir-gateway index``; a server builds it
at start-up in the background).  Every worker process opens the same file.  Per UKE file it holds
the (size, mtime_ns) it was indexed at, the codec, the header record's byte range and fields, and
the file-wide errors; per receipt its byte range, first line, receipt number, カルテ番号 and the
patient ids it may name, its Claim id, the id of the Patient built from it when no SS-MIX2
patient matches, the RE (and HO) fields and a Claim *stub* (the elements the header and RE
decide).  Readers then seek to ``[start, end)`` (``storage.uke.read_ranges``).

Nothing is trusted blindly: a file that is not a SQLite database of this schema, or fails
``PRAGMA quick_check`` when a writer opens it, is deleted and rebuilt; a UKE file whose size or
mtime differs from its row is re-indexed before its rows are used; and a reader checks that the
bytes at a range are the receipt the index says (``ReceiptIndex.verify``).

Writers: one process at a time builds (an ``flock`` on ``{facility}.lock``); a request that finds
one changed file re-indexes just that file (SQLite serialises the two; each file is one
transaction, so readers never see half a file).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from storage.reader import ERROR, Problem
from storage.uke import (
    Receipt,
    UkeRecord,
    header_variant,
    karte_candidates,
    layout_for,
    list_files,
    read_uke,
    sniff_uke,
)

from .lock import WriterLock

log = logging.getLogger(__name__)

SCHEMA_VERSION = "receipts-2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY, root TEXT NOT NULL, rel TEXT NOT NULL, size INTEGER, mtime_ns INTEGER,
    uke INTEGER, codec TEXT, skip INTEGER, header TEXT, problems TEXT, UNIQUE(root, rel));
CREATE TABLE IF NOT EXISTS receipts(
    file INTEGER NOT NULL, i INTEGER NOT NULL, start INTEGER, end INTEGER, line INTEGER,
    receipt_no TEXT, claim_id TEXT, karte TEXT, uke_pid TEXT, re TEXT, stub TEXT,
    PRIMARY KEY(file, i));
CREATE INDEX IF NOT EXISTS receipts_claim ON receipts(claim_id);
CREATE INDEX IF NOT EXISTS receipts_uke ON receipts(uke_pid);
CREATE TABLE IF NOT EXISTS keys(cand TEXT NOT NULL, file INTEGER NOT NULL, i INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS keys_cand ON keys(cand);
"""


class IndexUnusable(Exception):
    """The index file cannot be opened as this schema (corrupt, foreign, unwritable)."""


@dataclass(frozen=True)
class FileRow:
    id: int
    root: str
    rel: str
    size: int
    mtime_ns: int
    uke: bool
    codec: str
    skip: int
    header: tuple[int, int, int] | None  # (start, end, line) of the IR/UK/YK record
    header_fields: tuple[str, ...] | None
    problems: tuple[Problem, ...]

    @cached_property
    def path(self) -> Path:
        return Path(self.root) / self.rel

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9

    def header_record(self) -> UkeRecord | None:
        if self.header is None or self.header_fields is None:
            return None
        f = list(self.header_fields)
        rec = UkeRecord(f, self.header[2], self.header[0], end=self.header[1])
        rec.layout = layout_for(f[0], len(f), header_variant(f))
        return rec


@dataclass(frozen=True)
class ReceiptRow:
    """Receipt ``i`` of file ``file`` as indexed."""

    file: int
    i: int
    start: int
    end: int
    line: int
    receipt_no: str
    claim_id: str
    karte: str
    uke_pid: str
    re: tuple[str, ...]
    stub: dict | None = field(default=None, compare=False)

    def receipt(self) -> Receipt:
        """The receipt as far as the index knows it: its RE record (enough for the Patient
        built from it, ``mappers.claim.map_re_patient``)."""
        re_ = UkeRecord(list(self.re), self.line, self.start)
        re_.layout = layout_for("RE", len(self.re), "dental" if len(self.re) < 30 else "medical")
        return Receipt(re_, records=[re_])


@dataclass
class BuildStats:
    files: int = 0  # UKE files in the index afterwards
    receipts: int = 0
    changed: int = 0  # files (re-)indexed by this run
    removed: int = 0
    seconds: float = 0.0
    rebuilt: str = ""  # why the index file was thrown away, if it was
    skipped: str = ""

    def line(self) -> str:
        if self.skipped:
            return f"receipt index: skipped ({self.skipped})"
        why = f"; rebuilt: {self.rebuilt}" if self.rebuilt else ""
        return (f"receipt index: {self.files} UKE files, {self.receipts} receipts, "
                f"{self.changed} re-read, {self.removed} removed, {self.seconds:.1f} s{why}")


def _problem_json(p: Problem) -> list:
    return [p.path, p.kind, p.reason, p.severity, p.offset]


class ReceiptIndex:
    """The receipt index of one facility (see the module docstring).

    ``data_dir`` None, or a directory where the file cannot be created, gives an index in this
    process's memory (same behaviour, built by the first requests; ``state`` says so)."""

    def __init__(self, data_dir: Path | None, facility: str, roots: Sequence[Path]) -> None:
        self.facility = facility
        self.roots = [str(Path(r)) for r in roots]
        self._local = threading.local()
        self._mem: sqlite3.Connection | None = None
        self.memory_reason = ""
        if data_dir is None:
            self.path: Path | None = None
            self.memory_reason = "no data directory"
        else:
            self.path = Path(data_dir) / "receipts" / f"{facility}.sqlite3"
        self._lock = WriterLock(Path(data_dir) / "receipts" / f"{facility}.lock") \
            if data_dir is not None else None
        self._uri = ""
        if self.path is None:
            self._use_memory(self.memory_reason)

    # -- connections ------------------------------------------------------------------------------
    def _use_memory(self, reason: str) -> None:
        self.memory_reason = reason
        self._uri = f"file:receipts-{uuid.uuid4().hex}?mode=memory&cache=shared"
        self._mem = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
        self._mem.executescript(_SCHEMA)
        self._local = threading.local()

    @property
    def in_memory(self) -> bool:
        return self._mem is not None

    def _connect(self) -> sqlite3.Connection:
        if self._mem is not None:
            con = sqlite3.connect(self._uri, uri=True, timeout=30)
        else:
            assert self.path is not None
            con = sqlite3.connect(str(self.path), timeout=30)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
        return con

    def _con(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        con = getattr(self._local, "con", None)
        if con is None:
            if self.path is not None and self._mem is None and not self.path.exists():
                raise IndexUnusable("not built yet")
            con = self._connect()
            self._local.con = con
        return con

    def _drop_connection(self) -> None:
        con = getattr(self._local, "con", None)
        self._local.rows = None
        if con is not None:
            con.close()
            self._local.con = None

    def state(self) -> dict:
        """For ``/health``: ready / building / missing / memory, with counts."""
        exists = self._mem is not None or (self.path is not None and self.path.exists())
        if self._mem is not None:
            base: dict = {"state": "memory", "reason": self.memory_reason}
        else:
            base = {"state": "building" if self.building() else "ready" if exists else "missing"}
        try:
            if exists:
                con = self._con()
                base["files"] = con.execute("SELECT count(*) FROM files WHERE uke=1").fetchone()[0]
                base["receipts"] = con.execute("SELECT count(*) FROM receipts").fetchone()[0]
                base["complete"] = self.complete()
        except (sqlite3.Error, IndexUnusable) as exc:
            base = {"state": "unusable", "reason": str(exc)}
        if self.path is not None:
            base["path"] = str(self.path)
        return base

    def complete(self) -> bool:
        """True once a build over every file has finished (the first build sets it)."""
        try:
            row = self._con().execute("SELECT value FROM meta WHERE key='built'").fetchone()
        except (sqlite3.Error, IndexUnusable):
            return False
        return row is not None

    def building(self) -> bool:
        """Another process (or thread) holds the writer lock right now."""
        if self._lock is None:
            return False
        if self._lock.acquire(wait=False):
            self._lock.release()
            return False
        return True

    # -- writing ----------------------------------------------------------------------------------
    def _open_for_writing(self) -> tuple[sqlite3.Connection, str]:
        """A writable connection on a sound index; a corrupt or foreign file is deleted and
        recreated (returns why, or "")."""
        if self._mem is not None:
            return self._con(), ""
        assert self.path is not None
        why = ""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexUnusable(f"cannot create {self.path.parent}: {exc}") from exc
        if self.path.exists():
            try:
                con = self._connect()
                ok = con.execute("PRAGMA quick_check").fetchone()[0]
                version = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                con.close()
                if ok != "ok":
                    why = f"integrity check failed: {ok}"
                elif version is None or version[0] != SCHEMA_VERSION:
                    why = f"schema {version[0] if version else 'unknown'} != {SCHEMA_VERSION}"
            except sqlite3.Error as exc:
                why = f"not a usable SQLite file: {exc}"
            if why:
                log.warning("receipt index %s: %s; rebuilding", self.path, why)
                self._drop_connection()
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(f"{self.path}{suffix}")
                    except FileNotFoundError:
                        pass
        try:
            con = self._connect()
            con.executescript(_SCHEMA)
            con.execute("INSERT OR REPLACE INTO meta VALUES('schema', ?)", (SCHEMA_VERSION,))
            con.commit()
        except sqlite3.Error as exc:
            raise IndexUnusable(f"cannot write {self.path}: {exc}") from exc
        self._drop_connection()  # readers reopen: the file may be a new one
        return con, why

    def refresh(self, full: bool = False, wait: bool = True) -> BuildStats:
        """Bring the index up to date with the files (all of them again with ``full``).  Another
        writer busy and ``wait`` False: skipped.  An unusable file location: index in memory."""
        t0 = time.monotonic()
        stats = BuildStats()
        if self._lock is not None and not self._lock.acquire(wait=wait):
            stats.skipped = "another process is building it"
            return stats
        try:
            try:
                con, stats.rebuilt = self._open_for_writing()
            except IndexUnusable as exc:
                log.warning("receipt index unusable (%s); keeping it in memory", exc)
                self._use_memory(str(exc))
                con, stats.rebuilt = self._con(), ""
            if full:
                with con:
                    con.execute("DELETE FROM keys")
                    con.execute("DELETE FROM receipts")
                    con.execute("DELETE FROM files")
            rows = self._file_rows(con)
            seen = set()
            for root, path, rel, st in self.listing():
                seen.add((root, rel))
                row = rows.get((root, rel))
                if row is not None and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns:
                    continue
                self._index_file(con, root, path, rel, st)
                stats.changed += 1
            gone = [r for k, r in rows.items() if k not in seen]
            with con:
                for r in gone:
                    self._delete_file(con, r.id)
                con.execute("INSERT OR REPLACE INTO meta VALUES('built', ?)", (str(time.time()),))
            stats.removed = len(gone)
            stats.files = con.execute("SELECT count(*) FROM files WHERE uke=1").fetchone()[0]
            stats.receipts = con.execute("SELECT count(*) FROM receipts").fetchone()[0]
            if con is not self._mem and con is not getattr(self._local, "con", None):
                con.close()
        finally:
            if self._lock is not None:
                self._lock.release()
        stats.seconds = time.monotonic() - t0
        return stats

    def listing(self) -> Iterable[tuple[str, Path, str, os.stat_result]]:
        """(root, path, rel, stat) of every file below the receipts folders (no file opened)."""
        for root in self.roots:
            for path, rel, st in list_files(root):
                yield root, path, rel, st

    def index_files(self, files: list[tuple[str, Path, str, os.stat_result]]) -> None:
        """Re-index these files now (a request found them new or changed)."""
        con = self._con()
        for root, path, rel, st in files:
            self._index_file(con, root, path, rel, st)

    def _index_file(self, con: sqlite3.Connection, root: str, path: Path, rel: str,
                    st: os.stat_result) -> None:
        """Read one file whole and replace its rows in one transaction."""
        from mappers.claim import claim_id, receipt_patient_id
        uke = sniff_uke(path)
        receipts: list[tuple] = []
        keys: list[tuple[str, int]] = []
        codec, skip, header, problems = "", 0, None, "[]"
        if uke:
            try:
                data = path.read_bytes()
            except OSError as exc:
                log.warning("receipt file unreadable: %s: %s", path, exc)
                data = b""
            uf = read_uke(data, rel)
            codec, skip = uf.codec, uf.skip
            if uf.ir is not None:
                header = json.dumps([uf.ir.offset, uf.ir.end, uf.ir.line, uf.ir.fields],
                                    ensure_ascii=False)
            problems = json.dumps([_problem_json(p) for p in uf.problems if p.severity == ERROR],
                                  ensure_ascii=False)
            mtime = st.st_mtime
            for i, r in enumerate(uf.receipts):
                start, end, line = r.span
                stub = self._stub(uf.ir, r, mtime)
                receipts.append((i, start, end, line, r.receipt_no,
                                 claim_id(self.facility, uf.ir, r), r.re["karte_no"],
                                 receipt_patient_id(self.facility, r),
                                 json.dumps(r.re.fields, ensure_ascii=False),
                                 json.dumps(stub, ensure_ascii=False) if stub else None))
                keys.extend((c, i) for c in karte_candidates(r.re["karte_no"]))
        with con:
            old = con.execute("SELECT id FROM files WHERE root=? AND rel=?", (root, rel)).fetchone()
            if old is not None:
                self._delete_file(con, old[0])
            cur = con.execute(
                "INSERT INTO files(root, rel, size, mtime_ns, uke, codec, skip, header, problems)"
                " VALUES(?,?,?,?,?,?,?,?,?)",
                (root, rel, st.st_size, st.st_mtime_ns, int(uke), codec, skip, header, problems))
            fid = cur.lastrowid
            con.executemany("INSERT INTO receipts VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                            [(fid, *r) for r in receipts])
            con.executemany("INSERT INTO keys VALUES(?,?,?)", [(c, fid, i) for c, i in keys])

    def _stub(self, header: UkeRecord | None, receipt: Receipt, mtime: float) -> dict | None:
        """``mappers.claim.claim_stub``: the Claim elements the header and RE decide."""
        from mappers.claim import ClaimContext, claim_stub, mtime_instant
        try:
            return claim_stub(receipt, ClaimContext(self.facility, "", None, mtime_instant(mtime),
                                                    header))
        except Exception:  # noqa: BLE001 - the full mapping reports it; the stub cannot answer
            return None

    def forget(self, fid: int) -> None:
        """Drop one file's rows (they proved wrong): the next look re-indexes the file."""
        try:
            with self._con() as con:
                self._delete_file(con, fid)
        except (sqlite3.Error, IndexUnusable) as exc:
            log.warning("receipt index: cannot drop file %s: %s", fid, exc)

    @staticmethod
    def _delete_file(con: sqlite3.Connection, fid: int) -> None:
        con.execute("DELETE FROM keys WHERE file=?", (fid,))
        con.execute("DELETE FROM receipts WHERE file=?", (fid,))
        con.execute("DELETE FROM files WHERE id=?", (fid,))

    # -- reading ----------------------------------------------------------------------------------
    @staticmethod
    def _file_row(r: tuple) -> FileRow:
        header = json.loads(r[8]) if r[8] else None
        return FileRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6] or "", r[7] or 0,
                       tuple(header[:3]) if header else None,
                       tuple(header[3]) if header else None,
                       tuple(Problem(*p) for p in json.loads(r[9] or "[]")))

    _FCOLS = "id, root, rel, size, mtime_ns, uke, codec, skip, header, problems"

    def _file_rows(self, con: sqlite3.Connection | None = None) -> dict[tuple[str, str], FileRow]:
        """Every file row; decoded rows are kept per process by (id, size, mtime_ns), so a
        request reads four numbers a file, not the headers and problems again."""
        con = con or self._con()
        known: dict[int, FileRow] = getattr(self._local, "rows", None) or {}
        out: dict[tuple[str, str], FileRow] = {}
        fresh: dict[int, FileRow] = {}
        missing = []
        for fid, size, mtime_ns in con.execute("SELECT id, size, mtime_ns FROM files"):
            row = known.get(fid)
            if row is not None and row.size == size and row.mtime_ns == mtime_ns:
                fresh[fid] = row
            else:
                missing.append(fid)
        for i in range(0, len(missing), 500):
            part = missing[i:i + 500]
            for r in con.execute(f"SELECT {self._FCOLS} FROM files WHERE id IN "
                                 f"({','.join('?' * len(part))})", part):
                fresh[r[0]] = self._file_row(r)
        self._local.rows = fresh
        for row in fresh.values():
            out[(row.root, row.rel)] = row
        return out

    def files(self) -> dict[tuple[str, str], FileRow]:
        """Every indexed file by (root, rel).  Raises :class:`IndexUnusable`.  Called once per
        request: a connection to an index file that was since replaced (rebuilt after
        corruption) is reopened here."""
        if self.path is not None and self._mem is None:
            try:
                ino = self.path.stat().st_ino
            except OSError:
                ino = None
            if getattr(self._local, "ino", None) != ino:
                self._drop_connection()
                self._local.ino = ino
        try:
            return self._file_rows()
        except sqlite3.Error as exc:
            self._drop_connection()
            raise IndexUnusable(str(exc)) from exc

    _RCOLS = "file, i, start, end, line, receipt_no, claim_id, karte, uke_pid, re"

    @staticmethod
    def _receipt_row(r: tuple, stub: str | None = None) -> ReceiptRow:
        return ReceiptRow(r[0], r[1], r[2], r[3], r[4], r[5] or "", r[6] or "", r[7] or "",
                          r[8] or "", tuple(json.loads(r[9])), json.loads(stub) if stub else None)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._con().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            self._drop_connection()
            raise IndexUnusable(str(exc)) from exc

    def by_candidate(self, pid: str, with_stubs: bool = False) -> list[ReceiptRow]:
        """Receipts whose カルテ番号 may name SS-MIX2 patient ``pid``."""
        return self.by_candidates([pid], with_stubs).get(pid, [])

    def by_candidates(self, pids: Sequence[str], with_stubs: bool = False
                      ) -> dict[str, list[ReceiptRow]]:
        """:meth:`by_candidate` of many patients in one query per 500 (the bulk export's
        chunks): pid -> its receipts in file order; a pid without receipts is left out."""
        cols = ", ".join("r." + c.strip() for c in self._RCOLS.split(","))
        cols += ", r.stub" if with_stubs else ""
        out: dict[str, list[ReceiptRow]] = {}
        unique = list(dict.fromkeys(pids))
        for i in range(0, len(unique), 500):
            part = unique[i:i + 500]
            for r in self._query(
                    f"SELECT k.cand, {cols} FROM keys k "
                    "JOIN receipts r ON r.file=k.file AND r.i=k.i "
                    f"WHERE k.cand IN ({','.join('?' * len(part))}) ORDER BY k.cand, r.file, r.i",
                    tuple(part)):
                out.setdefault(r[0], []).append(
                    self._receipt_row(r[1:11], r[11] if with_stubs else None))
        return out

    def by_uke_pid(self, pid: str, with_stubs: bool = False) -> list[ReceiptRow]:
        """Receipts whose receipt-built Patient id is ``pid`` (matched or not)."""
        cols = self._RCOLS + (", stub" if with_stubs else "")
        return [self._receipt_row(r[:10], r[10] if with_stubs else None) for r in self._query(
            f"SELECT {cols} FROM receipts WHERE uke_pid=? ORDER BY file, i", (pid,))]

    def by_claim(self, cid: str) -> list[ReceiptRow]:
        return [self._receipt_row(r) for r in self._query(
            f"SELECT {self._RCOLS} FROM receipts WHERE claim_id=? ORDER BY file, i", (cid,))]

    def uke_patients(self) -> list[tuple[str, str]]:
        """(receipt Patient id, カルテ番号) of every distinct person in the receipts."""
        return [(r[0], r[1] or "") for r in self._query(
            "SELECT uke_pid, min(karte) FROM receipts GROUP BY uke_pid ORDER BY uke_pid")]

    def all_receipts(self, with_stubs: bool = False) -> list[ReceiptRow]:
        cols = self._RCOLS + (", stub" if with_stubs else "")
        return [self._receipt_row(r[:10], r[10] if with_stubs else None) for r in self._query(
            f"SELECT {cols} FROM receipts ORDER BY file, i")]

    def close(self) -> None:
        self._drop_connection()
        if self._mem is not None:
            self._mem.close()
            self._mem = None
