"""Version chains: the condition flags of one record's files must tell one consistent story.

A record (patient + date folder + data type + order number) has at most one current (flag 1)
file; superseded (flag 2) files need a current or deleted successor; a record deleted (flag 0) and
later written again as flag 1 is legal for some vendors but hides a cancel, so it is a warning.
"""

from __future__ import annotations

from storage.layout import Record, StoredFile
from storage.names import FLAG_DELETED, FLAG_SUPERSEDED, RecordKey

from .kinds import ERROR, KIND_VERSION_CHAIN, WARNING, problem


def claimed_by_rejects(rejects: list[StoredFile]) -> tuple[set[RecordKey], set[str]]:
    """What unusable files of a patient may be versions of: the record keys of misplaced files
    (and ``folder/*order`` for the folder they sit in: a name that says another patient), and the
    ``folder/patient_date_type_order_`` prefixes of files whose name breaks the rule."""
    keys: set[RecordKey] = set()
    prefixes: set[str] = set()
    for f in rejects:
        folder, _, base = f.relpath.rpartition("/")
        if f.name is not None:  # its own record, and the record of the folder it sits in
            keys.add(f.name.key)
            prefixes.add(f"{folder}/*{f.name.order_no}")
        else:
            parts = base.split("_")
            if len(parts) >= 4:
                prefixes.add(f"{folder}/{'_'.join(parts[:4])}_")
    return keys, prefixes


def _explained(rec: Record, claimed: tuple[set[RecordKey], set[str]]) -> bool:
    """A missing current version is already reported when a misplaced or badly named file of
    the same record exists (one cause, one finding: fixing that file repairs the chain)."""
    keys, prefixes = claimed
    if rec.key in keys:
        return True
    f = rec.versions[0]
    folder, _, base = f.relpath.rpartition("/")
    return (f"{folder}/{'_'.join(base.split('_')[:4])}_" in prefixes
            or f"{folder}/*{rec.key.order_no}" in prefixes)


def check_chain(rec: Record, claimed: tuple[set[RecordKey], set[str]] = (set(), set())) -> list[dict]:
    out: list[dict] = []
    currents = rec.currents
    if len(currents) > 1:
        newest = currents[-1]
        others = ", ".join(c.relpath.rsplit("/", 1)[-1] for c in currents[:-1])
        out.append(problem(newest.relpath, KIND_VERSION_CHAIN,
                           f"{len(currents)} current (flag 1) files for one record; the newest is "
                           f"served, the others should have been renamed to flag 2: {others}",
                           WARNING))
    flags = [v.name.flag for v in rec.versions]  # type: ignore[union-attr]
    if not currents and FLAG_DELETED not in flags and FLAG_SUPERSEDED in flags \
            and not _explained(rec, claimed):
        latest = rec.versions[-1]
        out.append(problem(latest.relpath, KIND_VERSION_CHAIN,
                           f"{flags.count(FLAG_SUPERSEDED)} superseded (flag 2) files but no current "
                           "(flag 1) or deleted (flag 0) file: the record cannot be shown", ERROR))
    if currents and FLAG_DELETED in flags:
        deleted = [v for v in rec.versions if v.name.flag == FLAG_DELETED]  # type: ignore[union-attr]
        last_del = deleted[-1]
        recreated = [c for c in currents
                     if c.name.sort_key[0] > last_del.name.sort_key[0]]  # type: ignore[union-attr]
        if recreated:
            out.append(problem(recreated[-1].relpath, KIND_VERSION_CHAIN,
                               "record was deleted (flag 0) and later re-created (flag 1): "
                               f"deleted by {last_del.relpath.rsplit('/', 1)[-1]}", WARNING))
    return out
