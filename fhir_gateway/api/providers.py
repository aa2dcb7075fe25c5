"""One provider per resource type (like HAPI's plain server): it turns a validated request into
service calls and a Bundle.  Types differ only by their registry entry; Patient adds
``$everything`` and ``_revinclude``."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlencode

from conformance import Criterion, Query, QueryError, ResourceDef, registry
from fhir_gateway.paging import BadCursor, Pager
from fhir_gateway.services import FacilityService
from fhir_gateway.services import match
from fhir_gateway.services.errors import NotFound, ServiceError
from storage.reader import Problem

from . import bundle
from .errors import FhirError
from .subset import elements, summarize

EVERYTHING_PARAMS = {"start", "end", "_since", "_type", "_count", "_format", "_pretty",
                     "_cursor"}


class ResourceProvider:
    def __init__(self, rdef: ResourceDef) -> None:
        self.rdef = rdef
        self.type = rdef.type

    # -- search ----------------------------------------------------------------------------------
    def search(self, svc: FacilityService, pager: Pager, base: str, items: list[tuple[str, str]],
               lenient: bool) -> dict:
        raw = items
        items, offset = _restore(pager, items, svc.code, "search", self.type)
        try:
            query = registry().parse(self.type, items, lenient=lenient)
        except QueryError as exc:
            raise FhirError(400, str(exc), "invalid") from None
        query = self.scoped(svc, query)
        by_day = self.day_page(svc, query, _position(pager, raw))
        if by_day is not None:  # one patient's large chart: the page's days only, no total
            included, inc_problems = self.includes(svc, by_day.resources, query)
            used = [i for i in items if i[0] not in query.ignored]
            links = _position_links(pager, base, self.type, raw, used, offset,
                                    len(by_day.resources), by_day.next, svc.code, self.type,
                                    kind="search")
            problems = [p for p in by_day.problems if p.severity == "error"]
            return bundle.searchset(base, [_shape(r, query) for r in by_day.resources],
                                    [_shape(r, query) for r in included],
                                    problems + inc_problems, None, links, notes=query.notes)
        lazy = self.lazy_page(svc, query, offset)
        if lazy is not None:  # an index answered: only the page's resources were mapped
            page, total, problems = lazy
            included, inc_problems = self.includes(svc, page, query)
        else:
            result = self.find(svc, query)
            ordered = self.sort(result.matches, query)
            total, problems = len(ordered), result.problems
            page = ordered[offset: offset + query.count]
            included, inc_problems = self.includes(svc, page, query)
        links = _links(pager, base, self.type, items, offset, query.count, total, svc.code,
                       "search", [i for i in items if i[0] not in query.ignored])
        shaped = [_shape(r, query) for r in page]
        return bundle.searchset(base, shaped, [_shape(r, query) for r in included],
                                problems + inc_problems,
                                None if query.total == "none" else total, links,
                                summary_count=query.summary == "count", notes=query.notes)

    def day_page(self, svc: FacilityService, query: Query, pos: tuple[str, int] | None):
        """A page of one patient's large chart by position (services.everything.search_page),
        or None (the search below)."""
        return svc.patient_search_page(self.type, query, pos)

    def lazy_page(self, svc: FacilityService, query: Query, offset: int):
        """(page, total, problems) mapping only the page, or None (full search).  Claims: the
        receipt index; a ``_sort`` of one patient's large chart: the chart's sort keys, kept
        between pages (:meth:`FacilityService.sorted_patient_page`)."""
        if self.type == "Claim":
            return svc.claim_page(query, offset)
        if query.sort:
            return svc.sorted_patient_page(self.type, query, offset, self.sort_key(query),
                                           lambda keys: self.sort_order(keys, query))
        return None

    def find(self, svc: FacilityService, query: Query):
        return svc.search(self.type, query)

    def sort(self, resources: list[dict], query: Query) -> list[dict]:
        key_of = self.sort_key(query)
        keys = [key_of(r) for r in resources]
        return [resources[i] for i in self.sort_order(keys, query)]

    def sort_key(self, query: Query) -> Callable[[dict], tuple]:
        """What the order of a resource depends on: (type, id, one value per ``_sort`` key —
        None when the resource has none; a kana key is never None).  The ``_sort`` keys'
        parameters are looked up once, not per resource."""
        from storage.text import search_key
        kana = self.rdef.params.get("jp-kana-sort")
        params = [None if key == "jp-kana-sort" else registry().sort_param(self.rdef, key)
                  for key, _ in query.sort]
        kinds = [key == "jp-kana-sort" for key, _ in query.sort]

        def key_of(r: dict) -> tuple:
            vals: list = []
            for is_kana, param in zip(kinds, params):
                if is_kana:
                    found = match.values(r, kana) if kana else []
                    vals.append(search_key(str(found[0])) if found else "\uffff")
                else:
                    vals.append(match.sort_value(r, param))
            return (r.get("resourceType", ""), r.get("id", ""), *vals)

        return key_of

    def sort_order(self, keys: list[tuple], query: Query) -> list[int]:
        """Positions of ``keys`` (:meth:`sort_key`) in search order: by type and id, then each
        ``_sort`` key from the last to the first (stable), resources without a value last."""
        out = sorted(range(len(keys)), key=lambda i: (keys[i][0], keys[i][1]))
        for n in reversed(range(len(query.sort))):
            col, desc = 2 + n, query.sort[n][1]
            if query.sort[n][0] == "jp-kana-sort":
                out.sort(key=lambda i: keys[i][col], reverse=desc)
                continue
            keyed = [i for i in out if keys[i][col] is not None]
            keyed.sort(key=lambda i: keys[i][col], reverse=desc)
            out = keyed + [i for i in out if keys[i][col] is None]  # without a value: last
        return out

    def includes(self, svc: FacilityService, page: list[dict], query: Query):
        found: dict[tuple[str, str], dict] = {}
        problems: list[Problem] = []
        have = {(r.get("resourceType"), r.get("id")) for r in page}
        for inc in query.includes:
            src, _, pname = inc.partition(":")
            param = self.rdef.params.get(pname)
            if param is None:
                continue
            for r in page:
                for v in match.values(r, param):
                    ref = v.get("reference") if isinstance(v, dict) else None
                    if not ref or ref.startswith("#"):
                        continue
                    t, i = match.ref_target(ref, "Patient" if pname in ("patient", "subject")
                                            else None)
                    if not t or (t, i) in have or (t, i) in found:
                        continue
                    try:
                        found[(t, i)] = svc.read(t, i)
                    except ServiceError:
                        continue
        for rev in query.revincludes:
            found.update(self._revinclude(svc, page, rev, have, problems))
        return list(found.values()), problems

    def _revinclude(self, svc: FacilityService, page, rev, have, problems):
        """``Src:param`` resources that point at the page, searched per patient of the page
        (clinical data is per patient, so one compartment search each)."""
        src, _, pname = rev.partition(":")
        rdef = registry().get(src)
        out: dict = {}
        if rdef is None or pname not in rdef.params or "patient" not in rdef.params:
            return out
        targets = {f"{r.get('resourceType')}/{r.get('id')}" for r in page}
        for pid in dict.fromkeys(p for p in (patient_of(r) for r in page) if p):
            q = Query(src, [Criterion(rdef.params["patient"], None, [f"Patient/{pid}"]),
                            Criterion(rdef.params[pname], None, sorted(targets))])
            _search_new(svc, src, q, have, problems, out)
        return out

    # -- instance level --------------------------------------------------------------------------
    def read(self, svc: FacilityService, rid: str) -> dict:
        return svc.read(self.type, rid)

    def vread(self, svc: FacilityService, rid: str, vid: str) -> dict:
        return svc.vread(self.type, rid, vid)

    def history(self, svc: FacilityService, rid: str) -> list[dict]:
        return svc.history(self.type, rid)

    def scoped(self, svc: FacilityService, query: Query) -> Query:
        """Name the patient for the service when the query names it under another parameter
        that reads the same element (``Coverage.beneficiary`` = ``Coverage.patient``)."""
        patient = self.rdef.params.get("patient")
        if patient is None or query.params("patient") or query.params("subject"):
            return query
        for c in query.criteria:
            if c.param.type == "reference" and c.param.paths == patient.paths and \
                    c.modifier in (None, "Patient"):
                query.criteria.append(Criterion(patient, c.modifier, list(c.values)))
                break
        return query


def _search_new(svc: FacilityService, src: str, q: Query, have, problems: list, out: dict) -> None:
    """Run one ``_revinclude`` search: its problems go to ``problems``, its matches not already
    in ``have`` into ``out`` by (type, id)."""
    res = svc.search(src, q)
    problems.extend(res.problems)
    for r in res.matches:
        k = (r.get("resourceType"), r.get("id"))
        if k not in have:
            out[k] = r


def patient_of(r: dict) -> str | None:
    """The patient id a clinical resource belongs to (subject / patient / beneficiary)."""
    for key in ("subject", "patient", "beneficiary"):
        ref = (r.get(key) or {}).get("reference", "") if isinstance(r.get(key), dict) else ""
        if ref:
            t, i = match.ref_target(ref, "Patient")
            return i if t == "Patient" else None
    return None


class CoverageProvider(ResourceProvider):
    """Coverages come from ADT-00 (IN1, record ids) and from UKE receipts (``{claim}-ho``,
    ``{claim}-ko{n}``): a receipt Coverage is found through its Claim's patient."""

    _RECEIPT = re.compile(r"^(uke-[A-Za-z0-9-]+)-(?:ho|ko\d{1,2})$")

    def _receipt(self, svc: FacilityService, rid: str) -> dict | None:
        m = self._RECEIPT.match(rid)
        if m is None:
            return None
        try:
            claim = svc.read("Claim", m.group(1))
        except ServiceError:
            raise NotFound(f"Coverage/{rid} not found") from None
        pid = patient_of(claim)
        if pid:
            for r in svc.patient_bundle(pid, {"Coverage"}).resources:
                if r.get("id") == rid:
                    return r
        raise NotFound(f"Coverage/{rid} not found")

    def read(self, svc, rid):
        return self._receipt(svc, rid) or svc.read(self.type, rid)

    def vread(self, svc, rid, vid):
        r = self._receipt(svc, rid)
        if r is None:
            return svc.vread(self.type, rid, vid)
        if r.get("meta", {}).get("versionId", "1") != vid:
            raise NotFound(f"Coverage/{rid} has no version {vid}")
        return r

    def history(self, svc, rid):
        r = self._receipt(svc, rid)
        return [r] if r is not None else svc.history(self.type, rid)

    def scoped(self, svc, query):
        query = super().scoped(svc, query)
        if query.params("patient"):
            return query
        for c in query.params("_id"):  # receipt Coverage ids: the patient comes from the Claim
            if c.modifier is None and all(self._RECEIPT.match(v) for v in c.values):
                pids = []
                for v in c.values:
                    try:
                        pids.append(patient_of(svc.read("Claim", self._RECEIPT.match(v).group(1))))
                    except ServiceError:
                        continue
                pids = [f"Patient/{p}" for p in dict.fromkeys(pids) if p]
                if pids:
                    query.criteria.append(Criterion(self.rdef.params["patient"], None, pids))
                break
        return query


