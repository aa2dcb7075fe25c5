"""Difference from the previous drill: files appeared, disappeared, changed, newly failing, fixed.

SS-MIX2 adds files and renames flags; it never rewrites a file in place, so a path whose size or
mtime changed between drills is listed as ``changed`` (fixity, reference §C.4 D-09).
"""

from __future__ import annotations

from typing import IO, Iterator

import orjson

from .worker import FAIL, SKIPPED

LIST_LIMIT = 1000  # paths listed per category; the counts are always complete


def iter_digests(spool: IO[bytes]) -> Iterator[list]:
    spool.seek(0)
    for line in spool:
        yield orjson.loads(line)


def diff(previous_facility: dict, spool: IO[bytes], new_counts: dict) -> dict:
    prev = {d[0]: d for d in previous_facility.get("digests", [])}
    out: dict[str, list[str]] = {k: [] for k in ("appeared", "disappeared", "changed",
                                                 "newly_failing", "fixed")}
    counts = dict.fromkeys(out, 0)

    def add(cat: str, path: str) -> None:
        counts[cat] += 1
        if len(out[cat]) < LIST_LIMIT:
            out[cat].append(path)

    for path, size, mtime, status in iter_digests(spool):
        old = prev.pop(path, None)
        if old is None:
            add("appeared", path)
            continue
        _, osize, omtime, ostatus = old
        if (osize, omtime) != (size, mtime):
            add("changed", path)
        if SKIPPED in (status, ostatus):
            continue
        if status == FAIL and ostatus != FAIL:
            add("newly_failing", path)
        elif ostatus == FAIL and status != FAIL:
            add("fixed", path)
    for path in sorted(prev):
        add("disappeared", path)
    return {"counts": counts, "paths": out,
            "data_types": count_changes(previous_facility.get("counts", {}), new_counts)}


def count_changes(old_counts: dict, new_counts: dict) -> dict:
    """Per data type: files then and now, flagging a drop of more than 20 % (D-05)."""
    out = {}
    for dtype in sorted(set(old_counts) | set(new_counts)):
        a = old_counts.get(dtype, {}).get("total", 0)
        b = new_counts.get(dtype, {}).get("total", 0)
        if a != b:
            out[dtype] = {"previous": a, "now": b, "drop": bool(a and b < 0.8 * a)}
    return out
