"""API bearer tokens: created once, stored only as salted SHA-256 hashes in the data directory.

A token looks like ``fgw_<id>_<secret>``: the id finds the stored entry without scanning, the
secret is compared in constant time against ``sha256(salt + secret)``.  Each token is bound to one
facility code or ``*``.  The file is re-read when it changes, so ``token revoke`` takes effect on
running workers.  A :class:`Principal` is what the API puts on ``flask.g``; SMART scopes and the
audit trail hang off it later."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from fhir_gateway.recordfile import RecordFile

TOKENS_FILE = "api-tokens.json"
AUDIT_SCOPE = "system/AuditEvent.read"  # not implied by system/*.read: see api/audit_events.py
_ID_BYTES = 6


@dataclass(frozen=True)
class Principal:
    name: str
    facility: str  # a facility code or "*"
    token_id: str | None = None
    scopes: tuple[str, ...] = ("system/*.read",)  # SMART-style; only reads exist today
    anonymous: bool = False

    def may_access(self, facility: str) -> bool:
        return self.facility in ("*", facility)


ANONYMOUS = Principal("anonymous", "*", anonymous=True)


@dataclass
class TokenInfo:
    id: str
    name: str
    facility: str
    salt: str
    hash: str
    created: str
    revoked: str | None = None
    extra: dict = field(default_factory=dict)


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


class TokenStoreError(RuntimeError):
    """The token file exists but cannot be read: the API refuses every token (fails closed)."""


class TokenStore:
    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir) / TOKENS_FILE
        self._file = RecordFile(self.path, TokenInfo, "token", TokenStoreError)
        # token -> Principal, valid for one loaded version of the file (revoking rewrites it)
        self._verified: tuple[dict, dict[str, Principal]] = ({}, {})

    # -- persistence ----------------------------------------------------------------------------
    def _load(self) -> dict[str, TokenInfo]:
        return self._file.load()

    def _save(self, tokens: dict[str, TokenInfo]) -> None:
        self._file.save(t.__dict__ for t in tokens.values())

    def validate(self) -> None:
        """Raise :class:`TokenStoreError` now (at start-up) rather than on the first request."""
        self._load()

    # -- operations -----------------------------------------------------------------------------
    def create(self, name: str, facility: str, audit: bool = False) -> str:
        """Create a token and return its clear text (shown once, never stored).

        ``audit``: the token may also read the facility's AuditEvents (hospital admins)."""
        with self._exclusive():
            return self._create(name, facility, audit)

    @contextlib.contextmanager
    def _exclusive(self):
        """One writer of the token file across processes: two ``token create`` at once used to
        read the same file and the second save dropped the first token."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT,
                         0o600)
        except OSError:  # a store that keeps its tokens elsewhere (PostgreSQL)
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._file.forget()  # re-read under the lock
            yield
        finally:
            os.close(fd)

    def _create(self, name: str, facility: str, audit: bool) -> str:
        tokens = dict(self._load())
        tid = secrets.token_hex(_ID_BYTES)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        tokens[tid] = TokenInfo(tid, name, facility, salt, _hash(salt, secret),
                                time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                extra={"audit": True} if audit else {})
        self._save(tokens)
        return f"fgw_{tid}_{secret}"

    def list(self) -> list[TokenInfo]:
        return sorted(self._load().values(), key=lambda t: t.created)

    def revoke(self, ident: str) -> bool:
        """Revoke by id or by name; True when something was revoked."""
        with self._exclusive():
            tokens = dict(self._load())
            hit = False
            for t in tokens.values():
                if (t.id == ident or t.name == ident) and not t.revoked:
                    t.revoked = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                    hit = True
            if hit:
                self._save(tokens)
            return hit

    def verify(self, token: str) -> Principal | None:
        """The token's principal, or None.  The file is checked (one ``stat``) on every call;
        a token verified against the same loaded file is not hashed again."""
        tokens = self._load()
        loaded, verified = self._verified
        if loaded is tokens:
            hit = verified.get(token)
            if hit is not None:
                return hit
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "fgw":
            return None
        info = tokens.get(parts[1])
        if info is None or info.revoked:
            return None
        if not hmac.compare_digest(info.hash, _hash(info.salt, parts[2])):
            return None
        scopes = ("system/*.read", AUDIT_SCOPE) if (info.extra or {}).get("audit") else \
            ("system/*.read",)
        principal = Principal(info.name, info.facility, info.id, scopes)
        if loaded is not tokens:
            verified = {}
            self._verified = (tokens, verified)
        if len(verified) < 256:
            verified[token] = principal
        return principal