class PatientProvider(ResourceProvider):
    def day_page(self, svc, query, pos):
        return None  # Patient searches page from the patient index (lazy_page)

    def lazy_page(self, svc: FacilityService, query: Query, offset: int):
        """The patient index answers with search stubs sorted like resources (``self.sort``)."""
        return svc.patient_page(query, offset, self.sort)

    def _revinclude(self, svc: FacilityService, page, rev, have, problems):
        src, _, pname = rev.partition(":")
        rdef = registry().get(src)
        out: dict[tuple[str, str], dict] = {}
        if rdef is None or pname not in rdef.params:
            return out
        for p in page:
            q = Query(src, [Criterion(rdef.params[pname], None, [f"Patient/{p['id']}"])])
            _search_new(svc, src, q, have, problems, out)
        return out

    def everything(self, svc: FacilityService, pager: Pager, base: str, pid: str,
                   items: list[tuple[str, str]], lenient: bool) -> dict:
        raw = items
        items, offset = _restore(pager, items, svc.code, "everything", pid)
        args: dict[str, str] = {}
        used = []
        for k, v in items:
            if k not in EVERYTHING_PARAMS:
                if lenient:
                    continue
                raise FhirError(400, f"unknown parameter {k!r} for $everything "
                                "(start, end, _since, _type, _count)", "invalid")
            args[k] = v
            used.append((k, v))
        for k in ("start", "end", "_since"):
            if k in args and match.date_range(args[k]) is None:
                raise FhirError(400, f"{k} must be a FHIR date or dateTime", "invalid")
        types = None
        if "_type" in args:
            types = {t.strip() for t in args["_type"].split(",") if t.strip()}
            unknown = [t for t in types if registry().get(t) is None]
            if unknown and not lenient:
                raise FhirError(400, f"_type: unknown resource type(s) {', '.join(unknown)}",
                                "invalid")
        count = 50
        if "_count" in args:
            if not args["_count"].isdigit():
                raise FhirError(400, "_count must be a non-negative integer", "invalid")
            count = min(int(args["_count"]), 1000)
        pos = _position(pager, raw)
        page = svc.everything_page(pid, args.get("start"), args.get("end"), args.get("_since"),
                                   types, count, offset, pos)
        problems = [p for p in page.problems if p.severity == "error"]
        path = f"Patient/{pid}/$everything"
        if page.total is not None:
            links = _links(pager, base, path, used, offset, count, page.total, svc.code,
                           "everything", used, key=pid)
        else:  # a large chart, paged by position: no total, no last/previous
            links = _position_links(pager, base, path, raw, used, offset, len(page.resources),
                                    page.next, svc.code, pid)
        return bundle.searchset(base, page.resources, [], problems, page.total, links)


