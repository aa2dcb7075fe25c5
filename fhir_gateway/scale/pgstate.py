"""The shared state in PostgreSQL: accounts, sessions, lockouts, the 合言葉, the disaster-access
switch, the audit trail, API tokens and memos, for any number of gateway instances.

The embedded classes keep their logic (validation, hash chains, messages); only where they keep
their rows changes:

* :class:`PgDatabase` stands in for :class:`fhir_gateway.accounts.db.Database` under
  :class:`~fhir_gateway.accounts.AccountStore` and the session interface.  Its ``transaction()``
  (and ``write_lock``) is a PostgreSQL transaction holding one transaction-level advisory lock:
  the serialised writer of the audit chain across machines, as ``BEGIN IMMEDIATE`` is on one.
  The SQL the embedded store writes is portable but for ``?`` placeholders and ``INSERT OR
  REPLACE``, translated here.
* :class:`PgTokenStore` and :class:`PgMemoJournal` subclass the embedded stores and override
  only their persistence.
* Append-only is enforced by the database: triggers refuse UPDATE, DELETE and TRUNCATE on
  ``audit``, ``access_log`` and ``memos`` (schema step 2), and a UNIQUE ``prev_hash`` means the
  chain cannot fork even if two writers raced.

The chain keys (``integrity.key``) and the paging key stay in ``data_dir``, which every instance
shares (a key in the same database as the chain would let whoever edits the rows re-sign them).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import asdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import orjson

from fhir_gateway.bulk.store import JobStore
from fhir_gateway.auth_tokens import TokenInfo, TokenStore, TokenStoreError
from fhir_gateway.memos import MemoJournal, MemoStorageError, _link
from fhir_gateway.smart.clients import Client, ClientStore, ClientStoreError
from fhir_gateway.smart.tokens import CLOCK_SKEW, JtiStore

from fhir_gateway.singletons import Singletons
from fhir_gateway.state_errors import StateUnavailable

from .migrations import require_current
from .pg import Connections, lock_key

# Primary keys of the tables the embedded store writes with INSERT OR REPLACE.
_PKEYS = {"users": "username", "sessions": "sid_hash", "passphrases": "facility",
          "access": "facility", "audit_head": "id", "kv": "key", "smart_clients": "id",
          "attempts": "key"}
_REPLACE = re.compile(r"^\s*INSERT\s+OR\s+REPLACE\s+INTO\s+(\w+)\s*\(([^)]*)\)(.*)$", re.S | re.I)
STATE_LOCK = lock_key("fhir-gateway:state-writer")


def translate(sql: str) -> str:
    """The embedded store's SQLite dialect as PostgreSQL (placeholders, INSERT OR REPLACE)."""
    m = _REPLACE.match(sql)
    if m:
        table, cols, rest = m.group(1), m.group(2), m.group(3)
        names = [c.strip() for c in cols.split(",")]
        pk = _PKEYS[table.lower()]
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c != pk)
        sql = (f"INSERT INTO {table} ({cols}){rest} ON CONFLICT ({pk}) DO "
               + (f"UPDATE SET {sets}" if sets else "NOTHING"))
    return sql.replace("%", "%%").replace("?", "%s")


class _Tx(threading.local):
    depth = 0


