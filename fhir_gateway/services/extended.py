"""The facility's extended storage (拡張ストレージ) in the patient compartment.

Content folders are listed with ``storage.extended.ExtendedStorage`` and mapped with
``mappers.extended.map_extended_folder`` (a DocumentReference, plus vital-sign Observations for an
ORU^R30 main document), cached in the shared :class:`MappedCache` by the folder's path and mtime
and each file's size and mtime.  Several ``extended`` roots are read in order and merged by id
(the first root wins), so a configured copy does not duplicate documents.

Ids are ``{patient}.{date}.EXT.{hash}[.{OBX}]`` (``mappers.extended.extended_id``): a hash is
not invertible, so an id is resolved by listing that patient's one date folder."""

from __future__ import annotations

import logging
import os
import time
from typing import Iterable

from fhir_gateway.config import Facility
from mappers.extended import ExtendedContext, extended_id, map_extended_folder, \
    parse_extended_id
from storage.extended import ContentFolder, ExtendedRecord, ExtendedStorage
from storage.layout import UnsafePath
from storage.names import FLAG_DELETED, is_valid_patient_id
from storage.reader import KIND_IO, KIND_MISPLACED, KIND_NAME, WARNING, Problem

from conformance import Query

from .cache import Mapped, MappedCache
from .errors import Gone, NotFound
from .listing import RACY_NS
from .readmap import map_safely
from .resource_source import PatientPart, SearchResult

log = logging.getLogger(__name__)

# The resource types the extended storage can yield (a search of other types skips it).
TYPES = frozenset({"DocumentReference", "Observation"})
PREFIX = "extended/"


def is_extended_id(rid: str) -> bool:
    return parse_extended_id(rid) is not None


