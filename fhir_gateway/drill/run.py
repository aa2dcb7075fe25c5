"""Run a drill for one or more facilities and assemble the report.

The tree walk happens in the main process (cheap: directory listings of levels 1-3); patients are
sent in chunks to a process pool, whose results are merged as they arrive.  Per-file digests are
spooled to a temporary file, so memory holds only counters and the problem list.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

import orjson

from fhir_gateway import __version__
from fhir_gateway.config import Facility
from storage.reader import ERROR, KIND_IO, WARNING

from . import kinds
from .scan import walk_patients
from .worker import ChunkResult, Options, check_chunk, init

CHUNK = 64  # patients per task: large enough to amortise pickling, small enough to balance


@dataclass
class CheckOptions:
    workers: int = 0  # 0 = all cores
    since: str | None = None
    stale_days: int = 14
    structure: bool = True
    mapping: bool = True
    previous: dict | None = None
    cache_dir: Path | None = None
    progress: bool = False
    # executor(worker Options, chunks) -> ChunkResults in any order (e.g. a Dask cluster,
    # fhir_gateway.scale.dask_drill); None = local processes
    executor: Callable[[Options, Iterator[list]], Iterable[ChunkResult]] | None = None


@dataclass
class FacilityRun:
    """Everything the report needs about one facility; digests live in ``spool``."""

    facility: Facility
    report: dict = field(default_factory=dict)
    spool: IO[bytes] | None = None


def _chunks(it: Iterator, size: int) -> Iterator[list]:
    buf: list = []
    for x in it:
        buf.append(x)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def _progress(enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(unit=" patients", file=sys.stderr, leave=False, dynamic_ncols=True)


def check_storage(fac: Facility, opts: CheckOptions) -> FacilityRun:
    """Per-file, per-record and per-type checks of the facility's primary storage root."""
    root = fac.storage[0]
    spool = tempfile.TemporaryFile()
    run = FacilityRun(fac, spool=spool)
    started = time.monotonic()
    scan_problems: list[dict] = []
    wopts = Options(str(root), fac.code, opts.since, opts.structure, opts.mapping)
    total = ChunkResult()
    patient_ids: set[str] = set()

    def patients() -> Iterator[tuple[str, str]]:
        for pid, pdir in walk_patients(root, scan_problems):
            patient_ids.add(pid)
            yield pid, pdir

    bar = _progress(opts.progress)
    workers = opts.workers or os.cpu_count() or 1
    if opts.executor is not None:
        _merge_all(opts.executor(wopts, _chunks(patients(), CHUNK)), total, spool, bar)
    elif workers == 1:
        init(wopts)
        results: Iterator[ChunkResult] = map(check_chunk, _chunks(patients(), CHUNK))
        _merge_all(results, total, spool, bar)
    else:
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
        with ctx.Pool(workers, initializer=init, initargs=(wopts,)) as pool:
            results = pool.imap_unordered(check_chunk, _chunks(patients(), CHUNK))
            _merge_all(results, total, spool, bar)
    if bar is not None:
        bar.close()
    problems = scan_problems + total.problems
    if not total.patients and not problems:  # an unmounted mount point is an empty folder
        problems.append(kinds.problem("", KIND_IO, f"storage root {root} holds no patient folders: "
                                      "nothing could be checked (is the backup mounted?)"))
    freshness, stale = _freshness(total, opts.stale_days)
    problems += stale
    problems.sort(key=lambda p: (p["kind"], p["path"]))
    run.report = {
        "code": fac.code,
        "name": fac.name,
        "storage": [str(p) for p in fac.storage],
        "checked_root": str(root),
        "patients": total.patients,
        "files": total.files,
        "files_checked": total.checked,
        "bytes": total.bytes,
        "since": opts.since,
        "seconds": round(time.monotonic() - started, 2),
        "counts": _counts(total.counts),
        "freshness": freshness,
        "unmapped_data_types": sorted(total.unmapped),
        "unmapped_content": _unmapped_content(total.unmapped_content),
        "problems": problems,
    }
    run.report["_patient_ids"] = patient_ids  # removed before output; receipts need it
    return run


def _merge_all(results, total: ChunkResult, spool: IO[bytes], bar) -> None:
    for r in results:
        total.patients += r.patients
        total.files += r.files
        total.bytes += r.bytes
        total.checked += r.checked
        total.problems.extend(r.problems)
        total.counts.update(r.counts)
        total.unmapped |= r.unmapped
        total.unmapped_content.update(r.unmapped_content)
        for t, v in r.newest.items():
            if t not in total.newest or v[0] > total.newest[t][0]:
                total.newest[t] = v
        for t, v in r.first.items():
            if t not in total.first or v < total.first[t]:
                total.first[t] = v
        for t, v in r.days.items():
            total.days.setdefault(t, set()).update(v)
        for d in r.digests:
            spool.write(orjson.dumps(list(d)) + b"\n")
        if bar is not None:
            bar.update(r.patients)


