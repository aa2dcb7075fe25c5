"""The standardized-storage directory tree: patients, date folders, data types, record versions.

``<root>/<id[0:3]>/<id[3:6]>/<id>/<YYYYMMDD | ->/<data type>/<file>``

A patient's folder is computed from the id (no walk).  For ids shorter than 6 characters the
guideline's rule is unverified, so :meth:`Storage.patient_dir` accepts every plausible layout, in
this order, and uses the first that exists (documented in docs/storage.md):

1. plain slicing, when both slices are non-empty: ``12345`` -> ``123/45/12345``;
2. zero-padded on the left to 6: ``12345`` -> ``012/345/12345``;
3. padded on the right with ``_`` to 6: ``123`` -> ``123/___/123``;
4. an id of 3 or fewer characters directly below level 1: ``123`` -> ``123/123``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, Protocol, TypeVar, overload

from .names import (
    DATA_TYPES, FLAG_CURRENT, FLAG_DELETED, BadFileName, FileName, RecordKey,
    is_valid_date_folder, is_valid_patient_id, parse_name,
)


class UnsafePath(ValueError):
    """A request-derived value that would leave the storage root."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file found in the tree, with its parsed name (or the reason its name is bad)."""

    relpath: str  # storage-relative, '/'-separated
    name: FileName | None
    name_error: str | None = None
    misplaced: str | None = None  # reason when the name disagrees with its folders

    @property
    def usable(self) -> bool:
        return self.name is not None and self.misplaced is None


class _Listed(Protocol):
    """What grouping needs of a listed file (:class:`StoredFile`, extended ``ContentFolder``)."""

    @property
    def name(self) -> FileName | None: ...

    @property
    def usable(self) -> bool: ...


_F = TypeVar("_F", bound=_Listed)


class _Versions(Protocol[_F]):
    """What grouping needs of a record (:class:`Record`, extended ``ExtendedRecord``)."""

    versions: list[_F]

    def sort(self) -> None: ...


def _named(f: _Listed) -> FileName:
    """A grouped version's parsed name (:func:`group_records` keeps only usable, named files)."""
    name = f.name
    assert name is not None
    return name


@dataclass
class VersionChain(Generic[_F]):
    """All versions of one record or document (same patient, date, data type and key)."""

    key: RecordKey
    versions: list[_F] = field(default_factory=list)

    def sort(self) -> None:
        if len(self.versions) > 1:  # most records have one version
            self.versions.sort(key=lambda f: _named(f).sort_key)

    @property
    def currents(self) -> list[_F]:
        return [v for v in self.versions if _named(v).flag == FLAG_CURRENT]

    @property
    def current(self) -> _F | None:
        """The newest flag-1 version (several flag-1 versions are a defect the drill reports)."""
        cur = self.currents
        return cur[-1] if cur else None

    @property
    def deleted(self) -> bool:
        return self.current is None and any(_named(v).flag == FLAG_DELETED for v in self.versions)

    @property
    def history(self) -> list[_F]:
        """Every version, oldest first."""
        return list(self.versions)


@dataclass
class Record(VersionChain[StoredFile]):
    """All versions of one record (same patient, date folder, data type and order number)."""

    @property
    def latest(self) -> StoredFile:
        return self.versions[-1]


