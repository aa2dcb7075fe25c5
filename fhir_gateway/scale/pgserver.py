"""A throw-away PostgreSQL server in a temporary directory (tests, benchmarks, local trials).

Why here and not only in tests/: the benchmarks and ``make``-less trials need the same thing.
It uses the Debian binaries (``/usr/lib/postgresql/<ver>/bin``).  ``initdb`` refuses to run as
root, so under root the cluster is created and run as the unprivileged ``postgres`` account
(created by the Debian package) through ``runuser``.  Authentication is ``trust`` on loopback
and a private unix socket only: never use this for real data.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class Unavailable(RuntimeError):
    """PostgreSQL cannot be started here (binaries missing, no unprivileged user); the reason."""


def find_bindir() -> Path | None:
    env = os.environ.get("PG_BINDIR")
    cands = [env] if env else []
    cands += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in cands:
        if c and Path(c, "initdb").exists() and Path(c, "pg_ctl").exists():
            return Path(c)
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """``start()`` → a DSN; ``stop()`` removes everything."""

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise Unavailable("PostgreSQL binaries (initdb, pg_ctl) not found; install the "
                              "Debian package postgresql (scripts/system-deps.sh does)")
        self.bindir: Path = found
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no 'postgres' user to run "
                                  "initdb as") from None
            self.user = "postgres"
        self.base = Path(tempfile.mkdtemp(prefix="fgw-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.port = _free_port()
        self.dsn = ""

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        if self.user:
            args = ["runuser", "-u", self.user, "--", *args]
        return subprocess.run(args, capture_output=True, text=True, **kw)

    def start(self, timeout: float = 60) -> str:
        self.sock.mkdir()
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chmod(self.base, 0o755)
            for p in (self.base, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        r = self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                       "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        if r.returncode:
            raise Unavailable(f"initdb failed: {r.stderr.strip()[-400:]}")
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200 -c shared_buffers=128MB")
        r = self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                       "-l", str(self.base / "log"), "-w", "-t", str(int(timeout)), "start"])
        if r.returncode:
            log = (self.base / "log").read_text(errors="replace")[-600:] \
                if (self.base / "log").exists() else ""
            raise Unavailable(f"pg_ctl start failed: {r.stderr.strip()[-300:]} {log}")
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + timeout
        import psycopg
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return self.dsn

    def create_database(self, name: str) -> str:
        """A fresh database on this server; its DSN."""
        import psycopg
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.dsn.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        if self.data.exists():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                       "-w", "stop"])
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "PgServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
