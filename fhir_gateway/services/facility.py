"""One facility's data as FHIR: read, vread, history, search and the patient compartment.

Every read goes through the replica set (primary first, then mirrors); an ``OSError`` marks the
root failed and the call is retried on the next one.  Files are stat'ed on every request and
mapped through a shared byte-bounded cache.  Broken files never raise: they come back as
:class:`storage.reader.Problem` beside the resources that could be read."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Protocol, TypeVar

from conformance import Query, registry
from fhir_gateway.config import Facility
from mappers.chart import EXT_CHANGED_BY
from mappers.extended import parse_extended_id
from mappers.ids import parse_id
from storage.layout import Record, Storage
from storage.names import RecordKey, is_valid_patient_id
from storage.reader import ERROR, Problem
from storage.replicas import ReplicaSet

from . import match
from .cache import (
    Compartment, CompartmentCache, MappedCache, clinical_range, release_freed_memory,
)
from .claims import ClaimSource, is_receipt_patient_id
from .errors import (  # noqa: F401 - re-exported for callers of the old home
    BrokenResource, Gone, NotFound, PatientRequired, ServiceError, StorageUnavailable,
)
from .extended import ExtendedSource
from .listing import DirCache
from .plugins import PatientSource, PluginSource, ResourceReader
from .resource_source import CachedSource, PatientData, ResourceSource, SearchResult, yields
from .ssmix import StorageSource

log = logging.getLogger(__name__)
T = TypeVar("T")


class HoldsResources(Protocol):
    """What :meth:`FacilityService._extras` needs of a compartment: its resources (is a Patient
    among them?) — a :class:`Compartment`, or ``everything``'s stand-in."""

    @property
    def resources(self) -> tuple[dict, ...]: ...


