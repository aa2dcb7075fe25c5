"""SMART Health Links (HL7 "SMART Health Cards and Links" IG, STU1): the summary, encrypted,
for the patient to carry.

The server keeps only ciphertext: the 32-byte key travels inside the ``shlink:/`` payload (the
QR code) and is never stored.  A link is a random 43-character id; its row holds the passcode's
scrypt hash, the wrong-passcode budget (decremented atomically, shared by all workers), the
expiry and revocation.  File locations handed out by the manifest are signed and last one hour.

Layout in the data directory: ``shl/links.sqlite3`` and ``shl/files/<id>.jwe`` (both 0600)."""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from joserfc import jwe
from joserfc.jwk import OctKey

from ..randomids import random_id

PASSCODE_ATTEMPTS = 10
LOCATION_SECONDS = 3600
MAX_LABEL = 80
ID_BYTES = 32            # 256 bits of entropy in the manifest URL, as the IG asks

_SCHEMA = """
CREATE TABLE IF NOT EXISTS links (
    id TEXT PRIMARY KEY, facility TEXT NOT NULL, patient TEXT NOT NULL, label TEXT NOT NULL,
    passcode_hash TEXT, attempts_left INTEGER NOT NULL, expires REAL, revoked INTEGER NOT NULL
    DEFAULT 0, created REAL NOT NULL, created_by TEXT NOT NULL, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS access (
    link TEXT NOT NULL, at REAL NOT NULL, recipient TEXT NOT NULL, outcome TEXT NOT NULL);
"""


class ShlError(Exception):
    """A link request that must be refused; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str, remaining: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.remaining = remaining


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encrypt(payload: bytes, key: bytes) -> str:
    """Compact JWE, ``dir`` + ``A256GCM``, DEFLATE-compressed; a fresh nonce every call."""
    header = {"alg": "dir", "enc": "A256GCM", "cty": "application/fhir+json", "zip": "DEF"}
    return jwe.encrypt_compact(header, payload, OctKey.import_key(key))


def shlink(url: str, key: bytes, exp: float | None, passcode: bool, label: str) -> str:
    """The ``shlink:/…`` string: minified JSON payload, base64url."""
    payload: dict = {"url": url, "key": b64url(key), "v": 1}
    if exp:
        payload["exp"] = int(exp)
    if passcode:
        payload["flag"] = "P"
    if label:
        payload["label"] = label[:MAX_LABEL]
    return "shlink:/" + b64url(json.dumps(payload, separators=(",", ":"),
                                          ensure_ascii=False).encode("utf-8"))


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m`` → seconds (the CLI's --expires)."""
    units = {"d": 86400, "h": 3600, "m": 60}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise ValueError(f"expected a duration like 30d, 12h or 90m, got {text!r}")
    return int(text[:-1]) * units[text[-1]]


