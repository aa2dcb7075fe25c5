"""ISO-2022-JP bytes of synthetic messages, fast: segment by segment and run by run with caches
(a module of its own so the timeline and the writer both use it without importing each other)."""

from __future__ import annotations

import re
from functools import lru_cache

from storage.encoding import encode_iso2022jp

_NON_ASCII = re.compile(r"([^\x00-\x7f]+)")


@lru_cache(maxsize=100_000)
def _encode_run(run: str) -> bytes:
    return encode_iso2022jp(run)


def _encode_segment(segment: str) -> bytes:
    if segment.isascii():
        return segment.encode("ascii")
    parts = _NON_ASCII.split(segment)  # even items ASCII, odd items non-ASCII runs
    return b"".join(_encode_run(p) if i % 2 else p.encode("ascii") for i, p in enumerate(parts))


def encode_text(text: str) -> bytes:
    """``encode_iso2022jp(text)``, computed segment by segment and run by run with caches.

    The bytes are identical: the encoder returns to ASCII before every CR and every ASCII
    character, so each non-ASCII run is bracketed by ESC $ B ... ESC ( B either way (tested).
    """
    return b"\r".join([_encode_segment(s) for s in text.split("\r")])


def encode_message(text: str) -> bytes:
    """Bytes of one stored message: ISO-2022-JP, CR after the last segment, then 0x1C."""
    return encode_text(text) + b"\r\x1c"
