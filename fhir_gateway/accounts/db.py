"""The accounts database: one sqlite3 file in ``data_dir`` in WAL mode.

Why sqlite: accounts, sessions, the disaster-access switch and the audit trail must survive a
restart and be shared by every waitress thread, yet the gateway has no database server.  WAL lets
readers (every request checks its session) run beside the occasional writer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    pw_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    facility TEXT,
    display TEXT NOT NULL DEFAULT '',
    disabled INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    pw_changed REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    sid_hash TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    created REAL NOT NULL,
    last_seen REAL NOT NULL,
    username TEXT
);
CREATE TABLE IF NOT EXISTS passphrases (
    facility TEXT PRIMARY KEY,
    pw_hash TEXT NOT NULL,
    version INTEGER NOT NULL,
    rotated_at REAL NOT NULL,
    rotated_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS access (
    facility TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL,
    reason TEXT NOT NULL,
    expires REAL,
    changed_by TEXT NOT NULL,
    changed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS access_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    facility TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    expires REAL,
    username TEXT NOT NULL,
    person TEXT NOT NULL,
    staff_no TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    username TEXT NOT NULL,
    person TEXT NOT NULL,
    staff_no TEXT NOT NULL,
    session TEXT NOT NULL,
    ip TEXT NOT NULL,
    action TEXT NOT NULL,
    facility TEXT NOT NULL,
    patient TEXT NOT NULL,
    detail TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL,
    last TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last REAL NOT NULL,
    blocked_until REAL NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
    BEGIN SELECT RAISE(ABORT, 'access log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log
    BEGIN SELECT RAISE(ABORT, 'access log is append-only'); END;
"""


def private(path: Path) -> None:
    """Create ``path`` (and its ``-wal``/``-shm``, which sqlite creates with the same mode) as
    0600, and tighten an existing one."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)
        except FileNotFoundError:
            pass


class Database:
    """A thread-local connection per thread on one file; writes serialised by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        private(self.path)  # accounts, sessions and the audit trail: owner only (L2)
        self._local = threading.local()
        self.write_lock = threading.RLock()
        with self.write_lock:
            conn = self.conn()
            conn.executescript(SCHEMA)
            cols = {r["name"] for r in conn.execute("PRAGMA table_info(users)")}
            for col, decl in (("totp_secret", "TEXT"), ("totp_last", "INTEGER NOT NULL DEFAULT 0")):
                if col not in cols:  # a database of an earlier version
                    conn.execute(f"ALTER TABLE users ADD COLUMN {col} {decl}")

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                check_same_thread=False)
            c.row_factory = sqlite3.Row
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA busy_timeout=30000")
            self._local.conn = c
        return c

    def execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        return self.conn().execute(sql, params)

    def write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self.write_lock:
            return self.conn().execute(sql, params)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: sqlite's write lock makes this the one writer across
        *processes* (the thread lock alone only covered one worker — issue 13 M1)."""
        with self.write_lock:
            conn = self.conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