def _shape(r: dict, q: Query) -> dict:
    if q.elements:
        return elements(r, q.elements)
    return summarize(r, q.summary)


def _restore(pager: Pager, items, facility: str, kind: str, key: str):
    """Follow a ``_cursor``: the query and offset come from the signed cursor."""
    cursor = [v for k, v in items if k == "_cursor"]
    if not cursor:
        return items, 0
    try:
        state = pager.decode(cursor[-1])
    except BadCursor as exc:
        raise FhirError(400, str(exc), "invalid") from None
    if state.get("f") != facility or state.get("k") != kind or state.get("t") != key:
        raise FhirError(400, "the paging cursor belongs to another search", "invalid")
    keep = [(k, v) for k, v in items if k in ("_format", "_pretty")]
    restored = [tuple(x) for x in state.get("q", [])]
    restored = [x for x in restored if x[0] not in ("_format", "_pretty")] + keep
    return restored, int(state.get("o", 0))


def _position(pager: Pager, items) -> tuple[str, int] | None:
    """The (day, skip) position a ``$everything`` cursor carries (checked by _restore)."""
    cursor = [v for k, v in items if k == "_cursor"]
    if not cursor:
        return None
    p = pager.decode(cursor[-1]).get("p")
    if (isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and len(p[0]) <= 64
            and isinstance(p[1], int) and p[1] >= 0):
        return p[0], p[1]
    return None


