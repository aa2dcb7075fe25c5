"""Where UKE files are: every file below a receipts folder whose first record is a UKE header,
whatever its name.  The one place that walks receipts folders (the drill, the service layer and
the receipt index all list files through here)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path


def list_files(root: str | os.PathLike[str]) -> Iterator[tuple[Path, str, os.stat_result]]:
    """(path, root-relative posix path, stat) of every non-hidden file below ``root``, sorted,
    without opening any (a request can afford a walk, not a read per file)."""
    base = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        prefix = os.path.relpath(dirpath, base).replace(os.sep, "/")
        prefix = "" if prefix == "." else prefix + "/"
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            full = os.path.join(dirpath, fn)
            try:
                st = os.stat(full)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield Path(full), prefix + fn, st


def sniff_uke(path: str | os.PathLike[str]) -> bool:
    """True when a file's first record is a UKE header (IR, UK or YK), whatever its name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n \t")
    return head[:3] in (b"IR,", b"UK,", b"YK,")


def iter_uke_files(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Every UKE file below a receipts folder (any name: .UKE, .csv, none), in sorted order."""
    if not Path(root).is_dir():
        return
    for p, _, _ in list_files(root):
        if sniff_uke(p):
            yield p
