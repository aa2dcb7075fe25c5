"""Patient search through the index with the REST API's exact semantics.

Each indexed patient carries a *stub*: its Patient resource cut down to the elements the declared
Patient search parameters read (``conformance`` registry).  The index only **narrows** — the
Whoosh terms below give a superset of the matching patients — and the caller then runs the very
matcher the walk path runs (:func:`fhir_gateway.services.match.matches_all`) on the stubs, and
sorts them the same way.  Index and walk therefore agree by construction, for every parameter and
modifier; only the page's Patients are then read from the storage.

Terms (one ``sterm`` field, a group prefix per kind):

* string parameters: per group (names, postal code) the 2–3 character grams of every string the
  parameter reaches, folded with ``search_key``, and a marker for each string's first character
  (:mod:`.keys`); a default or ``:exact`` query of one character is the marker, longer queries
  the AND of their grams (prefix and exact matches are substrings).
* token parameters: ``{param}={code}`` for every code the parameter reaches.
* string parameters again, per parameter: every prefix (up to ``PREFIX_MAX`` characters) of
  every folded string it reaches, ``s{param}\x03{prefix}``: FHIR's default string match is a
  prefix match on the same folded strings, so one such term is the exact answer.
* ``\x04`` on every document with a stub.  When every criterion of a search is one the terms
  answer exactly (:func:`plan`: default string matches, plain token codes), the index's hits
  *are* the matches: the caller counts and sorts them without decoding a stub.
* ``birthdate``: the ``birth`` number (YYYYMMDD; 00 for an unknown month or day): the range, plus
  the partial dates of its boundary years (a dateTime's range widened by a year for its zone);
  ``_lastUpdated``: the ``updated`` number (epoch seconds), ranges widened by a second.
"""

from __future__ import annotations

import math
from typing import Iterable

from whoosh.query import And, NumericRange, Or, Query, Term

from conformance import Criterion, registry

from . import keys as K

# string parameters narrowed by one group of terms (names share one: family ⊂ name)
STRING_GROUPS = {"name": "n", "family": "n", "given": "n", "jp-kana-sort": "n",
                 "address-postalcode": "a"}
TOKEN = "t"
STARTS = "s"  # exact prefix terms of one string parameter
HAS_STUB = "\x04"  # on every document with a stub
PREFIX_MAX = 32  # longest prefix indexed; longer default string queries are narrowed by grams
LU_SLACK = 1  # seconds: lastUpdated ranges are fractions of a second wide
KANA_SORT = "jp-kana-sort"


def _params() -> dict:
    rdef = registry().get("Patient")
    return rdef.params if rdef is not None else {}


def stub_of(patient: dict | None) -> dict | None:
    """The Patient cut to what the declared search parameters read (plus type and id)."""
    if not patient:
        return None
    keep = {p[0] for sp in _params().values() for p in sp.paths if p}
    out = {"resourceType": "Patient", "id": patient.get("id", "")}
    for k in sorted(keep):
        if k == "meta":
            lu = (patient.get("meta") or {}).get("lastUpdated")
            if lu:
                out["meta"] = {"lastUpdated": lu}
        elif k in patient and k not in out:
            out[k] = patient[k]
    return out


def _strings(stub: dict, names: Iterable[str]) -> set[str]:
    from fhir_gateway.services import match
    params = _params()
    out: set[str] = set()
    for n in names:
        sp = params.get(n)
        if sp is None:
            continue
        for v in match.values(stub, sp):
            for s in match._strings(v):
                k = K.search_key(s)
                if k:
                    out.add(k)
    return out


def terms_of(stub: dict) -> list[str]:
    """The ``sterm`` terms of one stub (see the module docstring)."""
    from fhir_gateway.services import match
    terms: set[str] = set()
    groups: dict[str, list[str]] = {}
    for name, g in STRING_GROUPS.items():
        groups.setdefault(g, []).append(name)
    for g, names in groups.items():
        for k in _strings(stub, names):
            terms.add(g + K.PREFIX + k[0])
            terms.update(g + x for x in K.grams(k))
    for name in STRING_GROUPS:
        for k in _strings(stub, [name]):
            terms.update(_starts(name, k[:i]) for i in range(1, min(len(k), PREFIX_MAX) + 1))
    terms.add(HAS_STUB)
    for name, sp in _params().items():
        if sp.type != "token":
            continue
        for v in match.values(stub, sp):
            for _, code, _ in match.codings(v):
                if code:
                    terms.add(f"{TOKEN}{name}={code}")
    return sorted(terms)


def _starts(param: str, prefix: str) -> str:
    return f"{STARTS}{param}\x03{prefix}"


def sort_keys(stub: dict) -> dict[str, object]:
    """What ``_sort`` orders a Patient by, stored per document so a sorted search reads these
    few bytes per match instead of the stub: each date parameter's ``match.sort_value`` (None
    when the stub has no value) and the ``jp-kana-sort`` key as the API's sort builds it."""
    from fhir_gateway.services import match
    out: dict[str, object] = {n: match.sort_value(stub, sp)
                              for n, sp in _params().items() if sp.type == "date"}
    sp = _params().get(KANA_SORT)
    vals = match.values(stub, sp) if sp else []
    out[KANA_SORT] = K.search_key(str(vals[0])) if vals else "\uffff"
    return out