class ExtendedSource:
    """A :class:`~fhir_gateway.services.resource_source.ResourceSource` (cached)."""

    name = "extended"
    types: frozenset[str] | None = TYPES

    def __init__(self, facility: Facility, cache: MappedCache) -> None:
        self.code = facility.code
        self.cache = cache
        self.roots = [ExtendedStorage(r) for r in facility.extended]

    def __bool__(self) -> bool:
        return bool(self.roots)

    def owns(self, rtype: str, rid: str) -> bool:
        return is_extended_id(rid)

    def search(self, rtype: str, query: Query) -> SearchResult | None:
        return None  # documents are searched per patient

    # -- listing ------------------------------------------------------------------------------
    def _records(self, pid: str, dates: Iterable[str] | None = None
                 ) -> Iterable[tuple[ExtendedStorage, dict, list[ContentFolder]]]:
        for ext in self.roots:
            try:
                recs, rejects = ext.records(pid, dates=dates)
            except (OSError, UnsafePath) as exc:
                log.warning("extended storage %s unreadable: %s", ext.root, exc)
                continue
            yield ext, recs, rejects

    def signature(self, pid: str, types: set[str] | None = None) -> tuple[object, bool]:
        """(signature, cacheable): folder mtimes of the patient's extended storage (patient, date,
        data-type and content folders) — any added, removed or renamed folder or file changes
        one of them; not cacheable when one changed too recently to trust (services.listing)."""
        out: list = []
        for ext in self.roots:
            try:
                pdir = ext.patient_dir(pid)
            except UnsafePath:
                pdir = None
            if pdir is None:
                out.append(None)
                continue
            out.append(_tree_mtimes(str(pdir), 3))
        sig = tuple(out)
        return sig, time.time_ns() - _newest(sig) > RACY_NS

    # -- mapping ------------------------------------------------------------------------------
    def _map(self, ext: ExtendedStorage, folder: ContentFolder, version: int,
             seen_files: list | None = None, keep: bool = True) -> Mapped:
        """The folder's resources, through the mapped-file cache (``keep`` False: neither
        looked up nor stored, for work that reads every folder once — the bulk export)."""
        base = f"{ext.root}/{folder.relpath}"
        try:
            stats = tuple((n, *_stat(f"{base}/{n}")) for n in folder.files)
            key = ("ext", base, os.stat(base).st_mtime_ns, stats, version)
            if seen_files is not None:
                seen_files.extend((f"{base}/{n}", size, mt) for n, size, mt in stats)
        except OSError as exc:
            return Mapped((), (Problem(PREFIX + folder.relpath, KIND_IO,
                                       f"the folder disappeared while reading: {exc}"),))
        hit = self.cache.get(key) if keep else None
        if hit is not None:
            return hit
        main = folder.main
        problems: list[Problem] = []

        def load_and_map() -> list[dict]:
            files = ext.load(folder, with_data=[main[0]] if main and main[1] == "hl7" else [])
            problems.extend(Problem(f"{PREFIX}{folder.relpath}/{f.name}", KIND_IO, f.error,
                                    WARNING) for f in files if f.error)
            return map_extended_folder(folder, ExtendedContext(
                self.code, tuple(files), version, PREFIX, folder))

        resources, more = map_safely(PREFIX + folder.relpath, load_and_map)
        problems += more
        if not keep:
            return Mapped(tuple(resources), tuple(problems))
        m = Mapped.build(resources, problems)
        self.cache.put(key, m)
        return m

    @staticmethod
    def _reject(cf: ContentFolder) -> Problem:
        if cf.name is None:
            return Problem(PREFIX + cf.relpath, KIND_NAME,
                           f"content folder name breaks the SS-MIX2 rule: {cf.name_error}")
        return Problem(PREFIX + cf.relpath, KIND_MISPLACED,
                       f"content folder is in the wrong place: {cf.misplaced}")

    def for_patient(self, pid: str, types: set[str] | None = None, files: list | None = None,
                    dates: Iterable[str] | None = None, keep: bool = True) -> PatientPart:
        """Current documents (and their vital signs) of a patient (``files`` counts folders);
        the (path, size, mtime_ns) of every file read are appended to ``files``.  ``dates``:
        only those date folders (a ``$everything`` page); ``keep`` False: not through the
        mapped-file cache (see :meth:`_map`)."""
        if not self.roots or (types is not None and not types & TYPES):
            return PatientPart([])
        out: list[dict] = []
        problems: list[Problem] = []
        seen: set[tuple[str, str]] = set()
        folders = 0
        for ext, recs, rejects in self._records(pid, dates):
            problems.extend(self._reject(cf) for cf in rejects)
            folders += len(rejects)
            for key in sorted(recs):
                rec = recs[key]
                folders += len(rec.versions)
                cur = rec.current
                if cur is None:
                    continue
                m = self._map(ext, cur, rec.versions.index(cur) + 1, files, keep)
                problems.extend(m.problems)
                for r in m.resources:
                    k = (r.get("resourceType", ""), r.get("id", ""))
                    if (types is None or k[0] in types) and k not in seen:
                        seen.add(k)
                        out.append(r)
        return PatientPart(out, problems, folders)

    # -- instance level -----------------------------------------------------------------------
    def record(self, rid: str) -> tuple[ExtendedStorage, ExtendedRecord] | None:
        """The document an extended id belongs to (its patient's date folder is listed)."""
        parsed = parse_extended_id(rid)
        if parsed is None or not is_valid_patient_id(parsed.patient_id):
            return None
        doc_id = ".".join(rid.split(".")[:4])
        for ext, recs, _ in self._records(parsed.patient_id, [parsed.date]):
            for rec in recs.values():
                if rec.versions and extended_id(rec.versions[-1].name) == doc_id:
                    return ext, rec
        return None

    def content(self, rid: str, name: str | None = None) -> tuple[str, list[str], bytes]:
        """(file name, every file name, bytes) of a file of the current version of the document
        holding ``rid``: the main document when ``name`` is None.  Names come from the folder
        listing, never from the request, so nothing escapes the storage root."""
        found = self.record(rid)
        cur = found[1].current if found is not None else None
        if found is None or cur is None:
            raise NotFound(f"{rid} not found")
        ext = found[0]
        names = list(cur.files)
        wanted = name if name is not None else (cur.main[0] if cur.main else (names[:1] or [""])[0])
        if wanted not in names:
            raise NotFound(f"{rid} has no file {name!r}")
        for f in ext.load(cur, with_data=[wanted]):
            if f.name == wanted and f.data is not None:
                return wanted, names, f.data
        raise NotFound(f"{rid}: {wanted} cannot be read")

    def versions(self, rid: str) -> tuple[ExtendedRecord, list[tuple[ContentFolder, dict | None]]]:
        """Every version of the record holding ``rid`` with the resource in it (or None)."""
        found = self.record(rid)
        if found is None:
            raise NotFound(f"{rid} not found")
        ext, rec = found
        out = []
        for i, cf in enumerate(rec.versions):
            m = self._map(ext, cf, i + 1)
            out.append((cf, next((r for r in m.resources if r.get("id") == rid), None)))
        return rec, out

    def read(self, rtype: str, rid: str) -> dict:
        found = self.record(rid)
        if found is None:
            raise NotFound(f"{rtype}/{rid} not found")
        ext, rec = found
        cur = rec.current
        if cur is None:
            if rec.deleted:
                raise Gone(f"{rtype}/{rid} was deleted")
            raise NotFound(f"{rtype}/{rid} has no current version")
        m = self._map(ext, cur, rec.versions.index(cur) + 1)
        for r in m.resources:
            if r.get("resourceType") == rtype and r.get("id") == rid:
                return r
        raise NotFound(f"{rtype}/{rid} not found")

    def vread(self, rtype: str, rid: str, vid: str) -> dict:
        rec, versions = self.versions(rid)
        if not vid.isdigit() or not 1 <= int(vid) <= len(versions):
            raise NotFound(f"{rtype}/{rid} has no version {vid}")
        cf, r = versions[int(vid) - 1]
        if cf.name is not None and cf.name.flag == FLAG_DELETED:
            raise Gone(f"version {vid} of {rtype}/{rid} is a deletion")
        if r is None or r.get("resourceType") != rtype:
            raise NotFound(f"{rtype}/{rid} has no version {vid}")
        return r

    def history(self, rtype: str, rid: str) -> list[dict]:
        rec, versions = self.versions(rid)
        out = [r for _, r in reversed(versions) if r is not None and r.get("resourceType") == rtype]
        if not out:
            if rec.deleted:
                raise Gone(f"{rtype}/{rid} was deleted")
            raise NotFound(f"{rtype}/{rid} not found")
        return out


def _stat(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _newest(sig: object) -> int:
    if isinstance(sig, int):
        return sig
    if isinstance(sig, tuple):
        return max((_newest(x) for x in sig), default=0)
    return 0


def _tree_mtimes(path: str, depth: int) -> tuple:
    """(mtime_ns, sub-folder signatures...) of ``path`` down to ``depth`` levels."""
    try:
        mt = os.stat(path).st_mtime_ns
        if depth == 0:
            return (mt,)
        with os.scandir(path) as it:
            subs = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return (None,)
    return (mt,) + tuple((n, _tree_mtimes(f"{path}/{n}", depth - 1)) for n in subs)
