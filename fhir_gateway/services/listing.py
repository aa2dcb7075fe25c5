"""Directory listings cached by the directory's mtime_ns (checked with one stat per folder).

A new, removed or renamed file changes its folder's mtime, so a cached listing is never used
after the folder changed; the cache only saves re-reading and re-parsing unchanged folders
(a heavy patient has thousands).  Bounded by entry count (LRU)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from storage.layout import Record, Storage, StoredFile, classify
from storage.names import RecordKey


class DirCache:
    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[int, tuple[str, ...], tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        self._classes: OrderedDict[tuple, tuple] = OrderedDict()

    def list(self, path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(sub-folders, files) of ``path``, sorted, hidden names skipped; ((), ()) if absent."""
        try:
            mtime = os.stat(path).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return (), ()
        with self._lock:
            hit = self._data.get(path)
            if hit is not None and hit[0] == mtime:
                self._data.move_to_end(path)
                return hit[1], hit[2]
        dirs, files = [], []
        with os.scandir(path) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                (dirs if e.is_dir() else files).append(e.name)
        value = (mtime, tuple(sorted(dirs)), tuple(sorted(files)))
        with self._lock:
            self._data[path] = value
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return value[1], value[2]


def _classified_default(self, path: str, rel: str, pid: str, date: str, dtype: str
                        ) -> tuple[StoredFile, ...]:
    """The files of one data-type folder, classified once per folder mtime."""
    names = self.list(path)[1]
    key = ("classified", path)
    with self._lock:
        hit = self._classes.get(key)
        if hit is not None and hit[0] is names:
            return hit[1]
    out = tuple(classify(f"{rel}/{n}", pid, date, dtype, n) for n in names)
    with self._lock:
        self._classes[key] = (names, out)
        while len(self._classes) > self.max_entries:
            self._classes.popitem(last=False)
    return out


DirCache.classified = _classified_default  # type: ignore[attr-defined]


def patient_records(storage: Storage, dirs: DirCache, pid: str,
                    data_types: list[str] | None = None, dates: list[str] | None = None
                    ) -> tuple[dict[RecordKey, Record], list[StoredFile]]:
    """Like :meth:`Storage.records`, through the listing cache."""
    pdir = storage.patient_dir(pid)
    records: dict[RecordKey, Record] = {}
    rejects: list[StoredFile] = []
    if pdir is None:
        return records, rejects
    root = str(storage.root)
    pstr = str(pdir)
    rel_pdir = os.path.relpath(pstr, root).replace(os.sep, "/")
    wanted = set(data_types) if data_types is not None else None
    date_list = dates if dates is not None else [
        d for d in dirs.list(pstr)[0]]
    for date in date_list:
        dpath = f"{pstr}/{date}"
        for dtype in dirs.list(dpath)[0]:
            if wanted is not None and dtype not in wanted:
                continue
            for f in dirs.classified(f"{dpath}/{dtype}", f"{rel_pdir}/{date}/{dtype}", pid, date,
                                     dtype):
                if not f.usable:
                    rejects.append(f)
                    continue
                rec = records.get(f.name.key)  # type: ignore[union-attr]
                if rec is None:
                    rec = records[f.name.key] = Record(f.name.key)  # type: ignore[union-attr]
                rec.versions.append(f)
    for rec in records.values():
        rec.sort()
    return records, rejects


def one_record(storage: Storage, dirs: DirCache, key: RecordKey) -> Record | None:
    recs, _ = patient_records(storage, dirs, key.patient_id, [key.data_type], [key.date])
    return recs.get(key)


_ = Path
