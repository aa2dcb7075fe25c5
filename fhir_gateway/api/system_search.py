"""``GET [base]?_type=A,B&…``: search across resource types (FHIR R4 3.1.1.3 "search all
resource types", interaction ``search-system``).

Every listed type is searched with the same parameters by its own provider (so a type answers
exactly what ``GET [base]/A?…`` would), and the matches are one result set: the types in the
order ``_type`` lists them, each in its own search's order, paged with ``_count`` and signed
cursors like any search.  A parameter must mean something for *every* listed type — the common
``_id`` and ``_lastUpdated``, or one such as ``patient`` that each type declares — otherwise the
answer is a 400 naming it (a parameter applied to some types only would silently widen the
search for the others).  ``_type`` is required: clinical data is searched per patient."""

from __future__ import annotations

from typing import Callable

from conformance import Query, QueryError, registry
from fhir_gateway.paging import Pager
from fhir_gateway.services import FacilityService
from storage.reader import Problem

from . import bundle
from .errors import FhirError
from .providers import ResourceProvider, _links, _restore, _shape

# result parameters that mean the same for every type; the rest (_sort, _include,
# _revinclude) are per type and refused here
CONTROL = frozenset({"_type", "_count", "_summary", "_elements", "_total", "_totalMethod",
                     "_format", "_pretty", "_cursor"})
PER_TYPE_ONLY = frozenset({"_sort", "_include", "_revinclude"})


def parse_types(items: list[tuple[str, str]]) -> list[str]:
    """The ``_type`` list (in order, once each); 400 when missing or naming an unknown type."""
    types = [t.strip() for k, v in items if k == "_type" for t in v.split(",") if t.strip()]
    if not types:
        raise FhirError(400, "a search of all types needs _type (e.g. "
                        "?_type=Patient,Observation&_id=…); see /metadata", "invalid")
    unknown = [t for t in dict.fromkeys(types) if registry().get(t) is None]
    if unknown:
        raise FhirError(400, f"_type: this server does not serve {', '.join(unknown)}",
                        "not-supported")
    return list(dict.fromkeys(types))


def _check_common(types: list[str], items: list[tuple[str, str]], lenient: bool) -> None:
    """400 for a parameter that is not declared by every listed type (and not unknown to all
    of them under lenient handling) or that only makes sense for one type."""
    for raw, _ in items:
        name = raw.partition(":")[0]
        if name in CONTROL:
            continue
        if name in PER_TYPE_ONLY:
            raise FhirError(400, f"{name} is not supported in a search of several types; "
                            "search each type on its own", "not-supported")
        lacking = [t for t in types if name not in registry().resources[t].params]
        if not lacking:
            continue
        if lenient and len(lacking) == len(types):
            continue  # unknown to every type: skipped (and said) like any unknown parameter
        raise FhirError(400, f"search parameter {raw!r} is not declared for "
                        f"{', '.join(lacking)}: a search of several types takes only "
                        "parameters every listed type declares (_id, _lastUpdated, …)",
                        "invalid")


def search(providers: dict[str, ResourceProvider], svc: FacilityService, pager: Pager,
           base: str, items: list[tuple[str, str]], lenient: bool,
           may_search: Callable[[str], None] = lambda t: None) -> dict:
    """The searchset Bundle of one page of a search across ``_type``; ``may_search(type)``
    raises when the client may not search a listed type (SMART scopes)."""
    items, offset = _restore(pager, items, svc.code, "system", "")
    types = parse_types(items)
    for t in types:
        may_search(t)
    _check_common(types, items, lenient)
    per_type = [(t, [(k, v) for k, v in items if k != "_type"]) for t in types]
    queries: list[tuple[ResourceProvider, Query]] = []
    for t, its in per_type:
        try:
            q = registry().parse(t, its, lenient=lenient)
        except QueryError as exc:
            raise FhirError(400, f"{t}: {exc}", "invalid") from None
        queries.append((providers[t], q))
    first = queries[0][1]
    count = first.count
    page: list[dict] = []
    problems: list[Problem] = []
    total = 0
    for p, q in queries:
        q = p.scoped(svc, q)
        start = max(0, offset - total)  # where this page starts inside this type's results
        want = count - len(page) if first.summary != "count" else 0
        got, n, probs = _one_type(p, svc, q, start, want)
        page.extend(got)
        problems.extend(probs)
        total += n
    applied = [i for i in items if i[0] not in first.ignored]
    links = _links(pager, base, "", items, offset, count, total, svc.code, "system", applied,
                   key="")
    return bundle.searchset(base, [_shape(r, first) for r in page], [], problems,
                            None if first.total == "none" else total, links,
                            summary_count=first.summary == "count", notes=first.notes)


def _one_type(p: ResourceProvider, svc: FacilityService, q: Query, start: int, want: int
              ) -> tuple[list[dict], int, list[Problem]]:
    """(the ``want`` matches from ``start`` on, the type's total, problems) of one type: an
    index page when the provider has one (only those resources are mapped), else the full
    search in the provider's order."""
    q.count = want
    lazy = p.lazy_page(svc, q, start)
    if lazy is not None:
        got, n, probs = lazy
        return list(got), n, list(probs)
    result = p.find(svc, q)
    ordered = p.sort(result.matches, q)
    return ordered[start: start + want], len(ordered), list(result.problems)
