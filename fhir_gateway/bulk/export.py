"""Running one Bulk Data export: patients' compartments -> one ndjson file per type (split at a
size limit) + OperationOutcome lines for whatever could not be read.

Mapping is CPU-bound, so the patients are cut into chunks and mapped in worker *processes*
(``processes`` > 1; each with its own small mapped-file cache, since an export reads every file
once): a chunk comes back as ndjson bytes per type and is appended by the job's thread, with a
bounded number of chunks in flight so memory stays flat whatever the export size.  Resources of
plug-in sources (viewer memos) are added by the job's own process, where those plug-ins live."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import gc
import logging
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any, BinaryIO, Callable

import orjson

from conformance import Criterion, QueryError, registry
from fhir_gateway.services import match
from mappers.serialize import dumps, ndjson_line
from storage.names import is_valid_patient_id
from storage.reader import ERROR, Problem

log = logging.getLogger(__name__)
# Patients per task sent to a mapping process.  A chunk costs ~20 ms besides its patients (a
# header read per UKE file its receipts are in, 21 part files written, appended, deleted), so
# chunks are large, except over the last eighth of the patients, where small ones let every
# process finish at about the same time.
CHUNK = 32
CHILD_CACHE_BYTES = 8 << 20  # the chunk path reads every file once: it keeps no mapped files
# Chunks in flight per mapping process.  Results are taken in chunk order (the output files are
# in patient order), so with few in flight one slow chunk (a 20,000-resource chart) at the head
# left the other process idle once the chunks behind it were done; a result is only the paths
# of its part files, so more in flight costs no memory.
AHEAD = 8
# A mapping process allocates and frees millions of small dicts.  At CPython's default gen-0
# threshold (700 more container allocations than frees) the cyclic collector ran every few
# resources: 10 % of an export's CPU (gc.callbacks over 300 patients: 0.90 of 9.05 CPU-s, 0.05
# at these thresholds).  Mapping makes no lasting cycles, so collect rarely; memory stays bounded
# by a file (tests/test_bulk_memory.py).
CHILD_GC_THRESHOLDS = (10_000, 10, 10)


class ExportCancelled(Exception):
    pass


class SpecError(ValueError):
    """A kick-off parameter that cannot be honoured (400)."""


@dataclass
class Spec:
    """The parsed kick-off parameters (re-parsed from the job's raw params in every process)."""

    types: frozenset[str] | None = None
    since: float | None = None
    until: float | None = None
    filters: dict[str, list[list[Criterion]]] = field(default_factory=dict)
    elements: dict[str, list[str]] = field(default_factory=dict)  # "*" = every type

    @classmethod
    def parse(cls, params: dict[str, list[str]]) -> "Spec":
        s = cls()
        types = [t.strip() for v in params.get("_type", []) for t in v.split(",") if t.strip()]
        if types:
            unknown = sorted({t for t in types if registry().get(t) is None})
            if unknown:
                raise SpecError(f"_type: this server does not serve {', '.join(unknown)}")
            s.types = frozenset(types)
        for key in ("_since", "_until"):
            vals = params.get(key, [])
            if len(vals) > 1:
                raise SpecError(f"{key} may be given once")
            if vals:
                r = match.date_range(vals[0])
                if r is None:
                    raise SpecError(f"{key} must be a FHIR instant, e.g. 2024-01-01T00:00:00Z")
                if key == "_since":
                    s.since = r[0]
                else:
                    s.until = r[1]
        for v in params.get("_typeFilter", []):
            for one in _split_filters(v):
                rtype, _, query = one.partition("?")
                rdef = registry().get(rtype)
                if rdef is None or not query:
                    raise SpecError(f"_typeFilter {one!r}: expected Type?param=value")
                if s.types is not None and rtype not in s.types:
                    raise SpecError(f"_typeFilter {one!r} names a type not in _type")
                from urllib.parse import parse_qsl
                items = parse_qsl(query, keep_blank_values=True)
                try:
                    q = registry().parse(rtype, items)
                except QueryError as exc:
                    raise SpecError(f"_typeFilter {one!r}: {exc}") from None
                if not q.criteria or len(q.criteria) != len(items):
                    raise SpecError(f"_typeFilter {one!r}: only search parameters are allowed")
                s.filters.setdefault(rtype, []).append(q.criteria)
        for v in params.get("_elements", []):
            for e in (x.strip() for x in v.split(",")):
                if not e:
                    continue
                rtype, _, name = e.rpartition(".")
                if not name.isidentifier() or (rtype and registry().get(rtype) is None):
                    raise SpecError(f"_elements {e!r}: expected element or Type.element")
                s.elements.setdefault(rtype or "*", []).append(name)
        return s

    @property
    def keeps_all(self) -> bool:
        """No _type, _since, _until or _typeFilter: :meth:`keep` is True for every resource."""
        return self.types is None and self.since is None and self.until is None \
            and not self.filters

    def keep(self, r: dict) -> bool:
        rt = r.get("resourceType", "")
        if self.types is not None and rt not in self.types:
            return False
        if self.since is not None or self.until is not None:
            lu = match.date_range(r.get("meta", {}).get("lastUpdated", ""))
            if lu is not None:
                if self.since is not None and lu[0] < self.since:
                    return False
                if self.until is not None and lu[0] >= self.until:
                    return False
        flt = self.filters.get(rt)
        if flt and not any(match.matches_all(r, crit) for crit in flt):
            return False
        return True

    def shape(self, r: dict) -> dict:
        names = self.elements.get("*", []) + self.elements.get(r.get("resourceType", ""), [])
        if not names:
            return r
        from fhir_gateway.api.subset import elements
        return elements(r, names)


def _split_filters(value: str) -> list[str]:
    """``_typeFilter`` values are comma separated; a comma inside a query is %-encoded."""
    return [v.strip() for v in value.split(",") if v.strip()]


def outcome_lines(problems: list[Problem]) -> bytes:
    """One OperationOutcome per unreadable file (the same shape the search Bundles carry)."""
    from fhir_gateway.api.errors import problem_outcome
    out = []
    for _, group in groupby(sorted(problems, key=lambda p: p.path), key=lambda p: p.path):
        out.append(orjson.dumps(problem_outcome(list(group))) + b"\n")
    return b"".join(out)


# -- one chunk of patients (in a worker process or inline) --------------------------------------
_CHILD: dict = {}


def _child_init(facility, data_dir, own_process: bool = True) -> None:
    """Set a mapping process up: its service, and (in a process of the export's own pool) the
    collector tuned for mapping, with everything made at start-up kept out of its collections."""
    from fhir_gateway.services import FacilityService, MappedCache
    _CHILD["svc"] = FacilityService(facility, MappedCache(CHILD_CACHE_BYTES), data_dir)
    if own_process:
        import mappers  # noqa: F401  (every mapper registered before the freeze)
        gc.freeze()
        gc.set_threshold(*CHILD_GC_THRESHOLDS)


def _child_chunk(pids: list[str], params: dict, folder: str | None = None) -> dict:
    return export_chunk(_CHILD["svc"], pids, Spec.parse(params),
                        Path(folder) if folder else None)


def remote_chunk(facility, data_dir, pids: list[str], params: dict) -> dict:
    """A chunk on a Dask worker (``[export] dask``): the worker process sets its service up
    once per facility, as a local pool child does in ``_child_init``; its lines come back in
    memory (the worker may be on another machine)."""
    svc = _CHILD.get("svc")
    if svc is None or svc.facility != facility:
        _child_init(facility, data_dir, own_process=False)  # a Dask worker's collector is its own
    return _child_chunk(pids, params)


class Sink:
    """The ndjson lines of one chunk by type, written to part files in ``folder`` in large
    buffered writes (a chunk's output never sits in memory whole, whatever its patients hold),
    or kept in memory when ``folder`` is None (a remote worker)."""

    FLUSH = 512 << 10  # bytes buffered per type before a write

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.buf: dict[str, list[bytes]] = {}
        self.size: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.files: dict[str, BinaryIO] = {}
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def add(self, rtype: str, line: bytes) -> None:
        """One ndjson line (with its newline)."""
        buf = self.buf.get(rtype)
        if buf is None:
            buf = self.buf[rtype] = []
            self.size[rtype] = self.counts[rtype] = 0
        buf.append(line)
        self.counts[rtype] += 1
        self.size[rtype] += len(line)
        if self.folder is not None and self.size[rtype] >= self.FLUSH:
            self._flush(rtype)

    def _flush(self, rtype: str) -> None:
        fh = self.files.get(rtype)
        if fh is None:
            assert self.folder is not None
            fh = self.files[rtype] = open(self.folder / f"{rtype}.ndjson", "wb")
        fh.write(b"".join(self.buf[rtype]))
        self.buf[rtype].clear()
        self.size[rtype] = 0

    def result(self) -> dict:
        """{"counts"} and either {"parts": type -> file} or {"lines": type -> bytes}."""
        if self.folder is None:
            return {"lines": {t: b"".join(v) for t, v in self.buf.items()},
                    "counts": dict(self.counts)}
        for t in self.buf:
            if self.buf[t]:
                self._flush(t)
        for fh in self.files.values():
            fh.close()
        return {"parts": {t: str(self.folder / f"{t}.ndjson") for t in self.files},
                "counts": dict(self.counts)}


def export_chunk(svc, pids: list[str], spec: Spec, folder: Path | None = None) -> dict:
    """The export of ``pids``: ndjson per type (part files in ``folder``, else bytes),
    OperationOutcome lines and counts.  Each patient is streamed file by file
    (:func:`fhir_gateway.services.stream.patient_stream`) and the chunk's receipts are read
    once per UKE file (:meth:`ClaimSource.stream_patients`): memory is bounded by a file, not
    by a chart.  The resources are those of the patient compartment (``$everything``);
    plug-in resources (memos) are added by the caller, in the process where plug-ins live."""
    from fhir_gateway.services import ServiceError
    from fhir_gateway.services.stream import patient_stream
    sink = Sink(folder)
    problems: list[Problem] = []
    types = set(spec.types) - {"Group"} if spec.types is not None else None
    add, keep, shape = sink.add, spec.keep, spec.shape
    plain = not spec.elements
    everything = spec.keeps_all

    def emit(resources: list[dict]) -> None:
        for r in resources:
            rt = r["resourceType"]
            if rt != "Group" and (everything or keep(r)):
                add(rt, ndjson_line(r if plain else shape(r)))

    folders: list[str] = []
    for pid in (pids if types is None or types else []):
        try:
            if is_valid_patient_id(pid):
                folders.append(pid)
                for resources, probs in patient_stream(svc, pid, types):
                    emit(resources)
                    problems.extend(p for p in probs if p.severity == ERROR)
            else:
                _receipt_patient(svc, pid, types, emit, problems)
        except ServiceError as exc:
            problems.append(Problem(f"Patient/{pid}", "export",
                                    f"not exported (completely): {exc}"))
    if folders and (types is None or types & {"Claim", "Coverage"}):
        for _, resources, probs in svc.claims.stream_patients(folders):
            emit([r for r in resources if types is None or r.get("resourceType") in types])
            problems.extend(probs)
    out = sink.result()
    out.update(errors=outcome_lines(problems), patients=len(pids))
    return out


def _receipt_patient(svc, pid: str, types: set[str] | None, emit: Callable,
                     problems: list[Problem]) -> None:
    """A receipt-built Patient (``Patient/uke-…``, no folder): it and its Claims/Coverages."""
    patient = svc._receipt_patient(pid)
    if patient is None:
        problems.append(Problem(f"Patient/{pid}", "export", f"not exported: no patient {pid!r}"))
        return
    if types is None or "Patient" in types:
        emit([patient])
    if types is None or types & {"Claim", "Coverage"}:
        part = svc.claims.for_patient(pid)
        emit([r for r in part.resources if types is None or r.get("resourceType") in types])
        problems.extend(p for p in part.problems if p.severity == ERROR)


# -- output files ----------------------------------------------------------------------------
class Writer:
    """One ndjson file per type, a new part when the next lines would pass ``max_bytes``."""

    def __init__(self, out_dir: Path, max_bytes: int) -> None:
        self.dir = out_dir
        self.max = max(1, max_bytes)
        self.files: list[dict] = []  # {"type", "name", "count", "bytes"}
        self._open: dict[str, tuple[BinaryIO, dict]] = {}

    def _roll(self, rtype: str) -> tuple[BinaryIO, dict]:
        old = self._open.pop(rtype, None)
        if old is not None:
            old[0].close()
        n = sum(1 for f in self.files if f["type"] == rtype) + 1
        name = f"{rtype}.{n}.ndjson"
        info: dict[str, Any] = {"type": rtype, "name": name, "count": 0, "bytes": 0}
        self.files.append(info)
        fh: BinaryIO = open(self.dir / name, "wb")
        self._open[rtype] = (fh, info)
        return fh, info

    def write(self, rtype: str, data: bytes, count: int) -> None:
        if not data:
            return
        fh, info = self._open.get(rtype) or self._roll(rtype)
        if info["bytes"] + len(data) > self.max:
            self._split(rtype, data.splitlines(keepends=True))
            return
        fh.write(data)
        info["bytes"] += len(data)
        info["count"] += count

    def _split(self, rtype: str, lines) -> None:
        """Line by line, a new part whenever the current one would pass the limit."""
        for line in lines:
            fh, info = self._open.get(rtype) or self._roll(rtype)
            if info["bytes"] and info["bytes"] + len(line) > self.max:
                fh, info = self._roll(rtype)
            fh.write(line)
            info["bytes"] += len(line)
            info["count"] += 1

    def append_file(self, rtype: str, path: Path, count: int) -> None:
        """The lines of a chunk's part file (copied in large blocks when they fit)."""
        size = os.path.getsize(path)
        if not size:
            return
        fh, info = self._open.get(rtype) or self._roll(rtype)
        with open(path, "rb") as src:
            if info["bytes"] + size > self.max:
                self._split(rtype, src)
                return
            _append(src, fh, info["bytes"], size)
        info["bytes"] += size
        info["count"] += count

    def state(self) -> list[dict]:
        """The files so far (everything written is flushed to them): a checkpoint."""
        for fh, _ in self._open.values():
            fh.flush()
        return [dict(f) for f in self.files]

    def resume(self, files: list[dict]) -> bool:
        """Continue from a checkpoint (:meth:`state`): each file cut back to its size then
        (lines written after it belong to chunks that run again), the last one of each type
        reopened.  False, and nothing changed, when a file is missing or shorter (a job
        resumed where its files are not, e.g. on another machine)."""
        try:
            if any(os.path.getsize(self.dir / f["name"]) < f["bytes"] for f in files):
                return False
        except (OSError, KeyError, TypeError):
            return False
        self.files = [dict(f) for f in files]
        last = {f["type"]: f for f in self.files}
        for f in self.files:
            fh = open(self.dir / f["name"], "r+b")
            fh.truncate(f["bytes"])
            if last[f["type"]] is f:
                fh.seek(f["bytes"])
                self._open[f["type"]] = (fh, f)
            else:
                fh.close()
        return True

    def close(self) -> list[dict]:
        for fh, _ in self._open.values():
            fh.close()
        self._open.clear()
        return self.files


def _append(src: BinaryIO, dst: BinaryIO, at: int, size: int) -> None:
    """``size`` bytes of ``src`` written to ``dst`` at offset ``at`` (its end): in the kernel
    with ``copy_file_range`` where there is one (no trip through this process's memory: an
    export appends about 1 GB per 2,000 patients), else by blocks."""
    copy = getattr(os, "copy_file_range", None)
    if copy is not None:
        dst.flush()
        done = 0
        try:
            while done < size:
                n = copy(src.fileno(), dst.fileno(), size - done, done, at + done)
                if n <= 0:
                    break
                done += n
        except OSError:  # a file system without it (or across devices on old kernels)
            pass
        if done == size:
            dst.seek(at + size)
            return
        src.seek(done)
        dst.seek(at + done)
    shutil.copyfileobj(src, dst, 1 << 20)


def run_export(svc, pids: list[str], params: dict, out_dir: Path, *, processes: int,
               max_file_bytes: int, extra_resources: list[dict] | None = None,
               plugin_extras: Callable | None = None,
               progress: Callable[[int, int], None] | None = None,
               cancelled: Callable[[], bool] | None = None,
               executor: cf.Executor | None = None, resume: dict | None = None,
               checkpoint: Callable[[dict], None] | None = None,
               chunk_size: int = CHUNK) -> tuple[list[dict], list[dict]]:
    """Write the export of ``pids`` into ``out_dir``; (output files, error files).
    ``executor``: map the chunks there (a Dask cluster) instead of local processes.  Chunks
    write their lines to part files under ``out_dir/.parts`` (never served), appended to the
    output files in chunk order by this thread.  After each chunk ``checkpoint(state)`` is
    called; a job interrupted later passes that state back as ``resume`` (same ``pids`` and
    parameters) and continues after the chunks it holds instead of starting again."""
    spec = Spec.parse(params)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = Writer(out_dir, max_file_bytes)
    err = Writer(out_dir / "errors", max_file_bytes)
    (out_dir / "errors").mkdir(exist_ok=True)
    parts = out_dir / ".parts"
    done = skip = 0
    if resume and out.resume(resume.get("output", [])) and \
            err.resume(resume.get("errors", [])):
        skip, done = int(resume.get("chunks", 0)), int(resume.get("patients", 0))
    else:  # no checkpoint, or its files are not here: from the start
        out.close()
        err.close()
        for f in list(out_dir.glob("*.ndjson")) + list((out_dir / "errors").glob("*.ndjson")):
            f.unlink()
        out = Writer(out_dir, max_file_bytes)
        err = Writer(out_dir / "errors", max_file_bytes)

    def take(res: dict, n: int, chunk: list[str]) -> None:
        nonlocal done
        for t, data in res.get("lines", {}).items():
            out.write(t, data, res["counts"][t])
        for t, path in res.get("parts", {}).items():
            out.append_file(t, Path(path), res["counts"][t])
        shutil.rmtree(parts / str(n), ignore_errors=True)
        if plugin_extras is not None:  # plug-in resources live in this process
            for pid in chunk:
                for r in plugin_extras(pid):
                    if spec.keep(r):
                        out.write(r["resourceType"], dumps(spec.shape(r)) + b"\n", 1)
        if res["errors"]:
            err.write("OperationOutcome", res["errors"], res["errors"].count(b"\n"))
        done += res["patients"]
        if checkpoint:
            checkpoint({"chunks": n + 1, "patients": done, "output": out.state(),
                        "errors": err.state()})
        if progress:
            progress(done, len(pids))
        if cancelled and cancelled():
            raise ExportCancelled()

    chunks = _chunks(pids, chunk_size)[skip:]
    try:
        if executor is not None or (processes > 1 and len(chunks) > 1):
            pool_cm: contextlib.AbstractContextManager[cf.Executor]
            if executor is not None:  # a Dask cluster's concurrent.futures executor
                pool_cm = contextlib.nullcontext(executor)
                width = max(processes, 8) * 2  # a remote chunk's lines come back in memory

                def submit(pool, n, chunk):
                    return pool.submit(remote_chunk, svc.facility, svc.data_dir, chunk, params)
            else:
                pool_cm = cf.ProcessPoolExecutor(processes, mp_context=_pool_context(),
                                                 initializer=_child_init,
                                                 initargs=(svc.facility, svc.data_dir))
                width = processes * AHEAD

                def submit(pool, n, chunk):
                    return pool.submit(_child_chunk, chunk, params, str(parts / str(n)))
            # A local pool's results wait on disk, so the heaviest chunks may start first: a
            # 3,000-file chart in the last chunk otherwise kept one process busy alone at the end.
            order = list(range(len(chunks))) if executor is not None else \
                _heaviest_first(svc, chunks, processes)
            with pool_cm as pool:
                inflight: dict[int, cf.Future] = {}
                sent: set[int] = set()
                queue = iter(order)

                def send(i: int) -> cf.Future:
                    sent.add(i)
                    return submit(pool, skip + i, chunks[i])

                def fill() -> None:
                    for i in queue:
                        if i not in sent:
                            inflight[i] = send(i)
                            if len(inflight) >= width:
                                return

                try:
                    fill()
                    for i, chunk in enumerate(chunks):  # taken in patient order
                        fut = inflight.pop(i) if i in inflight else send(i)
                        take(fut.result(), skip + i, chunk)
                        fill()
                except BaseException:
                    for fut in inflight.values():
                        fut.cancel()
                    raise
        else:
            for n, chunk in enumerate(chunks, skip):
                take(export_chunk(svc, chunk, spec, parts / str(n)), n, chunk)
        for r in extra_resources or []:
            if spec.keep(r):
                out.write(r["resourceType"], dumps(spec.shape(r)) + b"\n", 1)
    finally:
        files, errors = out.close(), err.close()
        shutil.rmtree(parts, ignore_errors=True)
    return files, errors


def _chunks(pids: list[str], size: int) -> list[list[str]]:
    """``pids`` cut into chunks of ``size``, the last eighth into chunks of a quarter of it;
    the same cut for the same list and size (a resumed job skips the chunks it holds)."""
    size = max(1, size)
    head = len(pids) * 7 // 8 // size * size
    small = max(1, size // 4)
    return [pids[i:i + size] for i in range(0, head, size)] + \
        [pids[i:i + small] for i in range(head, len(pids), small)]


def _pool_context() -> Any:
    """``forkserver`` (the mapping processes forked from one that imported
    :mod:`fhir_gateway.bulk.preload`: no interpreter start and imports per process) where the
    platform has it, else ``spawn``; never ``fork`` (the server has threads)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["fhir_gateway.bulk.preload"])  # (read when it starts)
    return ctx


def _heaviest_first(svc, chunks: list[list[str]], processes: int) -> list[int]:
    """Chunk positions to submit: the ``processes`` chunks with the most care days (one folder
    listing per patient; a chart's days say its size) first, then the others in order."""
    def days(pid: str) -> int:
        try:
            return len(svc.care_dates(pid)) if is_valid_patient_id(pid) else 0
        except Exception:  # (an estimate: the chunk itself reports what cannot be read)
            return 0

    weight = [sum(days(p) for p in c) for c in chunks]
    per_patient = sorted(w / len(c) for w, c in zip(weight, chunks) if c)
    median = per_patient[len(per_patient) // 2] if per_patient else 0
    # heavy: twice the days of a chunk of as many median patients (chunks differ in size)
    heavy = sorted((i for i in range(len(chunks)) if weight[i] > 2 * median * len(chunks[i])),
                   key=lambda i: -weight[i])[:processes]
    first = set(heavy)
    return heavy + [i for i in range(len(chunks)) if i not in first]


def default_processes() -> int:
    """One more mapping process than cores, at most 3: a chart not in the OS cache waits on the
    disk, and the extra process maps while another waits (2 cores: 23,600 -> 26,200
    resources/s, PSS 209 -> 273 MB with 1 serve worker; docs/performance.md "Bulk export")."""
    return max(1, min(3, (os.cpu_count() or 1) + 1))
