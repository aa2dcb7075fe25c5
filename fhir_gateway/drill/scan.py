"""Walk one storage root: find patient folders, report stray files and folders on the way.

The walk mirrors ``storage.layout.Storage.patient_ids`` (levels 1-3) but also reports what it
skips: a file at level 1-3, a level-3 folder that cannot be a patient id.  Levels 4-6 are walked
per patient by :func:`patient_files`, so the expensive part runs in the worker processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from storage.layout import StoredFile, _looks_like_patient, classify, list_folder
from storage.names import DATA_TYPES, is_valid_date_folder, is_valid_patient_id
from storage.reader import KIND_IO, KIND_MISPLACED

from .kinds import ERROR, problem


def _rel(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _folders(root: Path, rel: str, problems: list[dict], unreadable: str,
             stray_file: str) -> list[str] | None:
    """Sub-folders of ``root/rel``, or None when it cannot be read; that, and every file
    standing at this level, is appended to ``problems``."""
    try:
        dirs, files = list_folder(root / rel)
    except OSError as exc:
        problems.append(problem(rel, KIND_IO, f"{unreadable}: {exc.strerror or exc}"))
        return None
    for f in files:
        problems.append(problem(_rel(rel, f), KIND_MISPLACED, stray_file))
    return dirs


def walk_patients(root: Path, problems: list[dict]) -> Iterator[tuple[str, str]]:
    """Yield ``(patient_id, relative patient folder)``; append stray-entry problems."""
    l1s = _folders(root, "", problems, f"storage root {root} cannot be read",
                   "file at level 1 (the storage root); files belong "
                   "in <id[0:3]>/<id[3:6]>/<id>/<date>/<data type>/")
    for l1 in l1s or ():
        l2s = _folders(root, l1, problems, "folder cannot be read",
                       "file at level 2 (patient-id prefix folder)")
        for l2 in l2s or ():
            if is_valid_patient_id(l2) and _looks_like_patient(root / l1 / l2):
                yield l2, _rel(l1, l2)  # short-id layout: <id>/<id>
                continue
            pids = _folders(root, _rel(l1, l2), problems, "folder cannot be read",
                            "file at level 3 (second patient-id prefix folder)")
            for pid in pids or ():
                if not is_valid_patient_id(pid):
                    problems.append(problem(_rel(l1, l2, pid), KIND_MISPLACED,
                                            f"folder {pid!r} at level 3 is not a valid patient id"))
                    continue
                yield pid, _rel(l1, l2, pid)


def patient_files(root: Path, pid: str, pdir: str, problems: list[dict]) -> Iterator[StoredFile]:
    """Every file below one patient folder, classified; stray entries become problems."""
    dates = _folders(root, pdir, problems, "patient folder cannot be read",
                     "file directly in the patient folder (level 4 must hold date folders)")
    for date in dates or ():
        if not is_valid_date_folder(date):
            problems.append(problem(_rel(pdir, date), KIND_MISPLACED, f"folder {date!r} at level 4 "
                                    "is neither a date (YYYYMMDD) nor '-'"))
            continue
        dtypes = _folders(root, _rel(pdir, date), problems, "cannot read",
                          "file directly in a date folder (level 5 must hold data-type folders)")
        for dtype in dtypes or ():
            if dtype not in DATA_TYPES:
                problems.append(problem(_rel(pdir, date, dtype), KIND_MISPLACED,
                                        f"folder {dtype!r} is not a standardized-storage data type"))
                continue
            try:
                subdirs, names = list_folder(root / pdir / date / dtype)
            except OSError as exc:
                problems.append(problem(_rel(pdir, date, dtype), KIND_IO,
                                        f"cannot read: {exc.strerror or exc}"))
                continue
            for d in subdirs:
                problems.append(problem(_rel(pdir, date, dtype, d), KIND_MISPLACED,
                                        "folder inside a data-type folder (level 6 holds files only)"))
            for name in names:
                yield classify(_rel(pdir, date, dtype, name), pid, date, dtype, name)


__all__ = ["walk_patients", "patient_files", "ERROR"]
