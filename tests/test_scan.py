"""storage.scan answers "may this file hold an AL1/IAM segment?" from bytes, and never says no
where the tokenizer would find one (a skipped file would lose an allergy from $everything)."""

from __future__ import annotations

import pytest

from storage.hl7 import parse
from storage.scan import may_hold_segments

NAMES = ("AL1", "IAM")
HEAD = "MSH|^~\\&|HIS|A|GW|B|20240101||OMP^O09^OMP_O09|1|P|2.5"


@pytest.mark.parametrize("body,term", [
    ("PID|1\rAL1|1|DA|^ペニシリン", "\r"),
    ("PID|1\rAL1", "\r"),            # a segment without fields
    ("PID|1\nAL1|1", "\n"),          # LF terminators
    ("PID|1\r\nIAM|1|DA", "\r\n"),   # CRLF
    ("PID|1\rAL1X|1", "\r"),         # the tokenizer names a line by its first three characters
    ("PID|1|AL1|x\rORC|NW", "\r"),   # not a segment: no
    ("PID|1\rORC|NW\rRXE|1", "\r"),
])
def test_the_scan_agrees_with_the_tokenizer(body: str, term: str) -> None:
    text = HEAD + term + body.replace("\r", term) if term != "\r" else HEAD + "\r" + body
    has = any(parse(text).segments(n) for n in NAMES)
    got = may_hold_segments(text.encode("iso2022_jp"), NAMES)
    assert got == has or (got and not has)  # never "no" where there is one
    assert got == has  # and, for these, exact


@pytest.mark.parametrize("data", [b"\x0bMSH|^~\\&|x\rPID|1\x1c\r", b"\xef\xbb\xbfMSH|x\rPID",
                                  "MSH|x\rPID".encode("utf-16"), b""])
def test_bytes_that_do_not_start_with_msh_are_maybe(data: bytes) -> None:
    assert may_hold_segments(data, NAMES)
