"""Real-world defects injected into generated files, each recorded in a manifest.

Kinds are the ``storage.reader`` problem kinds that the reader must report for them, so a test
can assert ``read_file(...)`` finds exactly the injected kind at the manifest path.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.names import FileName
from storage.reader import (
    KIND_BINARY, KIND_EMPTY, KIND_ENCODING, KIND_LINE_ENDINGS, KIND_MISPLACED, KIND_NAME,
    KIND_NONSTANDARD, KIND_TRUNCATED,
)

KINDS = (KIND_ENCODING, KIND_NONSTANDARD, KIND_LINE_ENDINGS, KIND_TRUNCATED, KIND_EMPTY,
         KIND_MISPLACED, KIND_NAME, KIND_BINARY)

_FULLWIDTH_TO_CIRCLED = str.maketrans("１２３４５６７８９", "①②③④⑤⑥⑦⑧⑨")
ESC_KANJI = b"\x1b$B"


@dataclass
class Planned:
    """A file about to be written: folders, name, message text and its normative bytes."""

    folders: tuple[str, ...]  # (l1, l2, pid, date, data type)
    name: FileName
    text: str
    data: bytes

    @property
    def relpath(self) -> str:
        return "/".join(self.folders + (self.name.name,))


def inject(rng: random.Random, files: list[Planned], rate: float, encode) -> list[dict]:
    """Mutate ``files`` in place; return manifest entries ``{path, defect, detail}``."""
    manifest: list[dict] = []
    if rate <= 0:
        return manifest
    for f in files:
        if rng.random() >= rate:
            continue
        kind = rng.choice(KINDS)
        detail = _apply(rng, f, kind, encode)
        if detail is None:
            continue
        manifest.append({"path": f.relpath, "defect": kind, "detail": detail})
    return manifest


def _apply(rng: random.Random, f: Planned, kind: str, encode) -> str | None:
    if kind == KIND_ENCODING:
        f.data = f.text.encode("cp932", errors="replace") + b"\r\x1c"
        return "Shift_JIS (CP932) bytes while MSH-18 declares ~ISO IR87"
    if kind == KIND_NONSTANDARD:
        changed = f.text.translate(_FULLWIDTH_TO_CIRCLED)
        if changed == f.text:
            return None
        f.data = encode(changed)
        return "full-width digits written as circled digits (NEC row 13, CP50220 style)"
    if kind == KIND_LINE_ENDINGS:
        sep = rng.choice(("\n", "\r\n"))
        f.data = encode(f.text).replace(b"\r", sep.encode("ascii"))
        return "segments separated by " + ("LF" if sep == "\n" else "CRLF")
    if kind == KIND_TRUNCATED:
        return _truncate(rng, f)
    if kind == KIND_EMPTY:
        f.data = b""
        return "zero-byte file"
    if kind == KIND_BINARY:
        at = rng.randrange(20, max(21, len(f.data) - 20))
        f.data = f.data[:at] + b"\x00" * 16 + f.data[at + 16:]
        return f"16 NUL bytes at offset {at} (a zeroed disk block)"
    if kind == KIND_MISPLACED:
        return _misplace(rng, f)
    if kind == KIND_NAME:
        return _rename(rng, f)
    return None


def _truncate(rng: random.Random, f: Planned) -> str | None:
    """Cut inside a Japanese run, so the bytes end in JIS X 0208 mode without CR or 0x1C."""
    data = f.data
    starts = []
    i = data.find(ESC_KANJI)
    while i >= 0:
        end = data.find(b"\x1b(", i + 3)
        if end - (i + 3) >= 4:  # at least two characters in the run
            starts.append((i + 3, end))
        i = data.find(ESC_KANJI, i + 3)
    if not starts:
        return None
    late = [s for s in starts if s[0] > len(data) // 3] or starts
    a, b = rng.choice(late)
    cut = a + 2 * rng.randrange(1, (b - a) // 2)
    f.data = data[:cut]
    return f"cut at byte {cut} of {len(data)}, inside Japanese text"


def _misplace(rng: random.Random, f: Planned) -> str:
    n = f.name
    if n.date != "-" and rng.random() < 0.5:
        moved = (datetime.strptime(n.date, "%Y%m%d") + timedelta(days=1)).strftime("%Y%m%d")
        f.folders = f.folders[:3] + (moved,) + f.folders[4:]
        return f"file of {n.date} stored in date folder {moved}"
    other = f"{(int(n.patient_id) + 1) % 10**len(n.patient_id):0{len(n.patient_id)}d}"
    f.name = FileName(other, n.date, n.data_type, n.order_no, n.timestamp, n.department, n.flag)
    return f"file name says patient {other}, folder is patient {n.patient_id}"


def _rename(rng: random.Random, f: Planned) -> str:
    n = f.name
    variant = rng.randrange(3)
    if variant == 0:
        bad = n.name + ".hl7"
        detail = "extension .hl7 appended"
    elif variant == 1:
        bad = "_".join((n.patient_id, n.date, n.data_type, n.order_no, n.timestamp, n.flag))
        detail = "department part missing (6 parts)"
    else:
        bad = "_".join((n.patient_id, n.date, n.data_type, n.order_no, n.timestamp[:8] + "T" +
                        n.timestamp[8:14], n.department, n.flag))
        detail = "timestamp written as ISO basic format with 'T'"
    f.name = _Raw(bad)  # type: ignore[assignment]
    return detail


class _Raw:
    """A deliberately broken file name (FileName cannot represent it)."""

    def __init__(self, name: str) -> None:
        self.name = name