def order(records: list, sort: list[tuple[str, bool]], keys_of) -> list:
    """``records`` (id order already) in the order of the API's sort of Patients
    (``ResourceProvider.sort``: stable sorts from the last ``_sort`` key to the first; a date
    key's missing values last in either direction); ``keys_of(record)`` gives its
    :func:`sort_keys`.  ``tests/test_patient_index_search.py`` checks it against the API's."""
    rdef = registry().get("Patient")
    out = list(records)
    for key, desc in reversed(sort):
        if key == KANA_SORT:
            out.sort(key=lambda r: keys_of(r)[KANA_SORT], reverse=desc)
            continue
        sp = registry().sort_param(rdef, key) if rdef is not None else None
        name = sp.name if sp is not None else ""
        keyed = [r for r in out if keys_of(r).get(name) is not None]
        missing = [r for r in out if keys_of(r).get(name) is None]
        keyed.sort(key=lambda r: keys_of(r)[name], reverse=desc)
        out = keyed + missing
    return out


def updated_seconds(stub: dict) -> int | None:
    from fhir_gateway.services import match
    r = match.date_range((stub.get("meta") or {}).get("lastUpdated", ""))
    return math.floor(r[0]) if r else None


# -- narrowing -----------------------------------------------------------------------------------

def _string_query(c: Criterion, group: str) -> tuple[Query | None, bool]:
    if c.modifier not in (None, "exact", "contains"):
        return None, False
    keys = [K.search_key(v) for v in c.values]
    if c.modifier is None and all(0 < len(k) <= PREFIX_MAX for k in keys):
        return _or([Term("sterm", _starts(c.param.name, k)) for k in keys]), True
    alts: list[Query] = []
    for k in keys:
        if not k or (c.modifier == "contains" and len(k) < 2):
            return None, False  # matches too much to narrow on: the matcher decides
        if len(k) == 1:
            alts.append(Term("sterm", group + K.PREFIX + k))
        else:
            qs = [Term("sterm", group + t) for t in K.query_grams(k)]
            alts.append(qs[0] if len(qs) == 1 else And(qs))
    return _or(alts), False


def _token_query(c: Criterion) -> tuple[Query | None, bool]:
    """The code's term; exact for plain codes (the matcher then compares codes only)."""
    from fhir_gateway.services import match
    if c.modifier is not None:
        return None, False
    alts: list[Query] = []
    exact = True
    for v in c.values:
        parts = match._split_pipe(v)
        code = parts[0] if len(parts) == 1 else "|".join(parts[1:])
        if not code:
            return None, False  # "system|" matches on the system alone
        exact = exact and len(parts) == 1
        alts.append(Term("sterm", f"{TOKEN}{c.param.name}={code}"))
    return _or(alts), exact


def _birth_query(c: Criterion) -> Query | None:
    if c.modifier is not None:
        return None
    alts: list[Query] = []
    for v in c.values:
        try:
            lo, hi = K.birth_range(v)
        except K.BadCriterion:
            return None
        if "T" in v:  # a dateTime: its zone may move the day across a year's end
            lo = max(0, (lo // 10000 - 1) * 10000)
            hi = min(99999999, (hi // 10000 + 1) * 10000 + 9999)
        alts.append(NumericRange("birth", lo, hi))
        # birth dates known to the year or month only (YYYY0000, YYYYMM00) of the boundary
        # years may match a range they are not inside (FHIR ge/le on a partial date)
        for year in {lo // 10000, hi // 10000}:
            for n in [year * 10000] + [year * 10000 + m * 100 for m in range(1, 13)]:
                if not lo <= n <= hi:
                    alts.append(NumericRange("birth", n, n))
    return _or(alts)


def _updated_query(c: Criterion) -> Query | None:
    from fhir_gateway.services import match
    if c.modifier is not None:
        return None
    alts: list[Query] = []
    for v in c.values:
        prefix, text = match._prefix(v)
        p = match.date_range(text)
        if p is None or prefix not in ("eq", "ge", "gt", "sa", "le", "lt", "eb"):
            return None
        lo = math.floor(p[0]) - LU_SLACK if prefix in ("eq", "ge", "gt", "sa") else None
        hi = math.ceil(p[1]) + LU_SLACK if prefix in ("eq", "le", "lt", "eb") else None
        alts.append(NumericRange("updated", lo, hi))
    return _or(alts)


def plan(criteria: list[Criterion]) -> tuple[list[Query], bool]:
    """Whoosh queries whose AND holds a superset of the patients matching ``criteria``
    (criteria the terms cannot narrow are left to the matcher), and whether that AND is
    exactly the matches of the patients with a stub (every criterion exact)."""
    out: list[Query] = []
    exact = True
    for c in criteria:
        name, ptype = c.param.name, c.param.type
        q: Query | None = None
        ok = False
        if ptype == "string" and name in STRING_GROUPS:
            q, ok = _string_query(c, STRING_GROUPS[name])
        elif ptype == "token":
            q, ok = _token_query(c)
        elif name == "birthdate":
            q = _birth_query(c)
        elif name == "_lastUpdated":
            q = _updated_query(c)
        if q is not None:
            out.append(q)
        exact = exact and ok and q is not None
    return out, exact


def narrow(criteria: list[Criterion]) -> list[Query]:
    """The queries of :func:`plan` (a superset of the matches)."""
    return plan(criteria)[0]


def _or(alts: list[Query]) -> Query | None:
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else Or(alts)