class PgDatabase:
    """The accounts database API (``execute``, ``write``, ``write_lock``, ``transaction``) on
    PostgreSQL.  Rows are dicts (``row["name"]``, ``dict(row)``) like ``sqlite3.Row``."""

    backend = "postgresql"

    def __init__(self, dsn: str) -> None:
        self.db = Connections(dsn)
        require_current(self.db.get())
        self._tx = _Tx()
        self.write_lock = self._locked()  # re-entrant: ``with db.write_lock:`` as on sqlite

    def execute(self, sql: str, params: tuple = ()):
        try:
            if self._tx.depth:
                return self.db.get().execute(translate(sql), params)
            return self.db.execute(translate(sql), params)
        except self.db.psycopg.OperationalError as exc:
            raise StateUnavailable(f"the state database cannot be reached "
                                   f"({type(exc).__name__})") from exc

    def write(self, sql: str, params: tuple = ()):
        return self.execute(sql, params)

    @contextmanager
    def transaction(self) -> Iterator["PgDatabase"]:
        """One serialised writer across every instance: a transaction holding the state
        advisory lock (released at COMMIT/ROLLBACK).  Nested calls join the outer one."""
        if self._tx.depth:
            self._tx.depth += 1
            try:
                yield self
            finally:
                self._tx.depth -= 1
            return
        try:
            conn = self.db.get()
        except self.db.psycopg.OperationalError as exc:
            raise StateUnavailable(f"the state database cannot be reached "
                                   f"({type(exc).__name__})") from exc
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (STATE_LOCK,))
            self._tx.depth = 1
            try:
                yield self
            finally:
                self._tx.depth = 0

    def _locked(self):
        db = self

        class _Lock:
            def __enter__(self):
                self._cm = db.transaction()
                return self._cm.__enter__()

            def __exit__(self, *exc):
                return self._cm.__exit__(*exc)

        class _Reentrant(threading.local):
            def __enter__(self):
                self.stack = getattr(self, "stack", [])
                lock = _Lock()
                self.stack.append(lock)
                return lock.__enter__()

            def __exit__(self, *exc):
                return self.stack.pop().__exit__(*exc)

        return _Reentrant()

    def conn(self):
        return self

    def close(self) -> None:
        self.db.close()


class PgTokenStore(TokenStore):
    """API tokens in the ``api_tokens`` table: a revoke on one instance holds on all at once."""

    def __init__(self, dsn: str, db: PgDatabase | None = None) -> None:
        super().__init__(Path("/nonexistent-token-dir"))
        self.pg = db or PgDatabase(dsn)

    def _load(self) -> dict[str, TokenInfo]:
        try:
            rows = self.pg.execute("SELECT * FROM api_tokens").fetchall()
        except Exception as exc:  # fail closed with the reason, as a corrupt file does
            raise TokenStoreError(f"the token table cannot be read ({type(exc).__name__}: "
                                  f"{exc})") from exc
        return {r["id"]: TokenInfo(r["id"], r["name"], r["facility"], r["salt"], r["hash"],
                                   r["created"], r["revoked"], r["extra"] or {}) for r in rows}

    def _save(self, tokens: dict[str, TokenInfo]) -> None:
        with self.pg.transaction():
            for t in tokens.values():
                self.pg.execute(
                    "INSERT INTO api_tokens (id, name, facility, salt, hash, created, revoked, "
                    "extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                    "revoked = EXCLUDED.revoked, extra = EXCLUDED.extra",
                    (t.id, t.name, t.facility, t.salt, t.hash, t.created, t.revoked,
                     json.dumps(t.extra)))


