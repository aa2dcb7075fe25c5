"""Stateless paging: an opaque, HMAC-signed cursor holds the query and the offset.

No search state lives on the server, so a cursor survives restarts and works on every worker
process; the secret is created once in the data directory (``paging.key``, mode 0600).  A cursor
that was altered, truncated or signed by another installation is refused (400)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import orjson

KEY_FILE = "paging.key"


class BadCursor(ValueError):
    pass


def load_secret(data_dir: Path) -> bytes:
    """Read the paging secret, creating it atomically the first time (safe across workers)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    for _ in range(50):
        text = path.read_text().strip()
        if len(text) == 64:
            return bytes.fromhex(text)
        import time
        time.sleep(0.01)  # another process is writing it
    raise RuntimeError(f"{path} is not a paging key")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Pager:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self.secret, body, hashlib.sha256).digest()[:16]

    def encode(self, state: dict) -> str:
        body = orjson.dumps(state)
        return _b64(body) + "." + _b64(self._sign(body))

    def decode(self, token: str) -> dict:
        try:
            body_text, sig_text = token.split(".")
            body, sig = _unb64(body_text), _unb64(sig_text)
        except (ValueError, TypeError):
            raise BadCursor("the paging cursor is malformed") from None
        if not hmac.compare_digest(sig, self._sign(body)):
            raise BadCursor("the paging cursor was altered or belongs to another server")
        try:
            state = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadCursor("the paging cursor is malformed") from None
        if not isinstance(state, dict):
            raise BadCursor("the paging cursor is malformed")
        return state
