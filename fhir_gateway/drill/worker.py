"""Per-patient checks, run in worker processes.  Each call returns a small, picklable summary:
problems, per-file digests and counters — never the messages themselves, so memory stays flat."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from storage.layout import Storage, StoredFile, group_records
from storage.names import NO_DATE
from storage.reader import (
    KIND_IO, KIND_MAPPING, KIND_MOJIBAKE, KIND_PATIENT, WARNING, patient_mismatch, read_file,
)
from storage.structure import check_message

from .chains import check_chain, claimed_by_rejects
from .kinds import problem
from .scan import patient_files

# Digest statuses (compact in the JSON report).
OK, WARN, FAIL, SKIPPED = "ok", "warning", "error", "unchecked"


@dataclass
class Options:
    root: str
    facility: str
    since: str | None = None  # YYYYMMDD: per-file checks only for newer files
    structure: bool = True
    mapping: bool = True


@dataclass
class ChunkResult:
    patients: int = 0
    files: int = 0
    bytes: int = 0
    checked: int = 0
    problems: list[dict] = field(default_factory=list)
    digests: list[tuple[str, int, int, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # (data type, YYYY-MM) -> files
    newest: dict[str, tuple[str, int]] = field(default_factory=dict)  # type -> (発生日時, mtime_ns)
    first: dict[str, str] = field(default_factory=dict)  # type -> oldest 発生日時
    days: dict[str, set[str]] = field(default_factory=dict)  # type -> days (YYYYMMDD) with files
    unmapped: set[str] = field(default_factory=set)
    # (data type, field) -> unmapped-content findings (audit mode); problems keep a few examples
    unmapped_content: Counter = field(default_factory=Counter)


def file_day(sf: StoredFile) -> str:
    """The date a file belongs to: its date folder, or its 発生日時 for '-' folders."""
    n = sf.name
    if n is None:
        return ""
    return n.date if n.date != NO_DATE else n.timestamp[:8]


_OPTS: Options | None = None
_STORAGE: Storage | None = None


def init(opts: Options) -> None:
    """Pool initializer: one Storage and the mapper registry per process."""
    global _OPTS, _STORAGE
    _OPTS, _STORAGE = opts, Storage(opts.root)
    if opts.mapping:
        import mappers  # noqa: F401 - registers every mapper


def check_chunk(patients: list[tuple[str, str]]) -> ChunkResult:
    assert _OPTS is not None and _STORAGE is not None, "init() first"
    out = ChunkResult()
    for pid, pdir in patients:
        _check_patient(_OPTS, _STORAGE, pid, pdir, out)
    return out


def _check_patient(opts: Options, storage: Storage, pid: str, pdir: str, out: ChunkResult) -> None:
    out.patients += 1
    root = Path(opts.root)
    files = list(patient_files(root, pid, pdir, out.problems))
    for sf in files:
        out.files += 1
        out.digests.append(_check_file(opts, storage, sf, out))
    claimed = claimed_by_rejects([f for f in files if not f.usable])
    for rec in group_records(files)[0].values():
        out.problems.extend(check_chain(rec, claimed))


def _check_file(opts: Options, storage: Storage, sf: StoredFile, out: ChunkResult) -> tuple:
    try:
        st = os.stat(storage.resolve(sf.relpath))
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError as exc:
        out.problems.append(problem(sf.relpath, KIND_IO, f"cannot stat the file: {exc.strerror or exc}"))
        return (sf.relpath, -1, -1, FAIL)
    out.bytes += size
    name = sf.name
    if name is not None:
        dtype = name.data_type
        day = file_day(sf)
        out.counts[(dtype, f"{day[:4]}-{day[4:6]}")] += 1
        ts = name.timestamp.ljust(17, "0")
        prev = out.newest.get(dtype)
        if prev is None or ts > prev[0]:
            out.newest[dtype] = (ts, mtime)
        if dtype not in out.first or ts < out.first[dtype]:
            out.first[dtype] = ts
        out.days.setdefault(dtype, set()).add(ts[:8])
        if opts.since and sf.usable and day < opts.since:
            return (sf.relpath, size, mtime, SKIPPED)
    out.checked += 1
    res = read_file(storage, sf)
    found = [p.as_dict() for p in res.problems]
    if res.message is not None and name is not None:
        found += [problem(sf.relpath, KIND_MOJIBAKE, s, WARNING) for s in _deep_mojibake(res)]
        if opts.structure:
            found += [problem(sf.relpath, k, r, WARNING) for k, r in check_message(res.message,
                                                                                    name.data_type)]
            other = patient_mismatch(res)
            if other:
                found.append(problem(sf.relpath, KIND_PATIENT, other, WARNING))
        if opts.mapping:
            found += _map(opts, res, sf, out)
    out.problems.extend(found)
    status = OK
    if any(p["severity"] != WARNING for p in found):
        status = FAIL
    elif found:
        status = WARN
    return (sf.relpath, size, mtime, status)


def _deep_mojibake(res) -> list[str]:
    """The statistical "implausible Japanese" signal, which the reader skips for speed."""
    import storage.text as text

    check = getattr(text, "implausible_japanese", None)
    if check is None or any(p.kind == KIND_MOJIBAKE for p in res.problems):
        return []
    return check(res.message.text)


EXAMPLES_PER_FIELD = 20  # unmapped-content problems listed per (data type, field) per chunk


def _map(opts: Options, res, sf: StoredFile, out: ChunkResult) -> list[dict]:
    """Map in audit mode: a mapper failure and every unread, unexplained component are findings."""
    from mappers import MAPPERS, MapContext
    from mappers.audit import KIND_UNMAPPED, audit_message

    from fhir_gateway.services.readmap import call_safely

    name = sf.name
    if name is None or res.message is None:  # only read files with a standard name are mapped
        return []
    dtype = name.data_type
    if dtype not in MAPPERS:
        out.unmapped.add(dtype)
        return []
    got, failed = call_safely(sf.relpath, audit_message, res.message,
                              MapContext(opts.facility, sf.relpath, name))
    if failed or got is None:  # any mapper failure is a finding, not a crash
        return [problem(sf.relpath, KIND_MAPPING, f"cannot be converted to FHIR: {p.reason}")
                for p in failed]
    resources, unmapped = got
    if not isinstance(resources, list):
        return [problem(sf.relpath, KIND_MAPPING, "the mapper returned no list of resources")]
    found = []
    for u in unmapped:
        key = (dtype, u.where)
        out.unmapped_content[key] += 1
        if out.unmapped_content[key] <= EXAMPLES_PER_FIELD:
            found.append(problem(sf.relpath, KIND_UNMAPPED, u.reason(), WARNING, field=u.where,
                                 segment=u.segment + 1, repetition=u.repetition,
                                 excerpt=u.excerpt))
    return found