class PgMemoJournal(MemoJournal):
    """The memo journal as rows of ``memos`` (the very journal lines, so the keyed chain and its
    verification are the embedded ones) and its keyed head in ``kv``."""

    def __init__(self, data_dir: str | Path, db: PgDatabase) -> None:
        super().__init__(data_dir)
        self.pg = db

    def facilities(self) -> list[str]:
        return [r["facility"] for r in
                self.pg.execute("SELECT DISTINCT facility FROM memos ORDER BY 1").fetchall()]

    def _lines(self, facility: str) -> list[tuple[str, dict]]:
        self.path(facility)  # validates the code
        rows = self.pg.execute("SELECT line FROM memos WHERE facility = ? ORDER BY seq",
                               (facility,)).fetchall()
        return self._parse("\n".join(r["line"] for r in rows).encode("utf-8"))

    def checked(self, facility: str):
        from fhir_gateway import integrity

        try:
            self.path(facility)
            row = self.pg.execute("SELECT count(*) AS n, coalesce(max(seq), 0) AS s FROM memos "
                                  "WHERE facility = ?", (facility,)).fetchone()
            head = self.pg.execute("SELECT value FROM kv WHERE key = ?",
                                   (f"memo-head:{facility}",)).fetchone()
        except Exception as exc:  # the database cannot be read: say so, do not fail the page
            return [], integrity.Report(f"memos/{facility}", 0, False, 1, f"cannot be read ({exc})")
        stamp = (row["n"], row["s"], head["value"] if head else "")
        hit = self._checked.get(facility)
        if hit and hit[0] == stamp:
            return hit[1], hit[2]
        entries, report = self._verify_lines(facility, self._lines(facility))
        self._checked[facility] = (stamp, entries, report)
        return entries, report

    def _read_head(self, facility: str):
        row = self.pg.execute("SELECT value FROM kv WHERE key = ?",
                              (f"memo-head:{facility}",)).fetchone()
        if row is None:
            return None
        try:
            d = orjson.loads(row["value"])
            return int(d["count"]), str(d["last"]), str(d["mac"])
        except (ValueError, KeyError, TypeError):
            return (0, "", "")

    def _write_head(self, facility: str, count: int, last: str) -> None:
        from fhir_gateway import integrity

        value = json.dumps({"count": count, "last": last,
                            "mac": integrity.head_mac(self.key(), facility, count, last)})
        self.pg.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                        (f"memo-head:{facility}", value))

    def _store(self, memo, admin: bool) -> None:
        """Append in one serialised transaction: read the chain, link, insert, move the head."""
        try:
            with self.pg.transaction():
                lines = self._lines(memo.facility)
                record = self._record(lines, memo, admin)
                line = json.dumps(record, ensure_ascii=False, sort_keys=True)
                self.pg.execute("INSERT INTO memos (facility, line) VALUES (?, ?)",
                                (memo.facility, line))
                self._write_head(memo.facility, len(lines) + 1, _link(line, record))
        except (OSError, MemoStorageError):
            raise
        except Exception as exc:
            if isinstance(exc, StateUnavailable) or type(exc).__module__.startswith("psycopg"):
                raise MemoStorageError(f"メモを保存できませんでした: データベース ({type(exc).__name__})。"
                                       "メモは保存されていません (the memo was NOT saved)") from exc
            raise


class PgClientStore(ClientStore):
    """SMART Backend Services clients in ``smart_clients``: registered or revoked once, seen by
    every instance at once."""

    def __init__(self, db: PgDatabase) -> None:
        super().__init__(Path("/nonexistent-client-dir"))
        self.pg = db

    def _load(self) -> dict[str, Client]:
        try:
            rows = self.pg.execute("SELECT data FROM smart_clients").fetchall()
            return {r["data"]["id"]: Client(**r["data"]) for r in rows}
        except Exception as exc:
            raise ClientStoreError(f"the client table cannot be read ({type(exc).__name__}: "
                                   f"{exc})") from exc

    def _save(self, clients: dict[str, Client]) -> None:
        with self.pg.transaction():
            for c in clients.values():
                self.pg.execute("INSERT OR REPLACE INTO smart_clients (id, data) VALUES (?, ?)",
                                (c.id, json.dumps(asdict(c))))


class PgJtiStore(JtiStore):
    """Client-assertion ids already used (replay refused across every instance)."""

    def __init__(self, db: PgDatabase) -> None:
        super().__init__(Path("/nonexistent-jti"))
        self.pg = db

    def claim(self, client: str, jti: str, exp: float) -> bool:
        self.pg.execute("DELETE FROM smart_jti WHERE exp < ?", (time.time() - CLOCK_SKEW,))
        row = self.pg.execute("INSERT INTO smart_jti (client, jti, exp) VALUES (?, ?, ?) "
                              "ON CONFLICT DO NOTHING RETURNING jti", (client, jti, exp)).fetchone()
        return row is not None


