"""Characters XML 1.0 forbids: refused from user input, replaced (and counted) from storage.

lxml refuses a document holding e.g. ``\\x01``, so one such character in a stored person name used
to make that patient's XML a permanent 500 (issue 13 M4).  User input (memos, login names, switch
reasons) is checked with :func:`forbidden` and refused; data read from storage is written with
:func:`replace`, which puts U+FFFD in place of each bad character and says how many it replaced.
Allowed: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
"""

from __future__ import annotations

import re

_BAD = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
REPLACEMENT = "\ufffd"


def forbidden(text: str) -> list[int]:
    """Positions (0-based) of the characters XML 1.0 forbids in ``text``."""
    return [m.start() for m in _BAD.finditer(text)]


def replace(text: str) -> tuple[str, int]:
    """``text`` with every forbidden character replaced by U+FFFD, and how many were replaced."""
    return _BAD.subn(REPLACEMENT, text)


def strip(text: str) -> str:
    """``text`` without the forbidden characters (short single-line fields such as a name)."""
    return _BAD.sub("", text)


def describe(text: str) -> str:
    """A plain reason naming the first forbidden character, for refusing user input."""
    pos = forbidden(text)
    if not pos:
        return ""
    ch = text[pos[0]]
    return (f"使用できない制御文字 U+{ord(ch):04X} が {pos[0] + 1} 文字目にあります "
            f"(character U+{ord(ch):04X} at position {pos[0] + 1} is not allowed)")