def _position_links(pager: Pager, base: str, path: str, raw, used, offset: int, shown: int,
                    nxt: tuple[str, int] | None, facility: str, key: str,
                    kind: str = "everything") -> dict[str, str]:
    """self / next / first links of a page paged by position (see services.everything)."""
    fmt = [(k, v) for k, v in raw if k in ("_format", "_pretty")]
    q = [(k, v) for k, v in used if k not in ("_format", "_pretty", "_cursor")]

    def at(o: int, p: tuple[str, int] | None) -> str:
        state: dict = {"f": facility, "k": kind, "t": key, "q": q, "o": o}
        if p is not None:
            state["p"] = list(p)
        return f"{base}/{path}?" + urlencode([("_cursor", pager.encode(state))] + fmt)

    cur = [v for k, v in raw if k == "_cursor"]
    links = {"self": (f"{base}/{path}?" + urlencode([("_cursor", cur[-1])] + fmt)) if cur else
             f"{base}/{path}" + ("?" + urlencode(list(used)) if used else "")}
    if nxt is not None:
        links["next"] = at(offset + shown, nxt)
    links["first"] = at(0, None)
    return links


def _links(pager: Pager, base: str, path: str, items, offset: int, count: int, total: int,
           facility: str, kind: str, applied, key: str | None = None) -> dict[str, str]:
    key = key or path
    fmt = [(k, v) for k, v in items if k in ("_format", "_pretty")]
    q = [(k, v) for k, v in items if k not in ("_format", "_pretty", "_cursor")]

    def at(o: int) -> str:
        token = pager.encode({"f": facility, "k": kind, "t": key, "q": q, "o": o})
        return f"{base}/{path}?" + urlencode([("_cursor", token)] + fmt)

    links = {"self": f"{base}/{path}" + ("?" + urlencode(list(applied)) if applied else "")
             if offset == 0 else at(offset)}
    if count > 0 and offset + count < total:
        links["next"] = at(offset + count)
    if offset > 0:
        links["previous"] = at(max(0, offset - count))
    if count > 0 and total > 0:
        links["first"] = at(0)
        links["last"] = at(((total - 1) // count) * count)
    return links


class GroupProvider(ResourceProvider):
    """Groups (Bulk Data cohorts) live in the data directory, a few per facility: a search
    matches them all, no patient needed."""

    def find(self, svc: FacilityService, query: Query):
        from flask import current_app

        from fhir_gateway.services import SearchResult
        groups = current_app.extensions["bulk"].groups.list(svc.code)
        return SearchResult([r for r in groups if match.matches_all(r, query.criteria)])


def providers() -> dict[str, ResourceProvider]:
    out: dict[str, ResourceProvider] = {}
    for t, rdef in registry().resources.items():
        cls = {"Patient": PatientProvider, "Coverage": CoverageProvider,
               "Group": GroupProvider}.get(t, ResourceProvider)
        out[t] = cls(rdef)
    return out


__all__ = ["ResourceProvider", "PatientProvider", "providers", "NotFound"]
