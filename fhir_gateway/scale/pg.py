"""PostgreSQL connections for the gateway: one autocommit connection per thread, reopened after
the server dropped it (a failover or restart of the database costs one failed request, not the
process)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


def _psycopg():
    try:
        import psycopg
    except ImportError as exc:  # the embedded default must not need it
        raise RuntimeError("the PostgreSQL backends need psycopg 3: "
                           "pip install 'fhir-gateway[scale]'") from exc
    return psycopg


def lock_key(text: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name (same on every machine)."""
    import hashlib
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


class Connections:
    """Thread-local connections to one DSN."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._local = threading.local()
        self.psycopg = _psycopg()

    def get(self):
        c = getattr(self._local, "conn", None)
        if c is None or c.closed or c.broken:
            from psycopg.rows import dict_row
            c = self.psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row,
                                     connect_timeout=10)
            self._local.conn = c
        return c

    def fresh(self, **kw):
        """A dedicated connection (writers holding advisory locks)."""
        return self.psycopg.connect(self.dsn, connect_timeout=10, **kw)

    def execute(self, sql: str, params=None):
        """Run on this thread's connection; one retry when the connection had died."""
        try:
            return self.get().execute(sql, params)
        except self.psycopg.OperationalError:
            c = getattr(self._local, "conn", None)
            if c is not None and (c.closed or c.broken):
                self._local.conn = None
                return self.get().execute(sql, params)
            raise

    @contextmanager
    def transaction(self) -> Iterator[object]:
        """This thread's connection inside a transaction (nested calls make savepoints)."""
        conn = self.get()
        with conn.transaction():
            yield conn

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None
