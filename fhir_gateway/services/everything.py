"""Patient/$everything in pages that cost what they show (issue 17 item 3).

The chart is walked **day by day**: the patient-level folder ``-`` (the Patient, problems,
allergies) first, then the date folders newest first; within a day by type (the Patient first),
newest clinical date, then id.  SS-MIX2 folder names carry the day, so a day's resources are the
files of that day's folders (SS-MIX2 and extended storage) plus the receipts, memos and derived
Patient whose clinical date falls on it (a receipt by its index stub's date, with its
Coverages) — one day is mapped without looking at any other.

* A chart of at most :data:`EXACT_DAYS` days is mapped whole: an exact ``total``, offsets and
  ``last``/``previous`` links as for any search.
* A larger chart (the 3,000-file heavy patient) is paged by **position**: the cursor holds
  (day, resources of that day already shown); a page maps only the days it shows (plus the
  next non-empty one, to know there is a next page).  Such a Bundle has no ``total`` and no
  ``last`` link (FHIR makes both optional); memory per request is the page's days, not the
  chart.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from mappers.chart import CHART_LEVEL
from storage.names import NO_DATE, is_valid_patient_id
from storage.reader import Problem

from . import match
from .cache import clinical_range
from .chartlevel import settled, settled_here
from .listing import patient_records
from .match import JST
from .resource_source import PatientData
from .sources import data_types_for

if TYPE_CHECKING:
    from .facility import FacilityService

EXACT_DAYS = 150  # above this many days a chart is paged by position (no total)
SORT_ORDERS_KEPT = 8  # sort orders of large charts kept per process
SORT_PLACES_KEPT = 50_000  # and matches in them all (~180 bytes each: ~9 MB per process)
SORT_ORDER_SECONDS = 60.0  # and for how long (receipts and memos are not in the signature)


@dataclass
class Page:
    resources: list[dict]
    total: int | None  # None: a positional page (large chart)
    next: tuple[str, int] | None = None  # positional: where the next page starts
    problems: list[Problem] = field(default_factory=list)  # of the days first shown here


def day_of(when: tuple[float, float] | None) -> str:
    """The day (YYYYMMDD, Japan time) a clinical range starts on, or ``-`` for none."""
    if when is None:
        return NO_DATE
    try:
        return datetime.fromtimestamp(when[0], JST).strftime("%Y%m%d")
    except (OverflowError, OSError, ValueError):
        return NO_DATE


def _rank(day: str) -> tuple:
    """Order of days: ``-`` first, then dates newest first, then odd folder names."""
    if day == NO_DATE:
        return (0, 0, "")
    if len(day) == 8 and day.isdigit():
        return (1, -int(day), "")
    return (2, 0, day)


class Chart:
    """One request's view of a patient's chart: the days and how to map one."""

    def __init__(self, svc: "FacilityService", storage, pid: str, types: set[str] | None,
                 start: str | None, end: str | None, since: str | None,
                 keep: Callable[[dict], bool] | None = None) -> None:
        self.svc, self.pid, self.types, self.keep = svc, pid, types, keep
        self.filters = (start, end, since)
        self.dtypes = data_types_for(types)
        from .extended import TYPES as EXT_TYPES
        self.with_ext = bool(svc.extended) and (types is None or bool(types & EXT_TYPES))
        self.storage = storage
        ss_days: list[str] = []
        if self.dtypes != []:
            pdir = storage.patient_dir(pid) if is_valid_patient_id(pid) else None  # uke-…
            if pdir is not None:
                ss_days = list(svc.dirs.list(str(pdir))[0])
        self.ss_days = set(ss_days)
        self.ext_days: set[str] = set()
        if self.with_ext:
            for ext in svc.extended.roots:
                try:
                    self.ext_days.update(ext.dates(pid))
                except Exception:  # listed again (and reported) when the day is mapped
                    continue
        # receipts, plug-in sources, a derived Patient: small per patient, read whole
        extra = PatientData([])
        comp_has_patient = self._has_adt_patient(ss_days)
        svc._extras(pid, types, extra, _Probe(comp_has_patient), with_claims=False)
        self.extra_problems = list(extra.problems)
        self.extra: dict[str, list[tuple[dict, tuple | None]]] = {}
        for r, w in zip(extra.resources, extra.when):
            d = NO_DATE if r.get("resourceType") == "Patient" else day_of(w)
            self.extra.setdefault(d, []).append((r, w))
        # receipts: placed by their index stub's date, read only for the days shown
        self.receipts: dict[str, list] = {}
        self._receipts_live = None
        if types is None or types & {"Claim", "Coverage"}:
            self.receipts, probs, self._receipts_live = svc.claims.receipts_by_day(
                pid, lambda stub: day_of(clinical_range(stub)) if stub else NO_DATE)
            self.extra_problems.extend(probs)
        # Encounters and allergies the whole chart settles (closed visits, one per allergen)
        self.chart_level = CHART_LEVEL if types is None else CHART_LEVEL & types
        self.settled = settled(svc, storage, pid, self.chart_level) \
            if self.chart_level and self.ss_days and self.dtypes != [] else {}
        self.days = sorted(self.ss_days | self.ext_days | set(self.extra) | set(self.receipts),
                           key=_rank)

    def _has_adt_patient(self, days: list[str]) -> bool:
        """Whether the ``-`` folder yields a Patient (else the one derived from a PID is an
        extra), mapped here only when Patients are wanted."""
        if self.types is not None and "Patient" not in self.types:
            return True
        if NO_DATE not in days:
            return False
        records, _ = patient_records(self.storage, self.svc.dirs, self.pid, ["ADT-00"], [NO_DATE])
        source = self.svc.storage
        for rkey in sorted(records):
            cur = source.current(records[rkey])
            if cur is not None and any(r.get("resourceType") == "Patient"
                                       for r in source.map_file(self.storage, *cur).resources):
                return True
        return False

    def day(self, day: str) -> tuple[tuple, list[Problem]]:
        """(resources of ``day`` in $everything order, filtered; problems of its files)."""
        svc, types = self.svc, self.types
        resources: list[dict] = []
        when: list = []
        problems: list[Problem] = []
        if day in self.ss_days and self.dtypes != []:
            records, rejects = patient_records(self.storage, svc.dirs, self.pid, self.dtypes, [day])
            problems.extend(svc.storage.reject_problem(f) for f in rejects)
            for rkey in sorted(records):
                cur = svc.storage.current(records[rkey])
                if cur is None:
                    continue
                m = svc.storage.map_file(self.storage, *cur)
                problems.extend(m.problems)
                for r, w in zip(m.resources, m.when):
                    rt = r.get("resourceType", "")
                    if (types is None or rt in types) and not (
                            rt in self.chart_level and settled_here(rt, rkey.data_type)):
                        resources.append(r)
                        when.append(w)
            for r, w in self.settled.get(day, ()):
                resources.append(r)
                when.append(w)
        if day in self.ext_days:
            part = svc.extended.for_patient(self.pid, types, dates=[day])
            resources.extend(part.resources)
            when.extend(clinical_range(r) for r in part.resources)
            problems.extend(part.problems)
        for r, w in self.extra.get(day, ()):
            resources.append(r)
            when.append(w)
        if day in self.receipts:
            claims, cprobs = svc.claims.map_receipts(self.pid, self._receipts_live,
                                                     self.receipts[day])
            for r in claims:
                if types is None or r.get("resourceType") in types:
                    resources.append(r)
                    when.append(clinical_range(r))
            problems.extend(cprobs)
        ordered = _ordered(resources, when, *self.filters)
        if self.keep is not None:
            return tuple(r for r in ordered[0] if self.keep(r)), problems
        return ordered[0], problems


class _Probe:
    """Stands in for a compartment in ``FacilityService._extras``: says whether it holds a
    Patient (the derived Patient is added only when it does not)."""

    def __init__(self, has_patient: bool) -> None:
        self.resources: tuple[dict, ...] = ({"resourceType": "Patient"},) if has_patient else ()


def page(svc: "FacilityService", pid: str, start: str | None, end: str | None,
         since: str | None, types: set[str] | None, count: int, offset: int = 0,
         pos: tuple[str, int] | None = None) -> Page:
    """One page of ``$everything``: by offset for a chart of at most :data:`EXACT_DAYS` days
    (and a cursor without a position), else from the position ``pos``."""
    return svc._with_storage(lambda storage: _page(Chart(svc, storage, pid, types, start, end,
                                                         since), count, offset, pos))


def search_page(svc: "FacilityService", pid: str, rtype: str, keep: Callable[[dict], bool],
                count: int, pos: tuple[str, int] | None) -> Page | None:
    """One page of a one-patient search of ``rtype`` (``keep``: the query's criteria), in the
    chart's day order, mapping only the days it shows — or None when the chart has at most
    :data:`EXACT_DAYS` days (and no position is given): the caller searches the whole
    compartment then, with an exact total.  Never for :data:`mappers.chart.CHART_LEVEL`
    (settled by the whole chart, so never paged by day)."""
    if rtype in CHART_LEVEL:
        return None

    def run(storage) -> Page | None:
        chart = Chart(svc, storage, pid, {rtype}, None, None, None, keep)
        if pos is None and len(chart.days) <= EXACT_DAYS:
            return None
        return _positional(chart, count, pos, list(chart.extra_problems) if pos is None else [])

    return svc._with_storage(run)


def _page(chart: Chart, count: int, offset: int, pos: tuple[str, int] | None) -> Page:
    problems = list(chart.extra_problems) if pos is None else []
    if pos is None and len(chart.days) <= EXACT_DAYS:
        everything: list[dict] = []
        for d in chart.days:
            rs, probs = chart.day(d)
            everything.extend(rs)
            problems.extend(probs)
        return Page(everything[offset: offset + count], len(everything), None,
                    problems if offset == 0 else [])
    return _positional(chart, count, pos, problems)


def _positional(chart: Chart, count: int, pos: tuple[str, int] | None,
                problems: list[Problem]) -> Page:
    """The page from position ``pos`` (None: the first): the days it shows are mapped, plus
    the next non-empty one (is there a next page?)."""
    first_day, skip = pos if pos is not None else (NO_DATE, 0)
    out: list[dict] = []
    nxt: tuple[str, int] | None = None
    for d in chart.days:
        if _rank(d) < _rank(first_day):
            continue  # shown on earlier pages
        if d != first_day:
            skip = 0  # (the cursor's own day may be gone: the next one starts from the top)
        rs, probs = chart.day(d)
        if not rs:
            continue
        if len(out) >= count:
            nxt = (d, 0)  # a non-empty day after the page: there is a next page
            break
        if skip == 0:
            problems.extend(probs)
        take = rs[skip: skip + count - len(out)]
        out.extend(take)
        if skip + len(take) < len(rs):
            nxt = (d, skip + len(take))
            break
    return Page(out, None, nxt, problems)


def _ordered(resources, when, start: str | None, end: str | None, since: str | None
             ) -> tuple[tuple, tuple, tuple]:
    """($everything order) (resources, whens, sort keys) kept by the date filters: the Patient
    first, then by type, newest clinical date first, then id."""
    lo_r = match.date_range(start) if start else None
    hi_r = match.date_range(end) if end else None
    lo = lo_r[0] if lo_r else None
    hi = hi_r[1] if hi_r else None
    since_r = match.date_range(since) if since else None
    keep = []
    for r, w in zip(resources, when):
        rt = r.get("resourceType", "")
        if since_r:
            lu = match.date_range(r.get("meta", {}).get("lastUpdated", ""))
            if lu is not None and lu[0] < since_r[0]:
                continue
        if rt != "Patient" and w is not None and (lo is not None or hi is not None):
            if not ((lo is None or w[1] > lo) and (hi is None or w[0] < hi)):
                continue
        keep.append(((rt != "Patient", rt, -(w[0] if w else 0.0), r.get("id", "")), r, w))
    keep.sort(key=lambda k: k[0])
    return tuple(k[1] for k in keep), tuple(k[2] for k in keep), tuple(k[0] for k in keep)


# -- a one-patient search with _sort, of a large chart ---------------------------------------------
Placed = tuple[str, int, str]  # (day, position among the day's matches, id)


class SortOrders:
    """Recent sort orders of one-patient ``_sort`` searches of large charts: per (patient, type,
    criteria, sort) every match as :data:`Placed`, in search order, with the chart's problems —
    small tuples, never resources; at most :data:`SORT_ORDERS_KEPT` orders and
    :data:`SORT_PLACES_KEPT` matches in all.  Valid while the chart's signature (folder mtimes)
    is the one it was built with, and for :data:`SORT_ORDER_SECONDS` at most."""

    def __init__(self, kept: int = SORT_ORDERS_KEPT, places: int = SORT_PLACES_KEPT) -> None:
        self.kept, self.max_places = kept, places
        self._data: OrderedDict[tuple, tuple[Any, float, tuple]] = OrderedDict()
        self._places = 0  # matches held by all the kept orders
        self._lock = threading.Lock()

    def get(self, key: tuple, sig: object) -> tuple[list[Placed], list[Problem]] | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None or hit[0] != sig or time.monotonic() - hit[1] > SORT_ORDER_SECONDS:
                return None
            self._data.move_to_end(key)
            return hit[2]

    def put(self, key: tuple, sig: object, value: tuple[list[Placed], list[Problem]]) -> None:
        """Keep ``value`` (an order larger than the whole bound is not kept: every page of
        that search walks the chart again, its memory still bounded by a day)."""
        if len(value[0]) > self.max_places:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._places -= len(old[2][0])
            self._data[key] = (sig, time.monotonic(), value)
            self._places += len(value[0])
            while len(self._data) > self.kept or self._places > self.max_places:
                _, (_, _, gone) = self._data.popitem(last=False)
                self._places -= len(gone[0])


def sorted_page(svc: "FacilityService", pid: str, rtype: str, query, keep: Callable[[dict], bool],
                key_of: Callable[[dict], tuple], order: Callable[[list[tuple]], list[int]],
                offset: int) -> Page | None:
    """One page of a one-patient search of ``rtype`` with ``_sort`` (``key_of``/``order``: the
    API's sort, ``keep``: the criteria) with an exact total, or None for a chart of at most
    :data:`EXACT_DAYS` days (the caller sorts the compartment) and for
    :data:`mappers.chart.CHART_LEVEL` types.  The first page walks the chart day by day
    keeping only each match's sort key and place; the order is kept (:class:`SortOrders`), and
    every page maps only the days its resources are on — memory is the page's days and the
    chart's keys, never the chart's resources."""
    if rtype in CHART_LEVEL:
        return None
    key = (pid, rtype, tuple((c.param.name, c.modifier, tuple(c.values)) for c in query.criteria),
           tuple(query.sort))

    if len(svc.care_dates(pid)) <= EXACT_DAYS:  # (one listing: a small chart sorts whole)
        return None

    def run(storage) -> Page | None:
        chart = Chart(svc, storage, pid, {rtype}, None, None, None, keep)
        if len(chart.days) <= EXACT_DAYS:
            return None
        sig, cacheable = _chart_signature(svc, pid, rtype)
        built = svc.sort_orders.get(key, sig) if cacheable else None
        page = _pick(chart, built[0][offset: offset + query.count]) if built else None
        if built is None or page is None:  # none kept, or the chart changed under it
            built = _sort_keys(chart, key_of, order)
            if cacheable:
                svc.sort_orders.put(key, sig, built)
            page = _pick(chart, built[0][offset: offset + query.count]) or []
        placed, problems = built
        return Page(page, len(placed), None, problems if offset == 0 else [])

    return svc._with_storage(run)


def _chart_signature(svc: "FacilityService", pid: str, rtype: str) -> tuple[object, bool]:
    """(folder mtimes of the patient's SS-MIX2 and extended storage, trustworthy)."""
    sig, ok = svc.storage.signature(pid, {rtype})
    if not svc.extended:
        return sig, ok
    esig, eok = svc.extended.signature(pid, {rtype})
    return (sig, esig), ok and eok


def _sort_keys(chart: Chart, key_of: Callable[[dict], tuple],
               order: Callable[[list[tuple]], list[int]]) -> tuple[list[Placed], list[Problem]]:
    """Every match of the chart as :data:`Placed`, in search order (one day mapped at a time)."""
    keys: list[tuple] = []
    places: list[Placed] = []
    problems = list(chart.extra_problems)
    for d in chart.days:
        rs, probs = chart.day(d)
        problems.extend(probs)
        for j, r in enumerate(rs):
            keys.append(key_of(r))
            places.append((d, j, r.get("id", "")))
    return [places[i] for i in order(keys)], problems


def _pick(chart: Chart, want: list[Placed]) -> list[dict] | None:
    """The resources at ``want``, mapping only their days; None when one is not where the order
    says (the chart changed since the order was built)."""
    days: dict[str, tuple] = {}
    out = []
    for d, j, rid in want:
        if d not in days:
            days[d] = chart.day(d)[0]
        rs = days[d]
        if j >= len(rs) or rs[j].get("id", "") != rid:
            return None
        out.append(rs[j])
    return out