def _unmapped_content(counter: Counter) -> dict[str, dict[str, int]]:
    """Audit findings per data type and field: {"OMP-01": {"RXR-11": 3}} (every finding
    counted; the problem list keeps a few examples per field and chunk)."""
    out: dict[str, dict[str, int]] = {}
    for (dtype, where), n in sorted(counter.items()):
        out.setdefault(dtype, {})[where] = n
    return out


def _counts(counter: Counter) -> dict:
    out: dict[str, dict] = {}
    for (dtype, month), n in sorted(counter.items()):
        entry = out.setdefault(dtype, {"total": 0, "months": {}})
        entry["total"] += n
        entry["months"][month] = n
    return out


def _ts_datetime(ts: str) -> datetime | None:
    try:
        return datetime.strptime(ts[:14].ljust(14, "0"), "%Y%m%d%H%M%S")
    except ValueError:
        return None


def usual_gap_days(days: set[str]) -> float | None:
    """The gap between arrival days that a random day of the type's history falls into
    (gaps weighted by their length: sum(g^2) / sum(g)).

    A plain mean interval calls bursty types stale: inpatient-only data arrives daily during a
    stay and then not for months, so "one every 39 days" on average, yet a 600-day quiet spell is
    its normal rhythm.  Weighted by length, the long quiet spells dominate for such a type, while a
    type that arrives every day or week keeps a usual gap of a day or a week."""
    ordinals = sorted(d.toordinal() for d in (_day(x) for x in days) if d is not None)
    gaps = [b - a for a, b in zip(ordinals, ordinals[1:])]
    total = sum(gaps)
    return sum(g * g for g in gaps) / total if total else None


def _day(text: str):
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def _freshness(total: ChunkResult, stale_days: int) -> tuple[list[dict], list[dict]]:
    """Newest file per data type, its age against the newest file overall, and stale warnings.

    A type is stale when its newest file is more than ``stale_days`` older than the newest file
    of any type *and* the gap is over four times the type's own usual gap between arrival days
    (:func:`usual_gap_days`) — a type that normally arrives twice a year, or in bursts during
    inpatient stays, is not stale after a month.  Only types with 10 or more files spread over at
    least ``stale_days`` and over at least a quarter of the silence being judged are judged: a
    one-off batch, or a type seen for four months seven years ago, has no rhythm to break.
    """
    newest_all = max((v[0] for v in total.newest.values()), default="")
    ref = _ts_datetime(newest_all)
    rows, problems = [], []
    for dtype, (ts, mtime) in sorted(total.newest.items()):
        when = _ts_datetime(ts)
        first = _ts_datetime(total.first.get(dtype, ts))
        n = sum(c for (t, _), c in total.counts.items() if t == dtype)
        age = (ref - when).total_seconds() / 86400 if ref and when else None
        interval = ((when - first).total_seconds() / 86400 / (n - 1)) if when and first and n > 1 else None
        usual = usual_gap_days(total.days.get(dtype, set()))
        row = {"data_type": dtype, "name_ja": _name_ja(dtype), "newest": ts[:14], "files": n,
               "age_days": round(age, 1) if age is not None else None,
               "mean_interval_days": round(interval, 2) if interval is not None else None,
               "usual_gap_days": round(usual, 2) if usual is not None else None,
               "newest_mtime": datetime.fromtimestamp(mtime / 1e9).isoformat(timespec="seconds")}
        span = (when - first).total_seconds() / 86400 if when and first else 0.0
        stale = (age is not None and age > stale_days and n >= 10 and usual is not None
                 and span >= max(stale_days, age / 4) and age > 4 * usual)
        row["stale"] = stale
        rows.append(row)
        if stale:
            problems.append(kinds.problem(dtype, kinds.KIND_STALE,
                                          f"newest {dtype} file is {age:.0f} days older than the newest "
                                          f"file in the storage (it usually arrives every "
                                          f"{usual:.1f} days)", WARNING, data_type=dtype))
    return rows, problems


def _name_ja(dtype: str) -> str:
    from storage.names import DATA_TYPES

    dt = DATA_TYPES.get(dtype)
    return dt.name_ja if dt else ""


def summarize(problems: list[dict]) -> dict:
    by_kind = Counter(p["kind"] for p in problems)
    by_sev = Counter(p["severity"] for p in problems)
    return {"errors": by_sev.get(ERROR, 0), "warnings": by_sev.get(WARNING, 0),
            "by_kind": dict(sorted(by_kind.items()))}


def header() -> dict:
    return {"tool": "fhir-gateway check", "version": __version__,
            "generated": datetime.now().astimezone().isoformat(timespec="seconds"),
            "host": socket.gethostname()}
