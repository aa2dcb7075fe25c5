"""Write the synthetic hospital to disk: standardized storage, extended storage, receipts.

Patients are independent, so they are generated in a process pool; each worker writes its own
patient's folders and returns counts, manifest entries and billing lines.  Results come back in
patient order, so the manifest and the receipts are identical for any number of workers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from storage.names import FileName

from . import messy
from .encode import encode_message, encode_text  # noqa: F401 - re-exported
from .hl7build import ts17
from .patients import HEAVY_PATIENT_ID, make_patient, patient_id
from .timeline import Course
from .uke import Chunk, ReceiptPatient, patient_receipts, write_receipts

# The storage period ends on a fixed day so a seed always yields the same bytes.
END_DATE = date(2026, 10, 31)
DEFAULT_FACILITY = "1310000017"
EXT_MAIN = "main_document"


@dataclass
class Options:
    out: Path
    patients: int
    seed: int = 1
    years: int = 10
    facility: str = DEFAULT_FACILITY
    messy: float = 0.0
    receipts_out: Path | None = None
    extended_out: Path | None = None
    manifest: Path | None = None
    heavy_patient: bool = False
    workers: int = 0
    progress: bool | None = None  # None: only on a TTY

    @property
    def extended_root(self) -> Path:
        """Where extended storage is written: ``extended_out``, else ``<out>-extended`` beside it."""
        out = Path(self.out)
        return Path(self.extended_out) if self.extended_out else out.with_name(out.name + "-extended")

    @property
    def receipts_root(self) -> Path:
        """Where UKE receipts are written: ``receipts_out``, else ``<out>-receipts``."""
        out = Path(self.out)
        return Path(self.receipts_out) if self.receipts_out else out.with_name(out.name + "-receipts")

    def resolved(self) -> "Options":
        out = Path(self.out)
        return Options(
            out, self.patients, self.seed, self.years, self.facility, self.messy,
            self.receipts_root, self.extended_root,
            Path(self.manifest) if self.manifest else (out.with_name(out.name + "-messy.json")
                                                       if self.messy > 0 else None),
            self.heavy_patient, self.workers or (os.cpu_count() or 1), self.progress,
        )


@dataclass
class PatientResult:
    pid: str
    files: Counter
    bytes: int
    ext_files: int
    ext_bytes: int
    manifest: list[dict]
    receipts: list[Chunk]


@dataclass
class Summary:
    options: Options
    patients: int = 0
    files: Counter = field(default_factory=Counter)
    bytes: int = 0
    ext_files: int = 0
    ext_bytes: int = 0
    receipt_files: list[Path] = field(default_factory=list)
    receipt_bytes: int = 0
    defects: Counter = field(default_factory=Counter)
    heavy_patient: str | None = None
    seconds: float = 0.0

    def lines(self) -> list[str]:
        o = self.options
        out = [f"patients: {self.patients}   period: {o.years} years up to {END_DATE}   "
               f"facility: {o.facility}   seed: {o.seed}   workers: {o.workers}"]
        out.append(f"standardized storage: {o.out}  ({sum(self.files.values())} files, "
                   f"{_mb(self.bytes)})")
        for dtype in sorted(self.files):
            out.append(f"  {dtype:<7} {self.files[dtype]:>9}")
        out.append(f"extended storage: {o.extended_out}  ({self.ext_files} files, {_mb(self.ext_bytes)})")
        out.append(f"receipts: {o.receipts_out}  ({len(self.receipt_files)} UKE files, "
                   f"{_mb(self.receipt_bytes)})")
        if o.manifest:
            out.append(f"messy manifest: {o.manifest}  ({sum(self.defects.values())} defects: "
                       + ", ".join(f"{k} {v}" for k, v in sorted(self.defects.items())) + ")")
        if self.heavy_patient:
            out.append(f"heavy patient: {self.heavy_patient}")
        out.append(f"elapsed: {self.seconds:.1f} s")
        return out


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


# -- one patient (runs in a worker) --------------------------------------------------------------

_JOB: Options | None = None


def _init(opts: Options) -> None:
    global _JOB
    _JOB = opts


def _period(opts: Options) -> tuple[date, date]:
    return END_DATE - timedelta(days=round(opts.years * 365.25)), END_DATE


def build_patient(opts: Options, index: int) -> PatientResult:
    """Generate and write one patient; deterministic for (seed, index)."""
    heavy = index < 0
    pid = HEAVY_PATIENT_ID if heavy else patient_id(opts.seed, index)
    idx = 9_000_001 if heavy else index
    rng = random.Random(f"fhir-gateway-synth:{opts.seed}:{pid}")
    start, end = _period(opts)
    patient = make_patient(rng, idx, pid, start, end, heavy=heavy)
    course = Course(rng, patient, opts.facility, start, end, heavy=heavy)
    course.run()
    folders = (pid[0:3], pid[3:6], pid)
    planned = []
    for d in course.docs:
        name = FileName(pid, d.date, d.dtype, d.order_no, ts17(d.when), d.dept, d.flag)
        planned.append(messy.Planned(folders + (d.date, d.dtype), name, d.text, encode_message(d.text)))
    manifest = messy.inject(random.Random(f"fhir-gateway-messy:{opts.seed}:{pid}"), planned,
                            opts.messy, encode_message)
    counts: Counter = Counter()
    total = 0
    made: set[str] = set()
    root = str(opts.out)
    for f in planned:
        folder = os.path.join(root, *f.folders)
        if folder not in made:
            _mkdirs(folder, made)
        with open(os.path.join(folder, f.name.name), "wb") as fh:
            fh.write(f.data)
        counts[f.folders[4]] += 1
        total += len(f.data)
    ext_files = ext_bytes = 0
    for e in course.ext:
        content = "_".join((pid, e.date, e.type_folder, e.key, ts17(e.when), e.dept, "1"))
        content_dir = opts.extended_root.joinpath(*folders, e.date, e.type_folder, content)
        content_dir.mkdir(parents=True, exist_ok=True)
        for fname, data in e.files.items():
            (content_dir / fname).write_bytes(data)
            ext_files += 1
            ext_bytes += len(data)
    receipts = patient_receipts(ReceiptPatient.from_course(course))
    return PatientResult(pid, counts, total, ext_files, ext_bytes, manifest, receipts)


def _mkdirs(folder: str, made: set[str]) -> None:
    """mkdir -p with a memory of what exists (most patients' folders are new)."""
    parent = os.path.dirname(folder)
    if parent not in made and not os.path.isdir(parent):
        _mkdirs(parent, made)
    made.add(parent)
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass
    made.add(folder)




def _job(index: int) -> PatientResult:
    assert _JOB is not None
    return build_patient(_JOB, index)


# -- the run -------------------------------------------------------------------------------------

def generate(options: Options) -> Summary:
    """Generate the whole hospital; the output folders must not hold an earlier run."""
    opts = options.resolved()
    started = time.perf_counter()
    summary = Summary(opts)
    for path in (opts.out, opts.extended_root, opts.receipts_root):
        path.mkdir(parents=True, exist_ok=True)
    indices = list(range(opts.patients)) + ([-1] if opts.heavy_patient else [])
    show = opts.progress if opts.progress is not None else sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm
        bar = tqdm(total=len(indices), unit="patient", desc="synth", file=sys.stderr)
    receipts: list[Chunk] = []
    manifest: list[dict] = []

    def collect(res: PatientResult) -> None:
        summary.patients += 1
        summary.files.update(res.files)
        summary.bytes += res.bytes
        summary.ext_files += res.ext_files
        summary.ext_bytes += res.ext_bytes
        manifest.extend(res.manifest)
        receipts.extend(res.receipts)
        if res.pid == HEAVY_PATIENT_ID and opts.heavy_patient:
            summary.heavy_patient = res.pid
        if bar is not None:
            bar.update(1)

    if opts.workers <= 1 or len(indices) < 4:
        _init(opts)
        for i in indices:
            collect(_job(i))
    else:
        ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        chunk = max(1, min(50, len(indices) // (opts.workers * 8) or 1))
        with ctx.Pool(opts.workers, initializer=_init, initargs=(opts,)) as pool:
            for res in pool.imap(_job, indices, chunksize=chunk):
                collect(res)
    if bar is not None:
        bar.close()
    summary.receipt_files = write_receipts(opts.receipts_root, receipts, opts.facility)
    summary.receipt_bytes = sum(p.stat().st_size for p in summary.receipt_files)
    if opts.manifest is not None:
        for m in manifest:
            summary.defects[m["defect"]] += 1
        opts.manifest.parent.mkdir(parents=True, exist_ok=True)
        opts.manifest.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n",
                                 encoding="utf-8")
    summary.seconds = time.perf_counter() - started
    return summary
