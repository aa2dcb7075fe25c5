"""Cheap questions about a message file answered from its bytes, without decoding or parsing.

A segment starts the file or follows a segment terminator (CR, or LF/CRLF from some vendors).
Neither byte occurs inside the multi-byte text SS-MIX2 files carry (ISO-2022-JP two-byte
characters are 0x21-0x7E, Shift_JIS and UTF-8 trail bytes are 0x40 and above), so
a line beginning ``AL1`` (``CR`` or ``LF`` + ``AL1``) in the bytes is where the tokenizer sees
an AL1 segment, and a file without one has none.  When the bytes do
not look like a message at all (no ``MSH`` at the start), the answer is "maybe" (True): the
caller then parses the file as usual and nothing is skipped on a guess."""

from __future__ import annotations

import re
from collections.abc import Iterable


def may_hold_segments(data: bytes, names: Iterable[str]) -> bool:
    """Whether ``data`` (one message file) may hold a segment named one of ``names``."""
    if not data.startswith(b"MSH") or len(data) < 4:
        return True
    # the tokenizer (storage.hl7) names a segment by the first three characters of its line,
    # so any line that begins with the id counts, whatever follows
    pattern = rb"[\r\n](?:" + b"|".join(re.escape(n.encode("ascii")) for n in names) + rb")"
    return re.search(pattern, data) is not None


def file_may_hold_segments(path: str, names: Iterable[str]) -> bool:
    """:func:`may_hold_segments` of the file at ``path`` (unreadable: True, so the usual read
    reports it)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return True
    return may_hold_segments(data, names)
