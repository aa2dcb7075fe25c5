"""Directory listings cached by the directory's mtime_ns (checked with one stat per folder).

A new, removed or renamed file changes its folder's mtime, so a cached listing is never used
after the folder changed; the cache only saves re-reading and re-parsing unchanged folders
(a heavy patient has thousands).  Bounded by entry count and by an estimate of its bytes (LRU;
a hospital of 20,000 patients has millions of folders).

Timestamps are coarse (a file system ticks every few milliseconds), so a folder changed twice
within one tick keeps its mtime: like git's "racy" index entries, a listing whose mtime is
younger than :data:`RACY_NS` is not cached (:func:`patient_signature` reports it as racy)."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from itertools import chain
from typing import Iterable
from pathlib import Path

from storage.layout import Record, Storage, StoredFile, classify_folder, group_records, \
    list_folder, patient_folder_ok
from storage.names import RecordKey


RACY_NS = 2_000_000_000  # a folder changed less than 2 s ago may change again unnoticed
_EMPTY: tuple[int, tuple[str, ...], tuple[str, ...]] = (-1, (), ())


def _listing_cost(path: str, dirs: tuple[str, ...], files: tuple[str, ...]) -> int:
    """Bytes a cached listing holds, about (str objects of ~50 bytes + the name; tuples)."""
    return 250 + len(path) + sum(58 + len(n) for n in dirs) + sum(58 + len(n) for n in files)


_CLASSIFIED_COST = 720  # a StoredFile with its FileName (sys.getsizeof over its parts)


class DirCache:
    def __init__(self, max_entries: int = 200_000, max_bytes: int = 16 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, tuple[int, tuple[str, ...], tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        self._classes: OrderedDict[tuple, tuple] = OrderedDict()
        self._bytes = 0  # both maps together

    def _shrink(self) -> None:
        """Evict the oldest listings and classifications beyond the bounds; under the lock."""
        while (self._data or self._classes) and (self._bytes > self.max_bytes
                                                 or len(self._data) > self.max_entries):
            if self._data:
                path, (_, d, f) = self._data.popitem(last=False)
                self._bytes -= _listing_cost(path, d, f)
            if self._classes and self._bytes > self.max_bytes:
                _, (_, ev) = self._classes.popitem(last=False)
                self._bytes -= _CLASSIFIED_COST * len(ev) + 100

    def list(self, path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(sub-folders, files) of ``path``, sorted, hidden names skipped; ((), ()) if absent."""
        _, dirs, files = self.entry(path)
        return dirs, files

    def entry(self, path: str) -> tuple[int, tuple[str, ...], tuple[str, ...]]:
        """(mtime_ns, sub-folders, files) of ``path`` with one ``stat`` when unchanged;
        mtime -1 when the folder is absent."""
        try:
            mtime = os.stat(path).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return _EMPTY
        with self._lock:
            hit = self._data.get(path)
            if hit is not None and hit[0] == mtime:
                self._data.move_to_end(path)
                return hit
        dirs, files = list_folder(path)
        value = (mtime, tuple(dirs), tuple(files))
        if time.time_ns() - mtime > RACY_NS:
            with self._lock:
                old = self._data.pop(path, None)
                if old is not None:
                    self._bytes -= _listing_cost(path, old[1], old[2])
                self._data[path] = value
                self._bytes += _listing_cost(path, value[1], value[2])
                self._shrink()
        return value

    def classified(self, path: str, rel: str, pid: str, date: str, dtype: str,
                   folder_ok: bool | None = None) -> tuple[StoredFile, ...]:
        """The files of one data-type folder, classified once per folder mtime; ``folder_ok``:
        :func:`storage.layout.patient_folder_ok` of the patient folder (None: checked here)."""
        names = self.list(path)[1]
        key = ("classified", path)
        with self._lock:
            hit = self._classes.get(key)
            if hit is not None and hit[0] is names:
                return hit[1]
        if folder_ok is None:
            folder_ok = patient_folder_ok("/".join(rel.split("/")[:-2]), pid)
        out = tuple(classify_folder(rel, pid, date, dtype, names, folder_ok))
        with self._lock:
            old = self._classes.pop(key, None)
            if old is not None:
                self._bytes -= _CLASSIFIED_COST * len(old[1]) + 100
            self._classes[key] = (names, out)
            self._bytes += _CLASSIFIED_COST * len(out) + 100
            while len(self._classes) > self.max_entries:
                _, (_, ev) = self._classes.popitem(last=False)
                self._bytes -= _CLASSIFIED_COST * len(ev) + 100
            self._shrink()
        return out


