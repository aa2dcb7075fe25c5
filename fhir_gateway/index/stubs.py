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
LU_SLACK = 1  # seconds: lastUpdated ranges are fractions of a second wide


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
    for name, sp in _params().items():
        if sp.type != "token":
            continue
        for v in match.values(stub, sp):
            for _, code, _ in match.codings(v):
                if code:
                    terms.add(f"{TOKEN}{name}={code}")
    return sorted(terms)


def updated_seconds(stub: dict) -> int | None:
    from fhir_gateway.services import match
    r = match.date_range((stub.get("meta") or {}).get("lastUpdated", ""))
    return math.floor(r[0]) if r else None


# -- narrowing -----------------------------------------------------------------------------------

def _string_query(c: Criterion, group: str) -> Query | None:
    if c.modifier not in (None, "exact", "contains"):
        return None
    alts: list[Query] = []
    for v in c.values:
        k = K.search_key(v)
        if not k or (c.modifier == "contains" and len(k) < 2):
            return None  # matches too much to narrow on: the matcher decides
        if len(k) == 1:
            alts.append(Term("sterm", group + K.PREFIX + k))
        else:
            qs = [Term("sterm", group + t) for t in K.query_grams(k)]
            alts.append(qs[0] if len(qs) == 1 else And(qs))
    return _or(alts)


def _token_query(c: Criterion) -> Query | None:
    from fhir_gateway.services import match
    if c.modifier is not None:
        return None
    alts: list[Query] = []
    for v in c.values:
        parts = match._split_pipe(v)
        code = parts[0] if len(parts) == 1 else "|".join(parts[1:])
        if not code:
            return None  # "system|" matches on the system alone
        alts.append(Term("sterm", f"{TOKEN}{c.param.name}={code}"))
    return _or(alts)


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


def narrow(criteria: list[Criterion]) -> list[Query]:
    """Whoosh queries whose AND holds a superset of the patients matching ``criteria``
    (criteria the terms cannot narrow are left to the matcher)."""
    out: list[Query] = []
    for c in criteria:
        name, ptype = c.param.name, c.param.type
        q: Query | None = None
        if ptype == "string" and name in STRING_GROUPS:
            q = _string_query(c, STRING_GROUPS[name])
        elif ptype == "token":
            q = _token_query(c)
        elif name == "birthdate":
            q = _birth_query(c)
        elif name == "_lastUpdated":
            q = _updated_query(c)
        if q is not None:
            out.append(q)
    return out


def _or(alts: list[Query]) -> Query | None:
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else Or(alts)