class _AdvisoryClaim:
    """The right to run one export job: a session advisory lock on its own connection; it
    dies with the process (a crashed instance's job is resumed by another)."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def release(self) -> None:
        self.conn.close()


class PgJobStore(JobStore):
    """Bulk-export job state in ``bulk_jobs``: status polled through any instance; the job runs
    on the one instance holding its claim.  The files go to ``[export] dir`` (shared)."""

    def __init__(self, db: PgDatabase) -> None:
        self.pg = db
        self._lock = threading.Lock()

    def create(self, job: dict) -> None:
        self.pg.execute("INSERT INTO bulk_jobs (id, data) VALUES (?, ?)",
                        (job["id"], json.dumps(job)))

    def get(self, jid: str) -> dict | None:
        if not str(jid).isalnum():
            return None
        row = self.pg.execute("SELECT data FROM bulk_jobs WHERE id = ?", (jid,)).fetchone()
        return row["data"] if row else None

    def update(self, jid: str, **changes) -> dict | None:
        with self.pg.transaction():
            row = self.pg.execute("SELECT data FROM bulk_jobs WHERE id = ? FOR UPDATE",
                                  (jid,)).fetchone()
            if row is None:
                return None
            job = row["data"]
            if job.get("status") == "cancelled" and changes.get("status") not in (None,
                                                                                  "cancelled"):
                changes.pop("status")
            job.update(changes)
            self.pg.execute("UPDATE bulk_jobs SET data = ? WHERE id = ?", (json.dumps(job), jid))
            return job

    def all(self) -> list[dict]:
        return [r["data"] for r in self.pg.execute("SELECT data FROM bulk_jobs ORDER BY id")]

    def delete(self, jid: str) -> None:
        self.pg.execute("DELETE FROM bulk_jobs WHERE id = ?", (jid,))

    def claim(self, jid: str):
        conn = self.pg.db.fresh(autocommit=True)
        got = conn.execute("SELECT pg_try_advisory_lock(%s)",
                           (lock_key(f"bulk-job:{jid}"),)).fetchone()[0]
        if not got:
            conn.close()
            return None
        return _AdvisoryClaim(conn)


class PgState:
    """The PostgreSQL state store (see :mod:`fhir_gateway.state`)."""

    backend = "postgresql"

    def __init__(self, dsn: str, data_dir: Path) -> None:
        self.dsn = dsn
        self.data_dir = Path(data_dir)
        self.db = PgDatabase(dsn)
        self._stores = Singletons()

    def database(self) -> PgDatabase:
        return self.db

    def accounts(self):
        from fhir_gateway.accounts import AccountStore
        return self._stores.get("accounts", lambda: AccountStore(self.data_dir, db=self.db))

    def tokens(self) -> PgTokenStore:
        return self._stores.get("tokens", lambda: PgTokenStore(self.dsn, self.db))

    def memos(self) -> PgMemoJournal:
        return self._stores.get("memos", lambda: PgMemoJournal(self.data_dir, self.db))

    def smart_clients(self) -> PgClientStore:
        return self._stores.get("smart_clients", lambda: PgClientStore(self.db))

    def smart_jti(self) -> PgJtiStore:
        return self._stores.get("smart_jti", lambda: PgJtiStore(self.db))

    def export_jobs(self) -> PgJobStore:
        return self._stores.get("export_jobs", lambda: PgJobStore(self.db))

    def health(self) -> dict:
        t0 = time.perf_counter()
        try:
            self.db.execute("SELECT 1").fetchone()
            return {"backend": self.backend, "status": "ok",
                    "ms": round((time.perf_counter() - t0) * 1000, 1)}
        except Exception as exc:
            return {"backend": self.backend, "status": "down", "reason": str(exc)[:200]}
