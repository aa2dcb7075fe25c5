"""Keyed hash chains for the audit trail and the memo journal (issue 13 M1).

Each entry carries ``mac = HMAC-SHA256(key, prev_mac + "\\n" + canonical entry)``.  A plain hash
chain can be recomputed by whoever can edit the file; an HMAC chain cannot without the key, which
lives in ``{data_dir}/integrity.key`` (mode 0600, created on first use).  A dropped tail is caught
by a keyed *head* record (count + last mac) kept beside the chain, and by anchors: ``fhir-gateway
audit anchor`` prints the head so an operator can keep it elsewhere (paper, another host); a later
``verify --anchor`` proves that the anchored entry is still there, unchanged — even against
someone who also stole the key and recomputed the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

KEY_FILE = "integrity.key"


def load_key(data_dir: str | os.PathLike[str]) -> bytes:
    """The data directory's chain key, created once (0600) by whichever process comes first."""
    path = Path(data_dir) / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        if len(key) < 32:
            raise ValueError(f"{path} does not hold a 256-bit key") from None
        return key
    key = secrets.token_bytes(32)
    try:
        os.write(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def mac(key: bytes, prev: str, payload: str) -> str:
    return hmac.new(key, f"{prev}\n{payload}".encode("utf-8"), hashlib.sha256).hexdigest()


def head_mac(key: bytes, name: str, count: int, last: str) -> str:
    """The keyed head of a chain: who cannot sign cannot shorten the chain unnoticed."""
    return hmac.new(key, f"head\n{name}\n{count}\n{last}".encode("utf-8"),
                    hashlib.sha256).hexdigest()


def canonical(entry: dict) -> str:
    return json.dumps(entry, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Anchor:
    """What an operator copies elsewhere: ``<chain> <count> <mac of entry #count>``."""
    chain: str
    count: int
    last: str

    def text(self) -> str:
        return f"{self.chain} {self.count} {self.last}"

    @classmethod
    def parse(cls, text: str) -> "Anchor":
        parts = text.split()
        if len(parts) != 3 or not parts[1].isdigit():
            raise ValueError(f"not an anchor: {text.strip()[:80]!r} (expected: CHAIN COUNT MAC)")
        return cls(parts[0], int(parts[1]), parts[2])


@dataclass
class Report:
    """The result of verifying one chain: ``ok`` or the first bad entry (1-based) and why."""
    chain: str
    count: int
    ok: bool = True
    first_bad: int | None = None
    reason: str = ""
    bad: tuple[int, ...] = ()

    def line(self) -> str:
        if self.ok:
            return f"{self.chain}: OK, {self.count} entries"
        return f"{self.chain}: BROKEN at entry {self.first_bad}: {self.reason}"


def check_anchor(report: Report, anchor: Anchor, macs: list[str]) -> None:
    """Fold an anchor into ``report``: the anchored entry must still exist with the same mac."""
    if not report.ok:
        return
    if anchor.count > len(macs):
        report.ok, report.first_bad = False, len(macs) + 1
        report.reason = (f"the anchor says {anchor.count} entries, only {len(macs)} remain "
                         "(entries were dropped)")
    elif anchor.count and not hmac.compare_digest(macs[anchor.count - 1], anchor.last):
        report.ok, report.first_bad = False, anchor.count
        report.reason = "entry differs from the anchor (the chain was rewritten)"
