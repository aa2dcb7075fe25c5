"""Search-parameter registry loaded from ``capability_statement.json`` and request validation.

Each declared ``searchParam`` carries the element it searches as an extension
(``search-expression``, a small FHIRPath subset: ``Type.a.b`` with ``|`` alternatives; a choice
element is written without ``[x]``; ``where(kana)`` selects JP Core kana names).  The API only
accepts parameters declared here, and the test suite exercises every declared one on a live server.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

import orjson

from storage.memo import memo

EXPRESSION_EXT = "https://fhir-gateway.example.org/StructureDefinition/search-expression"
# A declared type that needs a scope no data token implies (AuditEvent: system/AuditEvent.read).
# Such types are served by their own views, not by the data sources: ``Registry.restricted``.
SCOPE_EXT = "https://fhir-gateway.example.org/StructureDefinition/required-scope"
# conformance/capability_statement.json is a link to the top-level file (the design card and the
# one source of truth); a wheel carries its content, so an installed package reads it the same way.
CAPABILITY_FILE = "capability_statement.json"


def capability_bytes() -> bytes:
    """The CapabilityStatement as packaged (``importlib.resources``: works from a wheel)."""
    return resources.files("conformance").joinpath(CAPABILITY_FILE).read_bytes()

# Result parameters valid on every search (values are checked by the API).
RESULT_PARAMS = frozenset({"_count", "_sort", "_include", "_revinclude", "_summary", "_elements",
                           "_total", "_totalMethod", "_format", "_pretty", "_cursor"})
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"text", "not", "missing"},
    "date": {"missing"},
    "reference": {"missing", "Patient"},
    "quantity": {"missing"},
}
PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb")
SUMMARY = {"true", "false", "text", "data", "count"}
# R4 _total; every total here is exact (counting is the search itself), so estimate = accurate.
TOTAL = {"none", "estimate", "accurate"}
# Aidbox's _totalMethod (sent by fhirpy's count()): mapped onto _total.
TOTAL_METHOD = {"count": "accurate", "estimate": "estimate", "none": "none"}
DEFAULT_COUNT = 50
MAX_COUNT = 1000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


class QueryError(ValueError):
    """A request parameter that is unknown or malformed (400, or ignored when lenient)."""


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str
    paths: tuple[tuple[str, ...], ...]  # alternatives; each a path of element names below the type
    documentation: str = ""


@dataclass(frozen=True)
class ResourceDef:
    type: str
    profile: str
    params: dict[str, SearchParam]
    includes: frozenset[str]
    revincludes: frozenset[str]
    needs_patient: bool

    @property
    def date_param(self) -> SearchParam | None:
        for name in ("date", "authoredon", "authored", "effective-time", "onset-date", "collected",
                     "started", "datetime", "created", "birthdate"):
            if name in self.params:
                return self.params[name]
        return None


@dataclass
class Criterion:
    """One ``name[:modifier]=v1,v2`` occurrence: the values are ORed, criteria are ANDed."""

    param: SearchParam
    modifier: str | None
    values: list[str]


@dataclass
class Query:
    type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (key, descending)
    includes: list[str] = field(default_factory=list)
    revincludes: list[str] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] = field(default_factory=list)
    total: str = "accurate"
    ignored: list[str] = field(default_factory=list)  # lenient mode: unknown parameters dropped
    notes: list[str] = field(default_factory=list)  # what the Bundle's outcome entry must say

    def params(self, name: str) -> list[Criterion]:
        return [c for c in self.criteria if c.param.name == name]


def _parse_expression(rtype: str, expr: str) -> tuple[tuple[str, ...], ...]:
    alts = []
    for alt in expr.split("|"):
        parts = alt.strip().split(".")
        if parts[0] != rtype:
            raise ValueError(f"expression {alt!r} does not start with {rtype}")
        alts.append(tuple(p.replace("where(kana)", "@kana") for p in parts[1:]))
    return tuple(alts)


class Registry:
    def __init__(self, statement: dict[str, Any]) -> None:
        self.statement = statement
        self.resources: dict[str, ResourceDef] = {}  # data types (SS-MIX2, receipts, groups)
        self.restricted: dict[str, ResourceDef] = {}  # other types, by their SCOPE_EXT scope
        self.scopes: dict[str, str] = {}
        for res in statement["rest"][0]["resource"]:
            rtype = res["type"]
            params = {}
            for sp in res.get("searchParam", []):
                expr = next((e["valueString"] for e in sp.get("extension", [])
                             if e.get("url") == EXPRESSION_EXT), None)
                if expr is None:
                    raise ValueError(f"{rtype}.{sp['name']} declares no search expression")
                params[sp["name"]] = SearchParam(sp["name"], sp["type"],
                                                 _parse_expression(rtype, expr),
                                                 sp.get("documentation", ""))
            scope = next((e["valueString"] for e in res.get("extension", [])
                          if e.get("url") == SCOPE_EXT), None)
            rdef = ResourceDef(
                rtype, res.get("profile", ""), params, frozenset(res.get("searchInclude", [])),
                frozenset(res.get("searchRevInclude", [])),
                needs_patient=scope is None and rtype not in ("Patient", "Claim", "Group"))
            if scope is None:
                self.resources[rtype] = rdef
            else:
                self.restricted[rtype], self.scopes[rtype] = rdef, scope

    def get(self, rtype: str) -> ResourceDef | None:
        return self.resources.get(rtype)

    @functools.cached_property
    def published(self) -> dict[str, Any]:
        """The statement as served: the internal extensions removed (a restricted type says
        its scope in its documentation)."""
        cs = copy.deepcopy(self.statement)
        for res in cs["rest"][0]["resource"]:
            res.pop("extension", None)
            for sp in res.get("searchParam", []):
                sp.pop("extension", None)
        return cs

    # -- request parsing ------------------------------------------------------------------------
    def parse(self, rtype: str, items: list[tuple[str, str]], lenient: bool = False,
              extra: frozenset[str] = frozenset()) -> Query:
        """Validate ``items`` (name, value pairs in request order) against the declaration.

        ``lenient`` (``Prefer: handling=lenient``) skips *unknown* parameters only, listing them
        in ``Query.ignored``; a declared parameter with a malformed value or an unsupported
        modifier is always a :class:`QueryError` — dropping it would silently widen the search."""
        rdef = self.resources[rtype]
        q = Query(rtype)
        for raw_name, value in items:
            name, _, modifier = raw_name.partition(":")
            if name in extra:
                continue
            if name in RESULT_PARAMS:
                self._result_param(q, rdef, name, modifier, value)
                continue
            sp = rdef.params.get(name)
            if sp is None:
                if not lenient:
                    raise QueryError(f"unknown search parameter {raw_name!r} for {rtype} "
                                     "(see /metadata)")
                q.ignored.append(raw_name)
                continue
            if modifier and modifier not in MODIFIERS.get(sp.type, ()):
                raise QueryError(f"modifier :{modifier} is not supported on {sp.type} "
                                 f"parameter {name}")
            values = _split_values(value)
            if not values or any(v == "" for v in values):
                raise QueryError(f"parameter {raw_name} has an empty value")
            for v in values:
                _check_value(sp, modifier, v)
            q.criteria.append(Criterion(sp, modifier or None, values))
        if q.ignored:
            q.notes.append("ignored unknown parameter(s) (Prefer: handling=lenient): "
                           + ", ".join(q.ignored))
        return q

    def sort_param(self, rdef: ResourceDef, key: str) -> SearchParam | None:
        """The date parameter a ``_sort`` key orders by: any declared date parameter by name
        (birthdate, authoredon, _lastUpdated, ...), and ``date`` on types whose clinical date
        has another name."""
        sp = rdef.params.get(key)
        if sp is not None and sp.type == "date":
            return sp
        return rdef.date_param if key == "date" else None

    def _result_param(self, q: Query, rdef: ResourceDef, name: str, modifier: str,
                      value: str) -> None:
        if modifier and not (name in ("_include", "_revinclude") and modifier == "iterate"):
            raise QueryError(f"{name} takes no modifier")
        if name == "_count":
            if not value.isdigit():
                raise QueryError("_count must be a non-negative integer")
            q.count = min(int(value), MAX_COUNT)
            if int(value) > MAX_COUNT:
                q.notes.append(f"_count={value} is above this server's maximum; "
                               f"pages hold {MAX_COUNT} entries")
        elif name == "_sort":
            q.sort = []
            for key in value.split(","):
                desc = key.startswith("-")
                key = key.lstrip("-")
                ok = (key == "jp-kana-sort" and "jp-kana-sort" in rdef.params) or \
                    self.sort_param(rdef, key) is not None
                if not ok:
                    raise QueryError(f"_sort={key} is not supported for {rdef.type} (date "
                                     "parameters, _lastUpdated, jp-kana-sort on Patient)")
                q.sort.append((key, desc))
        elif name == "_include":
            if value not in rdef.includes:
                raise QueryError(f"_include={value} is not supported for {rdef.type}")
            q.includes.append(value)
        elif name == "_revinclude":
            if value not in rdef.revincludes:
                raise QueryError(f"_revinclude={value} is not supported for {rdef.type}")
            q.revincludes.append(value)
        elif name == "_summary":
            if value not in SUMMARY:
                raise QueryError(f"_summary must be one of {', '.join(sorted(SUMMARY))}")
            q.summary = None if value == "false" else value
        elif name == "_elements":
            els = [e.strip() for e in value.split(",") if e.strip()]
            if not all(_NAME.match(e) for e in els):
                raise QueryError("_elements lists element names")
            q.elements = els
        elif name == "_total":
            if value not in TOTAL:
                raise QueryError("_total must be none, estimate or accurate")
            q.total = value
        elif name == "_totalMethod":
            if value not in TOTAL_METHOD:
                raise QueryError("_totalMethod must be count, estimate or none")
            q.total = TOTAL_METHOD[value]
        # _format, _pretty, _cursor are handled by the HTTP layer


def _split_values(value: str) -> list[str]:
    """Split on commas that are not escaped with a backslash; unescape ``\\,`` ``\\|`` ``\\$``."""
    out, cur, i = [], [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            cur.append(value[i:i + 2])
            i += 2
            continue
        if c == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


_DATE_VALUE = re.compile(
    r"^(?:eq|ne|lt|gt|le|ge|sa|eb)?(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})"
    r"(?:\.\d+)?)?)?(?:Z|[+-](\d{2}):(\d{2}))?)?)?)?$")


def _valid_date(v: str) -> bool:
    """The shape *and* the calendar: 2023-02-30, hour 25 or a zone beyond ±14:00 are not dates
    (they would otherwise match nothing and look like an empty result)."""
    m = _DATE_VALUE.match(v)
    if not m:
        return False
    y, mo, d, h, mi, s, zh, zm = m.groups()
    try:
        datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0))
    except ValueError:
        return False
    return zh is None or (int(zm) < 60 and int(zh) * 60 + int(zm) <= 14 * 60)
_NUMBER = re.compile(r"^(?:eq|ne|lt|gt|le|ge|sa|eb)?-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:\|.*)?$")


def _check_value(sp: SearchParam, modifier: str, v: str) -> None:
    if modifier == "missing":
        if v not in ("true", "false"):
            raise QueryError(f"{sp.name}:missing takes true or false")
        return
    if sp.type == "date" and not _valid_date(v):
        raise QueryError(f"{sp.name}: {v!r} is not a FHIR date with an optional prefix")
    if sp.type == "quantity" and not _NUMBER.match(v):
        raise QueryError(f"{sp.name}: {v!r} is not [prefix]number[|system|code]")


@memo(1)
def registry() -> Registry:
    return Registry(orjson.loads(capability_bytes()))
