"""Find which patients changed since the last index run, from directory mtimes alone.

The standardized storage is ``<l1>/<l2>/<patient>/<date | ->/<data type>/<file>``.  Adding,
removing or renaming an entry changes the mtime of the directory holding it, so:

* a level-1 or level-2 directory whose mtime is unchanged still holds the same children; its
  listing comes from the state file instead of the disk (new and removed patients show up as a
  changed parent);
* a patient is re-read when its folder's mtime changed (a new date folder, which also moves the
  last care date) or its ``-/ADT-00`` folder's mtime changed (a new ADT-00 version or a flag
  rename).  The ``-`` folder itself only changes when a data-type folder appears, which the
  ``-/ADT-00`` stat already sees.

Filesystems stamp mtimes with a coarse clock (ext4: one jiffy), so a directory changed twice
within one tick may keep its mtime.  Like git's "racy" index entries, an mtime younger than
``RACY_NS`` at scan time is stored as -1 and so re-read on the next run.  Files rewritten in place
(same name) change no directory mtime; ``fhir-gateway index --rebuild`` picks those up.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from storage.layout import Storage, short_id_folder
from storage.names import is_valid_date_folder, is_valid_patient_id

RACY_NS = 2_000_000_000
STATE_FORMAT = 2  # 2: short-id folders detected by storage.layout.short_id_folder


@dataclass
class Scan:
    """Result of one walk: the new state and what differs from the old one."""

    state: dict
    folders: dict[str, str] = field(default_factory=dict)  # pid -> storage-relative folder
    newest: dict[str, str] = field(default_factory=dict)  # changed pid -> newest date folder
    changed: list[str] = field(default_factory=list)  # new or modified patients
    removed: list[str] = field(default_factory=list)
    misplaced: dict[str, str] = field(default_factory=dict)  # pid -> reason


def empty_state(root: str) -> dict:
    return {"format": STATE_FORMAT, "root": root, "l1": {}, "l2": {}, "patients": {}}


def _dirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _stat_at(relpath: str, dir_fd: int) -> int | None:
    if dir_fd < 0:
        return None
    try:
        return os.stat(relpath, dir_fd=dir_fd).st_mtime_ns
    except OSError:
        return None


def _rank(pid: str, folder: str) -> int:
    """Preference among folders holding the same id: the order Storage.patient_dir tries."""
    parts = tuple(folder.split("/"))
    cands = Storage.candidate_dirs(pid)
    return cands.index(parts) if parts in cands else len(cands)


def _keep(m: int | None, racy: int) -> int:
    """An mtime worth remembering: -1 for none or one too recent to trust (racy-git rule)."""
    return m if m is not None and m < racy else -1


def _same(prev: list | None, m: int | None) -> bool:
    """A remembered ``[mtime, ...]`` entry still holds for a directory now at ``m``."""
    return prev is not None and bool(prev) and prev[0] == m and m is not None and prev[0] != -1


def _level2(p2: str, l1: str, l2: str, prev: list | None) -> tuple[int | None, str, list]:
    """(mtime, kind, children) of a level-2 directory: "p" a short id folder directly below
    level 1 (``<id>/<id>``, children = [id]), else "d" (children = level-3 names)."""
    m2 = _mtime(p2)
    if prev is not None and _same(prev, m2):
        return m2, prev[1], prev[2]
    kids = _dirs(p2)
    if is_valid_patient_id(l2) and short_id_folder(l1, l2, kids, p2):
        return m2, "p", [l2]
    return m2, "d", kids


def _find_patients(root: str, old: dict, new: dict, racy: int) -> dict[str, str]:
    """Levels 1-2 (re-listing only directories whose mtime changed): patient id -> folder,
    the preferred folder (:func:`_rank`) when one id is in several."""
    found: dict[str, str] = {}
    sep = os.sep
    for l1 in _dirs(root):
        p1 = root + sep + l1
        m1 = _mtime(p1)
        prev = old["l1"].get(l1)
        l2names = prev[1] if _same(prev, m1) else _dirs(p1)
        new["l1"][l1] = [_keep(m1, racy), l2names]
        for l2 in l2names:
            rel2 = l1 + "/" + l2
            m2, kind, kids = _level2(p1 + sep + l2, l1, l2, old["l2"].get(rel2))
            new["l2"][rel2] = [_keep(m2, racy), kind, kids]
            for pid in kids:
                folder = rel2 if kind == "p" else rel2 + "/" + pid
                if not is_valid_patient_id(pid):
                    continue
                if pid in found and _rank(pid, found[pid]) <= _rank(pid, folder):
                    continue
                found[pid] = folder
    return found


class _ParentDir:
    """An open descriptor of the current level-2 directory: patients are stat'ed relative to it
    (the kernel resolves 1-3 path components instead of the whole root path, twice per patient)."""

    def __init__(self, root: str) -> None:
        self.root, self.fd = root, -1
        self.path: str | None = None

    def stat(self, folder: str, below: str = "") -> int | None:
        up, _, leaf = folder.rpartition("/")
        if up != self.path:
            self.close()
            self.path = up
            try:
                self.fd = os.open(self.root + os.sep + up.replace("/", os.sep), os.O_RDONLY)
            except OSError:
                self.fd = -1
        return _stat_at(leaf + below, self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


def _newest_date(root: str, folder: str) -> str:
    dates = [d for d in _dirs(root + os.sep + folder.replace("/", os.sep))
             if d != "-" and is_valid_date_folder(d)]
    return dates[-1] if dates else ""


def _visit_patients(root: str, found: dict[str, str], old_p: dict, out: Scan, racy: int,
                    progress) -> None:
    """Level 3: each patient's folder and ``-/ADT-00`` mtimes; changed ids, newest date folder
    (re-listed only when the folder changed) and misplaced folders into ``out``."""
    patients = out.state["patients"]
    adt = os.sep + "-" + os.sep + "ADT-00"
    parent = _ParentDir(root)
    try:
        for n, (pid, folder) in enumerate(found.items()):
            pm = parent.stat(folder)
            am = parent.stat(folder, adt) or 0
            prev = old_p.get(pid) or []
            same_folder = bool(prev) and prev[0] == folder
            if same_folder and prev[1] == pm and pm is not None and prev[1] != -1:
                newest = prev[3]
            else:
                newest = _newest_date(root, folder)
            entry = [folder, _keep(pm, racy), _keep(am, racy), newest]
            # an unchanged patient keeps its old entry: the new state shares the old one's
            # objects instead of holding a second copy (a refresh at 20,000 patients)
            patients[pid] = prev if entry == prev else entry
            if not (same_folder and prev[1] == pm and prev[2] == am and prev[1] != -1
                    and prev[2] != -1):
                out.changed.append(pid)
                out.newest[pid] = newest  # (read for the patients (re-)indexed only)
            if folder != f"{pid[0:3]}/{pid[3:6]}/{pid}" and \
                    _rank(pid, folder) == len(Storage.candidate_dirs(pid)):
                out.misplaced[pid] = f"patient folder {folder} is not where the id {pid} belongs"
            if progress is not None and n % 1024 == 0:
                progress(n)
    finally:
        parent.close()


def scan(root: os.PathLike[str] | str, old: dict | None, progress=None) -> Scan:
    """Walk levels 1-3 of ``root`` and compare with ``old`` (a previous ``Scan.state``)."""
    root = os.fspath(root)
    if not old or old.get("format") != STATE_FORMAT or old.get("root") != root:
        old = empty_state(root)
    new = empty_state(root)
    racy = time.time_ns() - RACY_NS
    out = Scan(new)
    found = _find_patients(root, old, new, racy)
    _visit_patients(root, found, old["patients"], out, racy, progress)
    out.folders = found
    out.removed = [pid for pid in old["patients"] if pid not in found]
    return out
