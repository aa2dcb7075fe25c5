"""The SS-MIX2 standardized storage as a :class:`ResourceSource`: record ids, version chains and
a patient's folders, every file mapped through the shared byte-bounded cache.

Every call runs through the facility's failover (``with_storage``: the active root, retried on
the next one after an ``OSError``), so this module never chooses a root itself."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, TypeVar

from conformance import Query
from mappers.chart import assemble
from mappers.ids import parse_id
from storage.layout import Record, Storage, StoredFile, UnsafePath
from storage.names import FLAG_DELETED, NO_DATE, NO_ORDER, RecordKey, is_valid_patient_id
from storage.reader import ERROR, KIND_IO, KIND_MISPLACED, KIND_NAME, Problem

from .cache import Mapped, MappedCache, clinical_range
from .errors import BrokenResource, Gone, NotFound
from .listing import RACY_NS, DirCache, one_record, patient_records, patient_signature
from .readmap import read_and_map
from .resource_source import PatientPart, SearchResult
from .sources import data_types_for

T = TypeVar("T")
PATIENT_READS = 4096  # patients whose last read is remembered (a few hundred bytes each)
WithStorage = Callable[[Callable[[Storage], T]], T]


class StorageSource:
    """Patients, their records and every resource mapped from an SS-MIX2 file.  It owns every
    id no other source claims (it is asked last)."""

    name = "storage"
    types: frozenset[str] | None = None

    def __init__(self, code: str, cache: MappedCache, dirs: DirCache,
                 with_storage: WithStorage,
                 active: Callable[[], tuple[Storage, int]] | None = None) -> None:
        self.code = code
        self.cache = cache
        self.dirs = dirs
        self.with_storage = with_storage
        self.active = active  # the root reads go to now (the facility's failover), if known
        # patient id -> (root, ADT-00 folder, its mtime_ns, current file, version): where the
        # last Patient read found it (see _patient_again); small tuples, no resources
        self._patient_reads: dict[str, tuple[str, str, int, str, int]] = {}

    def owns(self, rtype: str, rid: str) -> bool:
        return True

    def search(self, rtype: str, query: Query) -> SearchResult | None:
        return None  # clinical data is searched per patient (FacilityService)

    # -- files --------------------------------------------------------------------------------
    def map_file(self, storage: Storage, f: StoredFile, version: int,
                 files: list | None = None) -> Mapped:
        """One stored file mapped (cached by path, size, mtime_ns and version)."""
        path = f"{storage.root}/{f.relpath}"  # relpath comes from a listing, not a request
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return Mapped((), (Problem(f.relpath, KIND_IO, "the file disappeared while reading"),))
        if files is not None:
            files.append((path, st.st_size, st.st_mtime_ns))
        key = (path, st.st_size, st.st_mtime_ns, version)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        resources, problems = read_and_map(Path(path), f.relpath, f.name, self.code, version)
        mapped = Mapped.build(resources, problems)
        self.cache.put(key, mapped)
        return mapped

    @staticmethod
    def reject_problem(f: StoredFile) -> Problem:
        if f.name is None:
            return Problem(f.relpath, KIND_NAME, f"file name breaks the SS-MIX2 rule: {f.name_error}")
        return Problem(f.relpath, KIND_MISPLACED, f"file is in the wrong folder: {f.misplaced}")

    @staticmethod
    def current(rec: Record) -> tuple[StoredFile, int] | None:
        cur = rec.current
        if cur is None:
            return None
        return cur, rec.versions.index(cur) + 1

    # -- the patient --------------------------------------------------------------------------
    def patient_exists(self, pid: str) -> bool:
        if not is_valid_patient_id(pid):
            return False
        return self.with_storage(lambda s: s.has_patient(pid))

    def signature(self, pid: str, types: set[str] | None = None) -> tuple[object, bool]:
        """(root and folder mtimes of the data types ``types`` come from, cacheable); the
        signature is None when the patient has no folder."""
        dtypes = data_types_for(types)

        def run(storage: Storage) -> tuple[object, bool] | None:
            if dtypes == []:
                return (str(storage.root), ("-",)), False
            sig, racy = patient_signature(storage, self.dirs, pid, dtypes)
            if sig is None:
                return None  # falsy: with_storage checks whether the root was emptied
            return (str(storage.root), sig), racy

        found = self.with_storage(run)
        if found is None:
            return None, False
        return found[0], not found[1]

    def for_patient(self, pid: str, types: set[str] | None = None,
                    files: list | None = None) -> PatientPart:
        dtypes = data_types_for(types)

        def run(storage: Storage) -> PatientPart:
            part = PatientPart([], when=[])
            if dtypes == []:
                return part
            records, rejects = patient_records(storage, self.dirs, pid, dtypes)
            part.problems.extend(self.reject_problem(f) for f in rejects)
            part.files += len(rejects)
            for rkey in sorted(records):
                rec = records[rkey]
                part.files += len(rec.versions)
                cur = self.current(rec)
                if cur is None:
                    continue
                m = self.map_file(storage, *cur, files=files)
                part.cost += m.cost
                part.problems.extend(m.problems)
                for r, w in zip(m.resources, m.when):
                    if types is None or r.get("resourceType") in types:
                        part.resources.append(r)
                        part.when.append(w)  # type: ignore[union-attr]
            keep, replaced = assemble(part.resources)  # closed visits, one entry per allergen
            if replaced or len(keep) != len(part.resources):
                when = part.when or []
                part.when = [clinical_range(replaced[i]) if i in replaced else when[i]
                             for i in keep]
                part.resources = [replaced.get(i, part.resources[i]) for i in keep]
            return part

        return self.with_storage(run)

    def derived_patient(self, patient_id: str,
                        listed: tuple[Storage, dict[RecordKey, Record]] | None = None
                        ) -> dict | None:
        """A Patient from the newest readable PID of the folder, when it has no usable ADT-00
        (``fhir_gateway.index.summary.derived_patient``, which the index's stubs use too).
        ``listed``: the storage and *all* the patient's records, when the caller has just
        listed them (the export: not listed twice)."""
        from fhir_gateway.index.summary import derived_patient
        if not is_valid_patient_id(patient_id):  # no folder can be named by it
            return None
        if listed is not None:
            return derived_patient(listed[0], patient_id, self.code, listed[1])

        def run(storage: Storage) -> dict | None:
            records, _ = patient_records(storage, self.dirs, patient_id)
            return derived_patient(storage, patient_id, self.code, records)

        return self.with_storage(run)

    # -- instance level -----------------------------------------------------------------------
    def record(self, rtype: str, rid: str) -> tuple[Storage, Record]:
        if rtype == "Patient":
            if not is_valid_patient_id(rid):
                raise NotFound(f"Patient/{rid} is not a valid id")
            key = RecordKey(rid, NO_DATE, "ADT-00", NO_ORDER)
        else:
            parsed = parse_id(rid)
            if parsed is None:
                raise NotFound(f"{rtype}/{rid} is not an id of this server")
            if parsed.key is None:
                return self._hashed_record(rtype, rid, parsed.patient_id)
            key = parsed.key

        def run(storage: Storage) -> tuple[Storage, Record]:
            try:
                rec = one_record(storage, self.dirs, key)
            except UnsafePath:
                rec = None
            if rec is None:
                raise NotFound(f"{rtype}/{rid} not found")
            return storage, rec

        return self.with_storage(run)

    def _hashed_record(self, rtype: str, rid: str, pid: str) -> tuple[Storage, Record]:
        """A shortened (hashed) id: scan that one patient's records of the type."""
        dtypes = data_types_for({rtype})

        def run(storage: Storage) -> tuple[Storage, Record]:
            records, _ = patient_records(storage, self.dirs, pid, dtypes)
            for rec in records.values():
                for i, f in enumerate(rec.versions):
                    if any(r.get("id") == rid for r in self.map_file(storage, f, i + 1).resources):
                        return storage, rec
            raise NotFound(f"{rtype}/{rid} not found")

        return self.with_storage(run)

    @staticmethod
    def _find(m: Mapped, rtype: str, rid: str) -> dict | None:
        for r in m.resources:
            if r.get("resourceType") == rtype and r.get("id") == rid:
                return r
        return None

    def read(self, rtype: str, rid: str) -> dict:
        if rtype == "Patient" and rid in self._patient_reads:
            again = self._patient_again(rid)
            if again is not None:
                return again
        folder_mtime = self._folder_mtime(rid) if rtype == "Patient" else None
        try:
            storage, rec = self.record(rtype, rid)
        except NotFound:
            derived = self.derived_patient(rid) if rtype == "Patient" else None
            if derived is None:
                raise
            return derived
        cur = self.current(rec)
        if cur is None:
            if rec.deleted:
                raise Gone(f"{rtype}/{rid} was deleted")
            raise NotFound(f"{rtype}/{rid} has no current version")
        m = self.map_file(storage, *cur)
        found = self._find(m, rtype, rid)
        if found is None:
            errors = [p for p in m.problems if p.severity == ERROR]
            derived = self.derived_patient(rid) if rtype == "Patient" else None
            if derived is not None:  # an unreadable ADT-00 must not hide the chart
                return derived
            if errors:
                raise BrokenResource(errors)
            raise NotFound(f"{rtype}/{rid} not found")
        if folder_mtime is not None:
            self._remember_patient(rid, storage, cur, folder_mtime)
        return found

    # -- the Patient read again (the hottest request of the API) ------------------------------
    @staticmethod
    def _adt_folder(storage: Storage, pid: str) -> str | None:
        """The patient's ADT-00 folder when the layout gives the id one candidate folder (ids
        of 6+ characters); None for the others, which take the full path every time."""
        cands = storage.candidate_dirs(pid)
        if len(cands) != 1:
            return None
        return "/".join((str(storage.root), *cands[0], NO_DATE, "ADT-00"))

    def _folder_mtime(self, pid: str) -> tuple[str, int] | None:
        """(root, mtime_ns of the patient's ADT-00 folder) taken *before* the full read lists
        it, so a change during the read leaves the remembered mtime stale (never too new)."""
        def run(storage: Storage) -> tuple[tuple[str, int] | None]:
            folder = self._adt_folder(storage, pid) if is_valid_patient_id(pid) else None
            if folder is None:
                return (None,)
            try:
                return ((str(storage.root), os.stat(folder).st_mtime_ns),)
            except (FileNotFoundError, NotADirectoryError):
                return (None,)
        return self.with_storage(run)[0]

    def _remember_patient(self, pid: str, storage: Storage, cur: tuple[StoredFile, int],
                          before: tuple[str, int]) -> None:
        root, mtime = before
        path = f"{storage.root}/{cur[0].relpath}"
        folder = self._adt_folder(storage, pid)
        if (root != str(storage.root) or path.rsplit("/", 1)[0] != folder
                or time.time_ns() - mtime <= RACY_NS):
            return  # another root, a file elsewhere, or a folder that may change unnoticed
        if len(self._patient_reads) >= PATIENT_READS:
            self._patient_reads.clear()
        self._patient_reads[pid] = (root, folder, mtime, path, cur[1])

    def _patient_again(self, pid: str) -> dict | None:
        """The Patient the last full read of ``pid`` found, when nothing it depended on changed:
        the active root is the same, the ADT-00 folder's mtime is (no version added, removed or
        renamed — a deletion flag is a rename) and the current file's (size, mtime) still key a
        cached mapping (not rewritten in place).  Two ``stat`` calls instead of a listing;
        None means "take the full path" (which remembers the answer again)."""
        memo = self._patient_reads.get(pid)
        if memo is None:
            return None
        root, folder, mtime, path, version = memo

        def run(storage: Storage) -> tuple[dict | None]:
            if str(storage.root) != root:
                return (None,)
            try:
                if os.stat(folder).st_mtime_ns != mtime:
                    return (None,)
                st = os.stat(path)
            except OSError:  # gone, or an I/O error: the full path decides (and fails over)
                return (None,)
            if time.time_ns() - st.st_mtime_ns <= RACY_NS:
                return (None,)  # just written: the size and mtime may not tell yet
            m = self.cache.get((path, st.st_size, st.st_mtime_ns, version))
            return (self._find(m, "Patient", pid) if m is not None else None,)

        # both stats succeeding under the active root is the proof that the root is there, so
        # with the facility's active() the failover wrapper's own root check is not needed
        found = (run(self.active()[0]) if self.active is not None else self.with_storage(run))[0]
        if found is None:
            self._patient_reads.pop(pid, None)
        return found

    def vread(self, rtype: str, rid: str, vid: str) -> dict:
        storage, rec = self.record(rtype, rid)
        if not vid.isdigit() or not 1 <= int(vid) <= len(rec.versions):
            raise NotFound(f"{rtype}/{rid} has no version {vid}")
        f = rec.versions[int(vid) - 1]
        if f.name.flag == FLAG_DELETED:  # type: ignore[union-attr]
            raise Gone(f"version {vid} of {rtype}/{rid} is a deletion")
        found = self._find(self.map_file(storage, f, int(vid)), rtype, rid)
        if found is None:
            raise NotFound(f"{rtype}/{rid} has no version {vid}")
        return found

    def history(self, rtype: str, rid: str) -> list[dict]:
        """Every mapped version of the resource, newest first (FHIR history order)."""
        storage, rec = self.record(rtype, rid)
        out = []
        for i, f in enumerate(rec.versions):
            found = self._find(self.map_file(storage, f, i + 1), rtype, rid)
            if found is not None:
                out.append(found)
        if not out:
            if rec.deleted:
                raise Gone(f"{rtype}/{rid} was deleted")
            raise NotFound(f"{rtype}/{rid} not found")
        out.sort(key=lambda r: int(r.get("meta", {}).get("versionId", "0")), reverse=True)
        return out
