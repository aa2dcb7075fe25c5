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
    newest: dict[str, str] = field(default_factory=dict)  # pid -> newest date folder ("" none)
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


def scan(root: os.PathLike[str] | str, old: dict | None, progress=None) -> Scan:
    """Walk levels 1-3 of ``root`` and compare with ``old`` (a previous ``Scan.state``)."""
    root = os.fspath(root)
    if not old or old.get("format") != STATE_FORMAT or old.get("root") != root:
        old = empty_state(root)
    new = empty_state(root)
    racy = time.time_ns() - RACY_NS
    keep = lambda m: m if m is not None and m < racy else -1  # noqa: E731
    old_l1, old_l2, old_p = old["l1"], old["l2"], old["patients"]
    out = Scan(new)
    found: dict[str, str] = {}
    sep = os.sep
    for l1 in _dirs(root):
        p1 = root + sep + l1
        m1 = _mtime(p1)
        prev = old_l1.get(l1)
        l2names = prev[1] if prev and prev[0] == m1 and m1 is not None and prev[0] != -1 else _dirs(p1)
        new["l1"][l1] = [keep(m1), l2names]
        for l2 in l2names:
            rel2 = l1 + "/" + l2
            p2 = p1 + sep + l2
            m2 = _mtime(p2)
            prev = old_l2.get(rel2)
            if prev and prev[0] == m2 and m2 is not None and prev[0] != -1:
                kind, kids = prev[1], prev[2]
            else:
                kids = _dirs(p2)
                if is_valid_patient_id(l2) and short_id_folder(l1, l2, kids, p2):
                    kind, kids = "p", [l2]  # short id directly below level 1: <id>/<id>
                else:
                    kind = "d"
            new["l2"][rel2] = [keep(m2), kind, kids]
            for pid in kids:
                folder = rel2 if kind == "p" else rel2 + "/" + pid
                if not is_valid_patient_id(pid):
                    continue
                if pid in found and _rank(pid, found[pid]) <= _rank(pid, folder):
                    continue
                found[pid] = folder
    patients = new["patients"]
    changed, newest_of, misplaced = out.changed, out.newest, out.misplaced
    adt = "-" + sep + "ADT-00"
    parent_fd, parent = -1, None
    try:
        for n, (pid, folder) in enumerate(found.items()):
            # stat relative to the level-2 directory: the kernel resolves 1-3 path components
            # instead of the whole root path, twice per patient.
            up, _, leaf = folder.rpartition("/")
            if up != parent:
                if parent_fd >= 0:
                    os.close(parent_fd)
                parent = up
                try:
                    parent_fd = os.open(root + sep + up.replace("/", sep), os.O_RDONLY)
                except OSError:
                    parent_fd = -1
            pm = _stat_at(leaf, parent_fd)
            am = _stat_at(leaf + sep + adt, parent_fd) or 0
            prev = old_p.get(pid)
            same_folder = prev is not None and prev[0] == folder
            if same_folder and prev[1] == pm and pm is not None and prev[1] != -1:
                newest = prev[3]
            else:
                dates = [d for d in _dirs(root + sep + folder.replace("/", sep))
                         if d != "-" and is_valid_date_folder(d)]
                newest = dates[-1] if dates else ""
            patients[pid] = [folder, keep(pm), keep(am), newest]
            if not (same_folder and prev[1] == pm and prev[2] == am and prev[1] != -1
                    and prev[2] != -1):
                changed.append(pid)
            newest_of[pid] = newest
            if folder != f"{pid[0:3]}/{pid[3:6]}/{pid}" and \
                    _rank(pid, folder) == len(Storage.candidate_dirs(pid)):
                misplaced[pid] = f"patient folder {folder} is not where the id {pid} belongs"
            if progress is not None and n % 1024 == 0:
                progress(n)
    finally:
        if parent_fd >= 0:
            os.close(parent_fd)
    out.folders = found
    out.removed = [pid for pid in old_p if pid not in found]
    return out