class FacilityService:
    """One facility: failover over its storage roots, the compartment cache, the patient index,
    and the :class:`ResourceSource` s it composes (an id is answered by the one that owns it)."""

    def __init__(self, facility: Facility, cache: MappedCache, data_dir=None,
                 index_factory: Callable[["FacilityService"], object] | None = None) -> None:
        self.facility = facility
        self.code = facility.code
        self.cache = cache
        self.data_dir = data_dir
        self.replicas = ReplicaSet(facility.storage)
        # the other caches take a share of the mapped-file budget (docs/performance.md "Memory")
        self.dirs = DirCache(max_bytes=max(2 << 20, cache.max_bytes // 8))
        self.compartments = CompartmentCache(max_bytes=cache.max_bytes // 4)
        from .everything import SortOrders
        self.sort_orders = SortOrders()  # sorted one-patient searches of large charts
        self._index = None
        self._index_factory = index_factory
        self.storage = StorageSource(self.code, cache, self.dirs, self._with_storage,
                                     self.replicas.active)
        self.claims = ClaimSource(facility, cache, self.storage.patient_exists,
                                  Path(data_dir) if data_dir is not None else None)
        self.extended = ExtendedSource(facility, cache)
        self.plugins = PluginSource(self.code)
        # asked in this order for an id (storage last: it owns every id the others do not);
        # the cached ones make up the compartment cache (storage first: see Compartment)
        self.sources: list[ResourceSource] = [self.claims, self.extended, self.plugins,
                                              self.storage]

    # -- hooks --------------------------------------------------------------------------------
    def add_patient_source(self, fn: PatientSource) -> None:
        """Extra resources of a patient (e.g. the viewer's memos): ``fn(facility_code, pid)``."""
        self.plugins.sources.append(fn)

    def add_resource_reader(self, fn: ResourceReader) -> None:
        """Resolve ids that are not storage ids (e.g. ``DocumentReference/memo-…``)."""
        self.plugins.readers.append(fn)

    def source_of(self, rtype: str, rid: str) -> ResourceSource:
        """The one source that owns ``rtype/rid``."""
        return next(s for s in self.sources if s.owns(rtype, rid))

    @property
    def index(self):
        if self._index is None:
            self._index = (self._index_factory or default_index)(self)
        return self._index

    def index_health(self) -> dict | None:
        """The patient index's health once it is open (None before: never opened for this)."""
        return self._index.health() if self._index is not None else None

    def storage_status(self, full: bool = True) -> dict:
        """Which root serves reads (for the ``X-Storage-Root`` header and the viewer banner)."""
        _, i = self.replicas.active()
        out: dict = {"active": i, "failed_over": i != 0}
        if full:
            out["roots"] = self.replicas.status()
        return out

    def _with_storage(self, fn: Callable[[Storage], T]) -> T:
        """Run ``fn`` on the active root; on an I/O error, or when the root has vanished (renamed,
        unmounted: lookups then answer "absent" instead of raising), fail over and retry."""
        tried: set[int] = set()
        while True:
            storage, i = self.replicas.active()
            if i in tried:
                raise StorageUnavailable("no storage root is readable")
            tried.add(i)
            try:
                result = fn(storage)
            except OSError as exc:
                log.warning("storage root %d failed: %s", i, exc)
                self.replicas.report_failure(i, str(exc))
                continue
            except NotFound:
                gone = self._root_gone(storage, i)
                if gone is None:
                    raise
                self.replicas.report_failure(i, gone)
                continue
            # an empty answer may come from an emptied (unmounted) root: look closer then
            gone = self._root_gone(storage, i, deep=not result)
            if gone is None:
                return result
            log.warning("storage root %d vanished: %s", i, gone)
            self.replicas.report_failure(i, gone)

    def _root_gone(self, storage: Storage, i: int, deep: bool = True) -> str | None:
        """Why root ``i`` cannot be trusted any more (missing, not a folder, emptied after it
        held data), or None.  One stat; ``deep`` adds one directory entry (emptied mount)."""
        root = str(storage.root)
        if not os.path.isdir(root):
            return f"{root} is missing or not a directory"
        if deep and self.replicas.states[i].seen_data:
            try:
                with os.scandir(root) as it:
                    if next((e for e in it if not e.name.startswith(".")), None) is None:
                        return f"{root} is empty now (not mounted?)"
            except OSError as exc:
                return str(exc)
        return None

    # -- listing (through failover) -------------------------------------------------------------
    def patient_ids(self) -> list[str]:
        """Every patient folder of the active root, sorted (a walk: small trees, fallbacks)."""
        return self._with_storage(lambda s: sorted(s.patient_ids()))

    def care_dates(self, pid: str) -> list[str]:
        """The patient's date folders (YYYYMMDD) on the active root."""
        return self._with_storage(lambda s: s.dates(pid))

    # -- the patient compartment --------------------------------------------------------------
    def patient_exists(self, pid: str) -> bool:
        """A patient folder, or a receipt-built Patient (``Patient/uke-…``, services.claims)."""
        return self.storage.patient_exists(pid) or self.claims.owns("Patient", pid)

    def _receipt_patient(self, pid: str) -> dict | None:
        """The receipt-built Patient ``pid`` (an id no patient folder has), else None."""
        if not self.claims.owns("Patient", pid):
            return None
        try:
            return self.claims.read("Patient", pid)
        except NotFound:
            return None

    def _compartment(self, patient_id: str, types: set[str] | None) -> Compartment:
        """The patient's resources of ``types`` (None = all) from the cached sources (SS-MIX2,
        extended storage), reused while their signatures (folder mtimes) are unchanged."""
        parts = [s for s in self.sources
                 if isinstance(s, CachedSource) and s and yields(s, types)]
        parts.sort(key=lambda s: s is not self.storage)
        signed = [s.signature(patient_id, types) for s in parts]
        full = tuple(sig for sig, _ in signed)
        key = (patient_id, frozenset(types) if types is not None else None)
        hit = self.compartments.get(key, full)
        if hit is not None:
            return hit
        resources: list[dict] = []
        when: list = []
        problems: list[Problem] = []
        files: list[tuple[str, int, int]] = []
        nfiles = cost = 0
        for src in parts:
            part = src.for_patient(patient_id, types, files)
            resources.extend(part.resources)
            when.extend(part.when if part.when is not None
                        else (clinical_range(r) for r in part.resources))
            problems.extend(part.problems)
            nfiles += part.files
            cost += part.cost
        comp = Compartment(full, tuple(resources), tuple(when), tuple(problems), nfiles,
                           tuple(files), cost=cost)
        # kept within the compartment cache's own byte bound (CompartmentCache.put)
        if all(ok for _, ok in signed):
            self.compartments.put(key, comp)
        return comp

    def _extras(self, patient_id: str, types: set[str] | None, data: PatientData,
                comp: HoldsResources | None = None, with_claims: bool = True) -> None:
        """The sources that are not cached (receipts, plug-ins such as memos) and, for a folder
        without a usable ADT-00, the Patient built from PID: appended to ``data``."""
        if (comp is not None and (types is None or "Patient" in types)
                and not any(r.get("resourceType") == "Patient" for r in comp.resources)):
            derived = self.derived_patient(patient_id) or self._receipt_patient(patient_id)
            if derived is not None:
                data.resources.append(derived)
                data.when.append(clinical_range(derived))
        for src in self.sources:
            if isinstance(src, CachedSource) or not yields(src, types) \
                    or (src is self.claims and not with_claims):
                continue
            part = src.for_patient(patient_id, types)
            for r in part.resources:
                if types is None or r.get("resourceType") in types:
                    data.resources.append(r)
                    data.when.append(clinical_range(r))
            data.problems.extend(part.problems)

    def patient_bundle(self, patient_id: str, types: set[str] | None = None) -> PatientData:
        """All current resources of one patient (optionally of some types), with problems."""
        if not is_valid_patient_id(patient_id):
            if self._receipt_patient(patient_id) is None:
                raise NotFound(f"no patient {patient_id!r}")
            data = PatientData([])  # a receipt Patient: no folder, everything is an extra
            self._extras(patient_id, types, data, Compartment(("-",), (), (), (), 0, ()))
            return data
        comp = self._compartment(patient_id, types)
        data = PatientData(list(comp.resources), list(comp.problems), comp.nfiles,
                           list(comp.when))
        self._extras(patient_id, types, data, comp)
        return data

    def newest_data_day(self, patient_id: str) -> str:
        """YYYYMMDD of the patient's newest date folder (a listing; '' when none)."""
        from .recent import newest_data_day
        return newest_data_day(self, patient_id)

    def patient_level(self, patient_id: str) -> list[dict]:
        """Patient and allergies of the patient-level folder (the viewer's banner)."""
        from .recent import patient_level
        return patient_level(self, patient_id)

    def recent_chart(self, patient_id: str):
        """What a chart summary shows, mapped without the rest (:mod:`.recent`)."""
        if not is_valid_patient_id(patient_id) or not self.patient_exists(patient_id):
            raise NotFound(f"no patient {patient_id!r}")
        from .recent import recent_chart
        return recent_chart(self, patient_id)

    def derived_patient(self, patient_id: str,
                        listed: tuple[Storage, dict[RecordKey, Record]] | None = None
                        ) -> dict | None:
        """A Patient from the newest readable PID of the folder (see ``StorageSource``)."""
        return self.storage.derived_patient(patient_id, listed)

    # -- instance level: the owning source answers -----------------------------------------------
    def read(self, rtype: str, rid: str) -> dict:
        found = self.source_of(rtype, rid).read(rtype, rid)
        return self._chart_view(rtype, rid) or found

    def _chart_view(self, rtype: str, rid: str) -> dict | None:
        """The patient-level view's version of an Encounter (mappers.chart closes admissions)
        when it changed the stored one: that view is a version of its own (stored + 1)."""
        if rtype != "Encounter":
            return None
        parsed = parse_id(rid)
        if parsed is None or not is_valid_patient_id(parsed.patient_id):
            return None
        comp = self._compartment(parsed.patient_id, {rtype})
        view = next((r for r in comp.resources if r.get("id") == rid), None)
        if view is None or not any(e.get("url") == EXT_CHANGED_BY
                                   for e in view.get("extension", ())):
            return None
        return view

    def vread(self, rtype: str, rid: str, vid: str) -> dict:
        view = self._chart_view(rtype, rid)
        if view is not None and view.get("meta", {}).get("versionId") == vid:
            return view
        return self.source_of(rtype, rid).vread(rtype, rid, vid)

    def history(self, rtype: str, rid: str) -> list[dict]:
        """Every version of the resource, newest first (FHIR history order); a closed
        admission's view is the newest."""
        stored = self.source_of(rtype, rid).history(rtype, rid)
        view = self._chart_view(rtype, rid)
        if view is None:
            return stored
        vid = view.get("meta", {}).get("versionId")
        return [view] + [r for r in stored if r.get("meta", {}).get("versionId") != vid]

    # -- search -------------------------------------------------------------------------------
    def search(self, rtype: str, query: Query) -> SearchResult:
        rdef = registry().get(rtype)
        if rdef is None:
            raise NotFound(f"unknown resource type {rtype}")
        if rtype == "Patient":
            return self._search_patients(query)
        pids = _patients_of(query)
        if pids is None:
            for src in self.sources:
                found = src.search(rtype, query)
                if found is not None:
                    return found
            raise PatientRequired(
                f"a search of {rtype} must name the patient (patient, subject or _id); "
                "see the CapabilityStatement")
        out = SearchResult([])
        seen: set[tuple[object, object]] = set()
        for pid in pids:
            if not is_valid_patient_id(pid) and not self.claims.owns("Patient", pid):
                continue
            data = self.patient_bundle(pid, {rtype})
            out.problems.extend(p for p in data.problems if p.severity == ERROR)
            for r in data.resources:
                k = (r.get("resourceType"), r.get("id"))
                if k not in seen and match.matches_all(r, query.criteria):
                    seen.add(k)
                    out.matches.append(r)
        return out

    def patient_search_page(self, rtype: str, query: Query, pos: tuple[str, int] | None):
        """One page of a search of one patient's ``rtype`` mapping only the days it shows
        (:func:`.everything.search_page`: a large chart, no ``_sort``, no total asked), else
        None and the caller runs :meth:`search` (the whole compartment of the type)."""
        from . import everything
        if query.sort or query.summary == "count":
            return None
        pid = self._one_chart(rtype, query)
        if pid is None:
            return None
        return everything.search_page(self, pid, rtype,
                                      lambda r: match.matches_all(r, query.criteria),
                                      query.count, pos)

    def sorted_patient_page(self, rtype: str, query: Query, offset: int,
                            key_of: Callable[[dict], tuple],
                            order: Callable[[list[tuple]], list[int]]
                            ) -> tuple[list[dict], int, list[Problem]] | None:
        """One page of a ``_sort`` search of one patient's large chart (more than
        :data:`.everything.EXACT_DAYS` days), mapping only the days the page shows once the
        chart's sort keys are known (:func:`.everything.sorted_page`): (page, total, problems),
        or None and the caller sorts the whole compartment of the type (a small chart, several
        patients, ``_id``, a chart-level type, receipts)."""
        from . import everything
        if not query.sort or rtype in ("Claim", "Coverage"):
            return None
        pid = self._one_chart(rtype, query)
        if pid is None:
            return None
        page = everything.sorted_page(self, pid, rtype, query,
                                      lambda r: match.matches_all(r, query.criteria),
                                      key_of, order, offset)
        if page is None:
            return None
        return page.resources, page.total or 0, page.problems

    def _one_chart(self, rtype: str, query: Query) -> str | None:
        """The patient whose SS-MIX2 chart a search of ``rtype`` pages through (one patient
        with a folder, no ``_id``, a page asked for, not Patient itself), or None."""
        pids = _patients_of(query)
        if (pids is None or len(pids) != 1 or not is_valid_patient_id(pids[0])
                or query.params("_id") or query.count <= 0 or rtype == "Patient"
                or not self.storage.patient_exists(pids[0])):
            return None
        return pids[0]

    def claim_page(self, query: Query, offset: int) -> tuple[list[dict], int, list[Problem]] | None:
        """One page of ``GET Claim`` without a patient, mapping only the receipts it shows:
        (Claims, total, problems).  None when the receipt index cannot answer exactly — a
        patient, another order, ``_include``, or a criterion outside ``claims.INDEX_PARAMS`` —
        and the caller runs the full :meth:`search`.  Same entries, same order."""
        from .claims import INDEX_PARAMS
        if (_patients_of(query) is not None or query.sort or query.includes
                or query.revincludes or any(c.param.name not in INDEX_PARAMS
                                            for c in query.criteria)):
            return None
        refs = self.claims.refs()
        if query.criteria:
            if any(r.stub is None for r in refs):
                return None
            refs = [r for r in refs if r.stub is not None and match.matches_all(r.stub, query.criteria)]
        if query.summary == "count":  # the Bundle carries the total only
            return [], len(refs), []
        claims, problems = self.claims.map_refs(refs[offset: offset + query.count])
        return claims, len(refs), problems

    def _search_patients(self, query: Query) -> SearchResult:
        direct = _direct_patient_ids(query)
        stubs = None
        if direct is None:
            stubs = self.patient_matches(query)
            pids = [s["id"] for s in stubs] if stubs is not None else WalkIndex(self).all()
        else:
            pids = direct
        out = SearchResult([])
        for pid in dict.fromkeys(pids):
            out.matches.extend(self._patients(pid, query, out.problems))
        if stubs is None or direct is not None:  # (index stubs include the receipt Patients)
            seen = {r.get("id") for r in out.matches}
            out.matches.extend(r for r in self._receipt_patients(query) if r["id"] not in seen)
        return out

    def _receipt_patients(self, query: Query) -> list[dict]:
        """The receipt-built Patients (``Patient/uke-…``) matching ``query``: few, built from
        the receipt index without opening a UKE file, so matched here whole."""
        try:
            return [p for p in self.claims.patients() if match.matches_all(p, query.criteria)]
        except Exception as exc:  # the receipts must never break Patient search
            log.warning("receipt Patients unavailable (%s)", exc)
            return []

    def _patients(self, pid: str, query: Query, problems: list[Problem]) -> list[dict]:
        """The Patient(s) of one folder that match ``query`` (mapped; errors to ``problems``)."""
        receipt = self._receipt_patient(pid)
        if receipt is not None:
            return [receipt] if match.matches_all(receipt, query.criteria) else []
        if not is_valid_patient_id(pid):
            return []
        data = self.patient_bundle(pid, {"Patient"})
        problems.extend(p for p in data.problems if p.severity == ERROR)
        return [r for r in data.resources if r.get("resourceType") == "Patient"
                and match.matches_all(r, query.criteria)]

    def patient_matches(self, query: Query) -> list[dict] | None:
        """The index's search stubs of the patients matching ``query`` — the API's matcher run
        on what the index holds, so the answer is the walk's — or None without an index."""
        indexed = self._receipts_indexed()  # first: the stubs must come from the synced index
        try:
            stubs = self.index.stubs(query.criteria)  # WalkIndex: None
        except Exception as exc:  # the index must never break search
            log.warning("patient index failed (%s); walking the storage", exc)
            return None
        if stubs is None:
            return None
        if indexed:  # the index holds the receipt Patients too
            return [s for s in stubs if (is_valid_patient_id(s.get("id", ""))
                                         or is_receipt_patient_id(s.get("id", "")))
                    and match.matches_all(s, query.criteria)]
        return [s for s in stubs if is_valid_patient_id(s.get("id", ""))
                and not is_receipt_patient_id(s.get("id", ""))
                and match.matches_all(s, query.criteria)] + self._receipt_patients(query)

    def _receipts_indexed(self) -> bool:
        """Bring the index's receipt Patients up to date with the receipt index (a no-op while
        neither changed); False when the index cannot hold them (another backend, no first
        build yet, another process writing): the caller matches them itself then."""
        sync = getattr(self.index, "sync_receipt_patients", None)
        if sync is None:
            return False
        try:
            return bool(sync(self.claims.patients()))
        except Exception as exc:  # the receipts must never break Patient search
            log.warning("receipt Patients not indexed (%s)", exc)
            return False

    def patient_page(self, query: Query, offset: int,
                     order: Callable[[list[dict], Query], list[dict]]
                     ) -> tuple[list[dict], int, list[Problem]] | None:
        """One page of a Patient search from the index, mapping only the page's Patients:
        (Patients, total, problems).  ``order`` sorts stubs as the API sorts resources (the
        stubs hold every sort key).  None when the index cannot answer (the caller walks).
        A page Patient changed since the index saw it is checked again and left out when it
        no longer matches (the index refreshes within ``RefreshingIndex.REFRESH_EVERY``)."""
        if _direct_patient_ids(query) is not None:
            return None  # one folder per id: the full path is as cheap
        exact = self._patient_page_exact(query, offset)
        if exact is not None:
            return exact
        lean = self._patient_page_by_id(query, offset)
        if lean is not None:
            return lean
        stubs = self.patient_matches(query)  # (another backend: whole stubs, then ``order``)
        if stubs is None:
            return None
        if query.summary == "count":
            return [], len(stubs), []
        ordered = order(stubs, query)
        problems: list[Problem] = []
        shown = [s["id"] for s in ordered[offset: offset + query.count]]
        return self._shown_patients(shown, query, problems), len(ordered), problems

    def _patient_page_exact(self, query: Query, offset: int
                            ) -> tuple[list[dict], int, list[Problem]] | None:
        """:meth:`patient_page` when the index's terms answer every criterion exactly
        (``PatientIndex.exact_page``: default string matches, plain codes): the total is the
        index's count and the order comes from its id order and sort keys, so the cost is the
        page's Patients whatever the number of matches.  None otherwise (the stubs decide)."""
        get = getattr(self.index, "exact_page", None)
        if get is None:
            return None
        indexed = self._receipts_indexed()  # first: the answer must come from the synced index
        if not indexed:
            return None  # the receipt Patients are matched whole then (_patient_page_by_id)
        count = 0 if query.summary == "count" else query.count
        try:
            got = get(query.criteria, query.sort, offset, count, indexed)
        except Exception as exc:  # the index must never break search
            log.warning("patient index failed (%s); walking the storage", exc)
            return None
        if got is None:
            return None
        total, shown, stored = got
        problems: list[Problem] = []
        return self._shown_patients(shown, query, problems, self._unchanged(stored),
                                    exact=True), total, problems

    def _patient_page_by_id(self, query: Query, offset: int
                            ) -> tuple[list[dict], int, list[Problem]] | None:
        """:meth:`patient_page` holding one decoded stub at a time: the matches are counted
        and only the page's ids kept (in the default order, by id) or each match's few sort
        keys (``_sort``: the index's ``sort`` column, ordered as the API orders Patients), so a
        broad search costs the page in memory, not the matches' stubs.  None when the index
        cannot (other backends)."""
        import heapq

        import orjson

        from fhir_gateway.index.stubs import order, sort_keys
        indexed = self._receipts_indexed()  # as patient_matches: the synced index first
        try:
            get = getattr(self.index, "stub_bytes", None)
            raw = get(query.criteria, bool(query.sort)) if get is not None else None
        except Exception as exc:  # the index must never break search
            log.warning("patient index failed (%s); walking the storage", exc)
            return None
        if raw is None:
            return None

        def decoded():
            for pid, b, *keys in raw:  # the ids patient_matches keeps
                receipt = is_receipt_patient_id(pid)
                if (is_valid_patient_id(pid) or (indexed and receipt)) and (indexed or not receipt):
                    yield pid, orjson.loads(b), False, keys[0] if keys else b"{}"
        # not in the index: matched whole (few), merged into the id order
        receipts = [] if indexed else sorted(
            ((p["id"], p, True, orjson.dumps(sort_keys(p))) for p in self._receipt_patients(query)),
            key=lambda x: x[0])
        total = 0
        shown: list[str] = []
        keyed: list[tuple[str, dict]] = []
        for _, stub, matched, keys in heapq.merge(decoded(), receipts, key=lambda x: x[0]):
            if matched or match.matches_all(stub, query.criteria):
                if query.sort:
                    keyed.append((stub["id"], orjson.loads(keys)))
                elif offset <= total < offset + query.count:
                    shown.append(stub["id"])
                total += 1
        if query.summary == "count":
            return [], total, []
        if query.sort:
            shown = [i for i, _ in order(keyed, query.sort, lambda r: r[1])
                     [offset:offset + query.count]]
        problems: list[Problem] = []
        return self._shown_patients(shown, query, problems), total, problems

    def _shown_patients(self, shown: list[str], query: Query, problems: list[Problem],
                        stored: dict[str, dict] | None = None, exact: bool = False
                        ) -> list[dict]:
        """The Patients of one page (``shown`` ids, in order): stored in the index where it has
        them (checked against the files), else mapped from the folder; each still matched —
        but for a stored Patient of an ``exact`` index answer, which is the Patient whose stub
        the index matched."""
        page: list[dict] = []
        if stored is None:
            stored = self._stored_patients([p for p in shown if is_valid_patient_id(p)])
        for pid in shown:
            got = stored.get(pid)
            if got is None:
                page.extend(self._patients(pid, query, problems))
            elif exact or match.matches_all(got, query.criteria):
                page.append(got)
        return page

    def _stored_patients(self, pids: list[str]) -> dict[str, dict]:
        """The index's stored Patients (``PatientIndex.patients``) whose ADT-00 file and folder
        are unchanged on the active root (size and mtimes, two stats each): the Patient that
        mapping the file again would give.  Others are mapped by the caller."""
        get = getattr(self.index, "patients", None)
        if get is None or not pids:
            return {}
        try:
            stored = get(pids) or {}
        except Exception as exc:  # the index is an accelerator
            log.warning("patient index failed (%s); reading the files", exc)
            return {}
        return self._unchanged(stored)

    def _unchanged(self, stored: dict[str, tuple[dict, tuple]]) -> dict[str, dict]:
        """The stored Patients whose ADT-00 file and folder are unchanged on the active root."""
        stored = {p: v for p, v in stored.items() if is_valid_patient_id(p)}
        root = self.replicas.active()[0].root
        out = {}
        for pid, (patient, (rel, size, mtime, dir_mtime)) in stored.items():
            path = f"{root}/{rel}"
            try:
                st, dst = os.stat(path), os.stat(os.path.dirname(path))
            except OSError:
                continue
            if (st.st_size, st.st_mtime_ns, dst.st_mtime_ns) == (size, mtime, dir_mtime):
                out[pid] = patient
        return out

    def everything(self, pid: str, start: str | None = None, end: str | None = None,
                   since: str | None = None, types: set[str] | None = None) -> PatientData:
        """Patient/$everything, every page at once (the API pages with :meth:`everything_page`;
        order and filters in :mod:`.everything`)."""
        page = self.everything_page(pid, start, end, since, types, count=1 << 62)
        return PatientData(page.resources, page.problems)

    def everything_page(self, pid: str, start: str | None = None, end: str | None = None,
                        since: str | None = None, types: set[str] | None = None,
                        count: int = 50, offset: int = 0, pos: tuple[str, int] | None = None):
        """One page of Patient/$everything (:func:`.everything.page`): only the days it shows
        are mapped when the chart is large."""
        from . import everything
        if not self.patient_exists(pid):
            raise NotFound(f"Patient/{pid} not found")
        return everything.page(self, pid, start, end, since, types, count, offset, pos)


def _ref_pid(value: str) -> str | None:
    t, i = match.ref_target(value, "Patient")
    return i if t == "Patient" else None


def _patients_of(query: Query) -> list[str] | None:
    """Patient ids named by a clinical query (patient, subject or our _id), or None."""
    for name in ("patient", "subject"):
        for c in query.params(name):
            if c.modifier is None or c.modifier == "Patient":
                pids = [p for p in (_ref_pid(v) for v in c.values) if p]
                if pids:
                    return pids
    for c in query.params("_id"):
        if c.modifier is None:
            pids = [p.patient_id for p in (parse_id(v) or parse_extended_id(v) for v in c.values)
                    if p]
            if pids and len(pids) == len(c.values):
                return list(dict.fromkeys(pids))
    return None


def _direct_patient_ids(query: Query) -> list[str] | None:
    """Patient ids from ``_id`` or an identifier value (PID-3 is the storage's patient id)."""
    for c in query.params("_id"):
        if c.modifier is None:
            return list(c.values)
    for c in query.params("identifier"):
        if c.modifier is None:
            vals = [match._split_pipe(v)[-1] for v in c.values]
            if all(vals):
                return vals
    return None


class WalkIndex:
    """Fallback patient index: every patient folder is a candidate (fine for small trees)."""

    def __init__(self, svc: FacilityService) -> None:
        self.svc = svc

    def all(self) -> list[str]:
        return self.svc.patient_ids()

    def search(self, **criteria: str) -> list[str]:
        return self.all()

    def summaries(self, **criteria: str):
        """No summaries without an index: None tells callers to walk the storage."""
        return None

    def stubs(self, criteria: list):
        """No stubs without an index: None tells callers to walk the storage."""
        return None

    def health(self) -> dict:
        return {"backend": "walk", "status": "ok"}

    def refresh(self) -> None:
        pass


class RefreshingIndex:
    """A :class:`fhir_gateway.index.backends.PatientIndexBackend` (whoosh or PostgreSQL),
    refreshed in a background thread (readers never wait).  Until a first build exists,
    searches walk the storage (None)."""

    REFRESH_EVERY = 30.0

    def __init__(self, index) -> None:
        self.index = index
        self._last = 0.0
        self._running = threading.Lock()

    def _kick(self) -> None:
        now = time.monotonic()
        if now - self._last < self.REFRESH_EVERY or not self._running.acquire(blocking=False):
            return
        self._last = now

        def run() -> None:
            try:
                self.index.try_refresh()
            except Exception as exc:
                log.warning("patient index refresh failed: %s", exc)
            finally:
                self._running.release()
                # the refresh's walk held a few objects per patient (~35 MB at 20,000 patients,
                # a moment): give the heap they leave back, the worker's memory stays flat
                release_freed_memory(0)
        threading.Thread(target=run, name="index-refresh", daemon=True).start()

    def summaries(self, limit: int = 100_000, **criteria: str):
        """Index hits (PatientSummary), or None when there is no index yet."""
        self._kick()
        if not self.index.ready():
            return None
        return self.index.search(**criteria, limit=limit)

    def search(self, **criteria: str):
        return self.summaries(100_000, **criteria)

    def health(self) -> dict:
        return self.index.health()

    def stubs(self, criteria: list):
        """Search stubs of a superset of the matches (``PatientIndex.stubs``), None before the
        first build."""
        self._kick()
        if not self.index.ready():
            return None
        return self.index.stubs(criteria)

    def sync_receipt_patients(self, patients: list[dict]) -> bool:
        """``PatientIndex.sync_receipt_patients`` (optional for a backend: False without)."""
        sync = getattr(self.index, "sync_receipt_patients", None)
        return bool(sync(patients)) if sync is not None else False

    def stub_bytes(self, criteria: list, sort_keys: bool = False):
        """Undecoded stubs in id order (``PatientIndex.stub_bytes``; optional for a backend),
        None when the backend has none or before the first build."""
        self._kick()
        get = getattr(self.index, "stub_bytes", None)
        if get is None or not self.index.ready():
            return None
        return get(criteria, sort_keys)

    def exact_page(self, criteria: list, sort: list, offset: int, count: int, receipts: bool):
        """``PatientIndex.exact_page`` (optional for a backend), None without or before the
        first build."""
        self._kick()
        get = getattr(self.index, "exact_page", None)
        if get is None or not self.index.ready():
            return None
        return get(criteria, sort, offset, count, receipts)

    def patients(self, pids: list[str]):
        """Stored Patients (``PatientIndex.patients``; optional for a backend), {} before the
        first build."""
        get = getattr(self.index, "patients", None)
        if get is None or not self.index.ready():
            return {}
        return get(pids)


def default_index(svc: FacilityService, config=None):
    """The configured patient index (``[index] backend``; whoosh by default), else a walk."""
    try:
        from fhir_gateway.index.backends import open_index
    except ImportError:
        return WalkIndex(svc)
    try:
        if config is None:
            from fhir_gateway.config import Config
            config = Config(svc.data_dir, {svc.code: svc.facility})
        return RefreshingIndex(open_index(config, svc.code))
    except Exception as exc:
        log.warning("patient index unavailable (%s); walking the storage", exc)
        return WalkIndex(svc)


def iter_ids(resources: Iterable[dict]) -> list[str]:
    return [f"{r.get('resourceType')}/{r.get('id')}" for r in resources]