def list_folder(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(sub-folders, files) of one folder, each sorted, hidden (dot) entries skipped.

    One ``scandir``; an unreadable or missing folder raises ``OSError`` for the caller to
    report or skip."""
    dirs: list[str] = []
    files: list[str] = []
    with os.scandir(path) as it:
        for e in it:
            name = e.name
            if name[0] == ".":
                continue
            if e.is_dir():
                dirs.append(name)
            else:
                files.append(name)
    dirs.sort()
    files.sort()
    return dirs, files


def _scandir_names(path: str | os.PathLike[str], dirs: bool) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if e.is_dir() == dirs and not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


class Storage:
    """Read access to one standardized-storage root.  Knows nothing of FHIR."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._root_str = str(self.root)
        # abspath() joins by concatenation (os.path.join costs more than the rest of the check).
        self._root_prefix = os.path.join(self._root_str, "")

    # -- paths ------------------------------------------------------------------------------
    def resolve(self, relpath: str) -> Path:
        """Absolute path of a storage-relative path; refuses anything escaping the root."""
        if not relpath or relpath.startswith(("/", "\\")) or "\x00" in relpath:
            raise UnsafePath(relpath)
        parts = relpath.replace("\\", "/").split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise UnsafePath(relpath)
        return self.root.joinpath(*parts)

    def abspath(self, relpath: str) -> str:
        """Like :meth:`resolve` but a plain string (the hot read path avoids pathlib)."""
        if (not relpath or relpath[0] in "/\\" or "\x00" in relpath or "\\" in relpath
                or "//" in relpath or relpath.endswith("/")):
            raise UnsafePath(relpath)
        # A "." or ".." part needs a dot; SS-MIX2 names have none, so the split is rarely needed.
        if "." in relpath:
            parts = relpath.split("/")
            if "." in parts or ".." in parts:
                raise UnsafePath(relpath)
        return self._root_prefix + relpath

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    @staticmethod
    def candidate_dirs(patient_id: str) -> list[tuple[str, ...]]:
        """Relative folder candidates for a patient id, most likely first."""
        pid = patient_id
        cands: list[tuple[str, ...]] = []
        if len(pid) >= 6 or pid[3:6]:
            cands.append((pid[0:3], pid[3:6], pid))
        if len(pid) < 6:
            z = pid.rjust(6, "0")
            cands.append((z[0:3], z[3:6], pid))
            u = pid.ljust(6, "_")
            cands.append((u[0:3], u[3:6], pid))
            if len(pid) <= 3:
                cands.append((pid, pid))
        seen: list[tuple[str, ...]] = []
        for c in cands:
            if c not in seen:
                seen.append(c)
        return seen

    def patient_dir(self, patient_id: str) -> Path | None:
        parts = self._patient_parts(patient_id)
        return self.root.joinpath(*parts) if parts is not None else None

    def has_patient(self, patient_id: str) -> bool:
        """Whether the patient has a folder, without building a Path: pathlib interns every
        part of a path, so asking this of every receipt's person (the receipt Patients) kept
        each patient id alive, 3.7 MB per worker at 20,000 patients."""
        return self._patient_parts(patient_id) is not None

    def _patient_parts(self, patient_id: str) -> tuple[str, ...] | None:
        if not is_valid_patient_id(patient_id):
            raise UnsafePath(patient_id)
        root = self._root_str
        for parts in self.candidate_dirs(patient_id):
            if os.path.isdir(os.path.join(root, *parts)):
                return parts
        return None

    def patient_ids(self) -> Iterator[str]:
        """Every patient folder in the tree (a walk of three directory levels)."""
        for l1 in _scandir_names(self.root, True):
            for l2 in _scandir_names(self.root / l1, True):
                if is_valid_patient_id(l2) and _looks_like_patient(self.root / l1 / l2):
                    yield l2  # short-id layout 4: <id>/<id>
                    continue
                for pid in _scandir_names(self.root / l1 / l2, True):
                    yield pid

    def dates(self, patient_id: str) -> list[str]:
        pdir = self.patient_dir(patient_id)
        return [d for d in _scandir_names(pdir, True) if is_valid_date_folder(d)] if pdir else []

    def data_types(self, patient_id: str, date: str) -> list[str]:
        pdir = self.patient_dir(patient_id)
        return _scandir_names(pdir / date, True) if pdir else []

    # -- files ------------------------------------------------------------------------------
    def files(
        self,
        patient_id: str,
        data_types: Iterable[str] | None = None,
        dates: Iterable[str] | None = None,
    ) -> Iterator[StoredFile]:
        """Every file of one patient (optionally restricted), with its name checked."""
        pdir = self.patient_dir(patient_id)
        if pdir is None:
            return
        wanted_types = set(data_types) if data_types is not None else None
        date_list = list(dates) if dates is not None else _scandir_names(pdir, True)
        for date in date_list:
            ddir = pdir / date
            for dtype in _scandir_names(ddir, True):
                if wanted_types is not None and dtype not in wanted_types:
                    continue
                for fname in _scandir_names(ddir / dtype, False):
                    yield classify(
                        self.relative(ddir / dtype / fname), patient_id, date, dtype, fname
                    )

    def records(
        self,
        patient_id: str,
        data_types: Iterable[str] | None = None,
        dates: Iterable[str] | None = None,
    ) -> tuple[dict[RecordKey, Record], list[StoredFile]]:
        """Group a patient's well-named files into records; return the rest as rejects."""
        return group_records(self.files(patient_id, data_types, dates))

    def record(self, key: RecordKey) -> Record | None:
        """One record by key, reading only its own folder."""
        if not is_valid_date_folder(key.date) or key.data_type not in DATA_TYPES:
            raise UnsafePath(str(key))
        recs, _ = self.records(key.patient_id, [key.data_type], [key.date])
        return recs.get(key)


def short_id_folder(l1: str, l2: str, kids: list[str], path: Path | str) -> bool:
    """Whether ``l1/l2`` is a patient folder of layout 4 (``<id>/<id>``, ids of 3 or fewer
    characters), given the names ``kids`` inside it.

    Only when the names say so: level 2 repeats level 1, every child is a date folder and the
    first child holds data-type folders.  Names alone mislead: the 8-digit patient folder in
    ``999/900/99990010/`` looks like a date folder, so ``999/900`` would pass for patient 900.
    """
    if l2 != l1 or len(l2) > 3 or not kids or not all(is_valid_date_folder(k) for k in kids):
        return False
    return any(n in DATA_TYPES for n in _scandir_names(Path(path) / kids[0], True))


def _looks_like_patient(path: Path) -> bool:
    """A level-2 folder that is a short-id patient folder (:func:`short_id_folder`)."""
    return short_id_folder(path.parent.name, path.name, _scandir_names(path, True), path)


_R = TypeVar("_R", bound=_Versions[Any])


@overload
def group_records(files: Iterable[StoredFile]) -> tuple[dict[RecordKey, Record], list[StoredFile]]: ...
@overload
def group_records(files: Iterable[_F], record_type: Callable[[RecordKey], _R]
                  ) -> tuple[dict[RecordKey, _R], list[_F]]: ...
def group_records(files: Iterable[Any], record_type: Callable[[RecordKey], Any] = Record
                  ) -> tuple[dict[RecordKey, Any], list[Any]]:
    """Group well-named files into records (versions sorted); return the rest as rejects.

    The one grouping behind :meth:`Storage.records`, every cached listing built on it and the
    extended storage's documents (``record_type`` ExtendedRecord over content folders)."""
    records: dict[RecordKey, Any] = {}
    rejects: list[Any] = []
    for f in files:
        if not f.usable:
            rejects.append(f)
            continue
        key = f.name.key
        rec = records.get(key)
        if rec is None:
            rec = records[key] = record_type(key)
        rec.versions.append(f)
    for rec in records.values():
        rec.sort()
    return records, rejects


def classify(relpath: str, patient_id: str, date: str, dtype: str, fname: str) -> StoredFile:
    """Parse a file name and check it against the folders it sits in."""
    return _classified(relpath, patient_id, date, dtype, fname,
                       patient_folder_ok(_patient_part(relpath), patient_id))


def patient_folder_ok(rel_pdir: str, patient_id: str) -> bool:
    """Whether ``rel_pdir`` (storage-relative) is a folder the id's layout allows
    (:meth:`Storage.candidate_dirs`): the same answer for every file of the patient."""
    return tuple(rel_pdir.split("/")) in Storage.candidate_dirs(patient_id)


def _classified(relpath: str, patient_id: str, date: str, dtype: str, fname: str,
                folder_ok: bool) -> StoredFile:
    try:
        name = parse_name(fname)
    except BadFileName as exc:
        return StoredFile(relpath, None, name_error=str(exc))
    wrong = []
    if name.patient_id != patient_id:
        wrong.append(f"patient {name.patient_id} in the name, folder {patient_id}")
    if name.date != date:
        wrong.append(f"date {name.date} in the name, folder {date}")
    if name.data_type != dtype:
        wrong.append(f"data type {name.data_type} in the name, folder {dtype}")
    if not wrong and not folder_ok:
        wrong.append(_folder_mismatch(relpath, patient_id))
    return StoredFile(relpath, name, misplaced="; ".join(wrong) or None)


def _patient_part(relpath: str) -> str:
    """The patient folder of a file's storage-relative path (all but its last three parts)."""
    return "/".join(relpath.split("/")[:-3])


def _folder_mismatch(relpath: str, patient_id: str) -> str:
    return f"patient folder {_patient_part(relpath)} does not match id {patient_id}"


# The part of a well-formed name after "{patient}_{date}_{data type}_" (each part as
# names.parse_name checks it; no part holds "_").
_TAIL = re.compile(r"([0-9A-Za-z\-]{1,22})_(\d{12,17})_([0-9A-Za-z]{1,5}|-)_([012])")


def classify_folder(rel: str, patient_id: str, date: str, dtype: str, names: Iterable[str],
                    folder_ok: bool) -> list[StoredFile]:
    """:func:`classify` of every file ``names`` of the data-type folder ``rel``
    (storage-relative); ``folder_ok``: :func:`patient_folder_ok` of its patient folder.

    A name that starts with the folders' own ``patient_date_type_`` and whose rest is well
    formed is the common case: parsed with one regular expression, it is the
    :class:`FileName` that ``parse_name`` would give (valid id, date folder and standard data
    type, none holding ``_``); anything else goes through ``parse_name`` for its reason."""
    prefix = f"{patient_id}_{date}_{dtype}_"
    fast = (dtype in DATA_TYPES and is_valid_date_folder(date)
            and is_valid_patient_id(patient_id) and "_" not in patient_id)
    start = len(prefix)
    tail = _TAIL.fullmatch
    out = []
    for fname in names:
        relpath = f"{rel}/{fname}"
        if fast and fname.startswith(prefix):
            m = tail(fname, start)
            if m is not None:
                order, stamp, dept, flag = m.groups()
                out.append(StoredFile(
                    relpath, FileName(patient_id, date, dtype, order, stamp, dept, flag),
                    misplaced=None if folder_ok else _folder_mismatch(relpath, patient_id)))
                continue
        out.append(_classified(relpath, patient_id, date, dtype, fname, folder_ok))
    return out