def _listed(path: str) -> tuple[list[str], list[str]]:
    """:func:`list_folder` without a cache; an absent folder has nothing (as in
    :meth:`DirCache.entry`)."""
    try:
        return list_folder(path)
    except (FileNotFoundError, NotADirectoryError):
        return [], []


def patient_records(storage: Storage, dirs: DirCache | None, pid: str,
                    data_types: list[str] | None = None, dates: list[str] | None = None
                    ) -> tuple[dict[RecordKey, Record], list[StoredFile]]:
    """Like :meth:`Storage.records`, through the listing cache; ``dirs`` None: every folder
    listed once, nothing kept and no ``stat`` for a cache check (one pass over a patient, the
    export's stream)."""
    pdir = storage.patient_dir(pid)
    if pdir is None:
        return {}, []
    root = str(storage.root)
    pstr = str(pdir)
    rel_pdir = pstr[len(root) + 1:] if pstr.startswith(root + "/") else \
        os.path.relpath(pstr, root).replace(os.sep, "/")
    folder_ok = patient_folder_ok(rel_pdir, pid)
    wanted = set(data_types) if data_types is not None else None
    listed = dirs.list if dirs is not None else _listed
    date_list = dates if dates is not None else list(listed(pstr)[0])
    folders: list[Iterable[StoredFile]] = []
    for date in date_list:
        dpath = f"{pstr}/{date}"
        for dtype in listed(dpath)[0]:
            if wanted is not None and dtype not in wanted:
                continue
            path, rel = f"{dpath}/{dtype}", f"{rel_pdir}/{date}/{dtype}"
            folders.append(dirs.classified(path, rel, pid, date, dtype, folder_ok)
                           if dirs is not None else
                           classify_folder(rel, pid, date, dtype, _listed(path)[1], folder_ok))
    return group_records(chain.from_iterable(folders))


def patient_signature(storage: Storage, dirs: DirCache, pid: str,
                      data_types: list[str] | None = None) -> tuple[tuple | None, bool]:
    """(signature, racy) of a patient's folders: the mtimes of the patient folder, its date
    folders and the (wanted) data-type folders.  Adding, removing or renaming a file (a flag
    change is a rename) changes its folder's mtime, so an unchanged signature means an unchanged
    listing; ``racy`` says a folder changed too recently to trust that.  O(folders) stats."""
    pdir = storage.patient_dir(pid)
    if pdir is None:
        return None, False
    pstr = str(pdir)
    mt, dates, _ = dirs.entry(pstr)
    sig = [pstr, mt]
    newest = mt
    wanted = set(data_types) if data_types is not None else None
    stat, cached = os.stat, dirs._data
    try:
        pfd = os.open(pstr, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return None, False
    try:  # stats relative to the patient folder: a short path lookup for thousands of folders
        for date in dates:
            try:
                mt = stat(date, dir_fd=pfd).st_mtime_ns
            except (FileNotFoundError, NotADirectoryError):
                mt = -1
            dpath = f"{pstr}/{date}"
            hit = cached.get(dpath)
            dtypes = hit[1] if hit is not None and hit[0] == mt else dirs.entry(dpath)[1]
            sig.append(mt)
            newest = max(newest, mt)
            for dtype in dtypes:
                if wanted is None or dtype in wanted:
                    try:
                        mt = stat(f"{date}/{dtype}", dir_fd=pfd).st_mtime_ns
                    except (FileNotFoundError, NotADirectoryError):
                        mt = -1
                    sig.append(mt)
                    newest = max(newest, mt)
    finally:
        os.close(pfd)
    return tuple(sig), time.time_ns() - newest <= RACY_NS


def one_record(storage: Storage, dirs: DirCache, key: RecordKey) -> Record | None:
    recs, _ = patient_records(storage, dirs, key.patient_id, [key.data_type], [key.date])
    return recs.get(key)


_ = Path