def _hash_passcode(passcode: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(passcode.encode("utf-8"), salt=salt, n=2**14, r=8, p=1)
    return f"{salt.hex()}${digest.hex()}"


def _check_passcode(passcode: str, stored: str) -> bool:
    salt_hex, _, digest_hex = stored.partition("$")
    return hmac.compare_digest(_hash_passcode(passcode, bytes.fromhex(salt_hex)),
                               f"{salt_hex}${digest_hex}")


@dataclass
class Link:
    id: str
    facility: str
    patient: str
    label: str
    has_passcode: bool
    attempts_left: int
    expires: float | None
    revoked: bool
    created: float
    created_by: str
    size: int

    @property
    def active(self) -> bool:
        return (not self.revoked and self.attempts_left > 0
                and (self.expires is None or self.expires > time.time()))


class LinkStore:
    """SMART Health Links kept in the data directory (one SQLite file, shared by all workers)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "shl"
        self.files = self.root / "files"
        self.files.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db_path = self.root / "links.sqlite3"
        with self._db() as db:
            db.executescript(_SCHEMA)
        os.chmod(self.db_path, 0o600)
        self._secret = self._load_secret()

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _load_secret(self) -> bytes:
        path = self.root / "location.key"
        try:
            return bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError):
            secret = os.urandom(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret.hex())
            return secret

    # -- creating and revoking ------------------------------------------------------------------
    def create(self, *, facility: str, patient: str, document: bytes, base_url: str,
               label: str = "", passcode: str | None = None, expires_in: float | None = None,
               created_by: str = "cli") -> tuple[Link, str]:
        """Encrypt ``document`` under a fresh key, store it, return the link and its shlink."""
        link_id = random_id(ID_BYTES)  # typed into `shl revoke`: never starts with "-"
        key = secrets.token_bytes(32)
        token = encrypt(document, key).encode("ascii")
        path = self.files / f"{link_id}.jwe"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(token)
            f.flush()
            os.fsync(f.fileno())
        now = time.time()
        expires = now + expires_in if expires_in else None
        label = (label or "")[:MAX_LABEL]
        with self._db() as db:
            db.execute("INSERT INTO links VALUES (?,?,?,?,?,?,?,0,?,?,?)",
                       (link_id, facility, patient, label,
                        _hash_passcode(passcode) if passcode else None, PASSCODE_ATTEMPTS,
                        expires, now, created_by, len(token)))
        link = self.get(link_id)
        assert link is not None
        url = f"{base_url.rstrip('/')}/shl/{link_id}"
        return link, shlink(url, key, expires, bool(passcode), label)

    def revoke(self, link_id: str) -> bool:
        with self._db() as db:
            n = db.execute("UPDATE links SET revoked=1 WHERE id=?", (link_id,)).rowcount
        try:
            (self.files / f"{link_id}.jwe").unlink()
        except OSError:
            pass
        return n > 0

    def get(self, link_id: str) -> Link | None:
        with self._db() as db:
            row = db.execute("SELECT id, facility, patient, label, passcode_hash IS NOT NULL, "
                             "attempts_left, expires, revoked, created, created_by, size "
                             "FROM links WHERE id=?", (link_id,)).fetchone()
        if row is None:
            return None
        return Link(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], bool(row[7]),
                    row[8], row[9], row[10])

    def list(self, facility: str | None = None) -> list[Link]:
        with self._db() as db:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM links WHERE ? IS NULL OR facility=? ORDER BY created",
                (facility, facility))]
        return [link for link in (self.get(i) for i in ids) if link]

    # -- serving -------------------------------------------------------------------------------
    def manifest_access(self, link_id: str, passcode: str | None, recipient: str) -> Link:
        """Check a manifest request; raises :class:`ShlError` (404 inactive, 401 wrong passcode
        with the attempts left).  Wrong passcodes are counted atomically across workers."""
        if not recipient:
            raise ShlError(400, "recipient is required")
        link = self.get(link_id)
        if link is None or not link.active:
            self._log(link_id, recipient, "inactive")
            raise ShlError(404, "no active link")
        if link.has_passcode:
            with self._db() as db:
                stored = db.execute("SELECT passcode_hash FROM links WHERE id=?",
                                    (link_id,)).fetchone()[0]
            if not passcode or not _check_passcode(passcode, stored):
                with self._db() as db:
                    db.execute("BEGIN IMMEDIATE")
                    db.execute("UPDATE links SET attempts_left = attempts_left - 1 "
                               "WHERE id=? AND attempts_left > 0", (link_id,))
                    left = db.execute("SELECT attempts_left FROM links WHERE id=?",
                                      (link_id,)).fetchone()[0]
                    db.execute("COMMIT")
                self._log(link_id, recipient, "wrong-passcode")
                if left <= 0:
                    raise ShlError(404, "no active link (too many wrong passcodes)")
                raise ShlError(401, "wrong passcode", remaining=left)
        self._log(link_id, recipient, "ok")
        return link

    def location_ticket(self, link_id: str, now: float | None = None) -> str:
        expires = int((now or time.time()) + LOCATION_SECONDS)
        mac = hmac.new(self._secret, f"{link_id}|{expires}".encode(), hashlib.sha256).digest()
        return f"{expires}.{b64url(mac)}"

    def file_for(self, link_id: str, ticket: str) -> bytes:
        """The stored JWE for a signed, unexpired location of an active link."""
        expires_text, _, mac = ticket.partition(".")
        if not expires_text.isdigit() or int(expires_text) < time.time():
            raise ShlError(404, "the file location has expired; request the manifest again")
        good = b64url(hmac.new(self._secret, f"{link_id}|{expires_text}".encode(),
                               hashlib.sha256).digest())
        if not hmac.compare_digest(good, mac):
            raise ShlError(404, "no such file")
        link = self.get(link_id)
        if link is None or not link.active:
            raise ShlError(404, "no active link")
        return (self.files / f"{link_id}.jwe").read_bytes()

    def embedded(self, link_id: str) -> bytes:
        return (self.files / f"{link_id}.jwe").read_bytes()

    def accesses(self, link_id: str) -> builtins.list[tuple[float, str, str]]:
        with self._db() as db:
            return list(db.execute("SELECT at, recipient, outcome FROM access WHERE link=? "
                                   "ORDER BY at", (link_id,)))

    def _log(self, link_id: str, recipient: str, outcome: str) -> None:
        with self._db() as db:
            db.execute("INSERT INTO access VALUES (?,?,?,?)",
                       (link_id[:64], time.time(), recipient[:200], outcome))


def qr_png(text: str) -> bytes:
    """The QR code of a shlink as PNG (error correction M, as the IG asks)."""
    import io

    import segno
    buf = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buf, kind="png", scale=4, border=4)
    return buf.getvalue()


def qr_svg(text: str) -> str:
    import io

    import segno
    buf = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buf, kind="svg", scale=4, border=4,
                                                  xmldecl=False, svgns=True)
    return buf.getvalue().decode("utf-8")
