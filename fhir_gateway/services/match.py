"""FHIR search semantics over mapped resources (plain dicts): element paths, date ranges with
implicit precision, tokens, strings (folded with :func:`storage.text.search_key`), references and
quantities.  Pure functions; the registry says which element a parameter hits."""

from __future__ import annotations

import calendar
import functools
import math
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from conformance import Criterion, SearchParam
from storage.text import search_key

JST = timezone(timedelta(hours=9))
KANA_EXT = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
NEG_INF, POS_INF = -math.inf, math.inf

# -- element access ------------------------------------------------------------------------------


def _step(node: Any, name: str) -> list:
    if not isinstance(node, dict):
        return []
    if name in node:
        v = node[name]
        return v if isinstance(v, list) else [v]
    out = []
    n = len(name)
    for k, v in node.items():  # choice element: effective -> effectiveDateTime / effectivePeriod
        if k.startswith(name) and len(k) > n and k[n].isupper():
            out.extend(v if isinstance(v, list) else [v])
    return out


def _is_kana(name: Any) -> bool:
    return isinstance(name, dict) and any(
        e.get("url") == KANA_EXT and e.get("valueCode") == "SYL" for e in name.get("extension", ()))


def values(resource: dict, param: SearchParam) -> list:
    """Every value the parameter's expression reaches in ``resource``."""
    out: list = []
    for path in param.paths:
        nodes: list = [resource]
        for name in path:
            if name == "@kana":  # where(kana): keep JP Core kana (SYL) names
                nodes = [n for n in nodes if _is_kana(n)]
            else:
                nodes = [x for n in nodes for x in _step(n, name)]
            if not nodes:
                break
        out.extend(n for n in nodes if n is not None and n != "")
    return out


# -- dates ---------------------------------------------------------------------------------------

_DT = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?"
                 r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def date_range(text: str) -> tuple[float, float] | None:
    """Half-open [lo, hi) in epoch seconds for a FHIR date/dateTime/instant of any precision.
    A value without a zone is read in Japan time (+09:00), the storage's zone."""
    m = _DT.match(text or "")
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        if tz == "Z":
            zone = timezone.utc
        elif tz:
            sign = 1 if tz[0] == "+" else -1
            zone = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
        else:
            zone = JST
        lo = datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0),
                      int(s or 0), tzinfo=zone).timestamp()
    except (ValueError, OverflowError):  # impossible date or zone: matches nothing, never a 500
        return None
    # The end is added in seconds (zones are fixed offsets): 9999-12-31 has an end too.
    if mo is None:
        return lo, lo + (366 if calendar.isleap(int(y)) else 365) * 86400.0
    if d is None:
        return lo, lo + calendar.monthrange(int(y), int(mo))[1] * 86400.0
    if h is None:
        return lo, lo + 86400.0
    if mi is None:
        return lo, lo + 3600.0
    if s is None:
        return lo, lo + 60.0
    if frac:
        lo += float(frac)
        return lo, lo + 10 ** -(len(frac) - 1)
    return lo, lo + 1.0


def value_range(v: Any) -> tuple[float, float] | None:
    """Range of an element value: a date string, a Period, or a Timing's events."""
    if isinstance(v, str):
        return date_range(v)
    if isinstance(v, dict):
        if "start" in v or "end" in v:
            lo = date_range(v["start"]) if v.get("start") else None
            hi = date_range(v["end"]) if v.get("end") else None
            return (lo[0] if lo else NEG_INF, hi[1] if hi else POS_INF)
        if "event" in v:
            rs = [r for r in (date_range(e) for e in v["event"]) if r]
            if rs:
                return min(r[0] for r in rs), max(r[1] for r in rs)
    return None


def _prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb") \
            and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def _cmp_range(prefix: str, r: tuple[float, float], p: tuple[float, float]) -> bool:
    rlo, rhi = r
    plo, phi = p
    eq = rlo >= plo and rhi <= phi
    if prefix == "eq":
        return eq
    if prefix == "ne":
        return not eq
    if prefix == "gt":
        return rhi > phi
    if prefix == "lt":
        return rlo < plo
    if prefix == "ge":
        return rhi > phi or eq
    if prefix == "le":
        return rlo < plo or eq
    if prefix == "sa":
        return rlo >= phi
    if prefix == "eb":
        return rhi <= plo
    return False


def match_date(vals: list, value: str) -> bool:
    prefix, text = _prefix(value)
    p = date_range(text)
    if p is None:
        return False
    return any(_cmp_range(prefix, r, p) for r in (value_range(v) for v in vals) if r)


# -- tokens --------------------------------------------------------------------------------------


def _split_pipe(value: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", value)
    return [p.replace("\\|", "|").replace("\\,", ",").replace("\\$", "$").replace("\\\\", "\\")
            for p in parts]


def codings(v: Any) -> Iterable[tuple[str | None, str | None, str | None]]:
    """(system, code, display-or-text) for a code, Coding, CodeableConcept or Identifier."""
    if isinstance(v, bool):
        yield None, "true" if v else "false", None
    elif isinstance(v, (str, int)):
        yield None, str(v), None
    elif isinstance(v, dict):
        if "coding" in v or "text" in v and "system" not in v:
            for c in v.get("coding", ()):
                yield c.get("system"), c.get("code"), c.get("display")
            if v.get("text"):
                yield None, None, v["text"]
        elif "value" in v and "code" not in v:  # Identifier / ContactPoint
            yield v.get("system"), str(v["value"]), None
        else:  # Coding / Quantity
            yield v.get("system"), v.get("code"), v.get("display")


@functools.lru_cache(maxsize=1024)
def query_key(value: str) -> str:
    """``search_key`` of a *query* value.  A search compares one value with every candidate
    resource, so the value is normalised once per request, not once per resource (a 30,000-
    character ``code:text`` took 58.7 s on the heavy patient — issue 13 M2)."""
    return search_key(value)


def token_hit(vals: list, value: str, text: bool = False) -> bool:
    if text:
        key = query_key(value)
        return any(d and search_key(d).startswith(key) for v in vals for _, _, d in codings(v))
    parts = _split_pipe(value)
    if len(parts) == 1:
        system, code = None, parts[0]
        return any(c == code for v in vals for _, c, _ in codings(v))
    system, code = parts[0], "|".join(parts[1:])
    for v in vals:
        for s, c, _ in codings(v):
            if c is None and not (system and not code):
                continue
            if system == "":
                if not s and c == code:
                    return True
            elif code == "":
                if s == system:
                    return True
            elif s == system and c == code:
                return True
    return False


# -- strings -------------------------------------------------------------------------------------


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):  # HumanName / Address given whole
        out = []
        for k in ("text", "family", "given", "line", "city", "state", "postalCode"):
            x = v.get(k)
            out.extend(x if isinstance(x, list) else [x] if x else [])
        return out
    return []


def string_hit(vals: list, value: str, modifier: str | None) -> bool:
    strs = [s for v in vals for s in _strings(v)]
    if modifier == "exact":
        return value in strs
    key = query_key(value)
    if modifier == "contains":
        return any(key in search_key(s) for s in strs)
    return any(search_key(s).startswith(key) for s in strs)


# -- references ----------------------------------------------------------------------------------


def ref_target(value: str, default_type: str | None) -> tuple[str | None, str]:
    """``Patient/123``, ``123`` or ``http://.../Patient/123`` -> (type, id)."""
    value = value.rstrip("/")
    parts = value.split("/")
    if len(parts) >= 2 and "/_history/" not in value:
        return parts[-2], parts[-1]
    if "/_history/" in value:
        head = value.split("/_history/")[0].split("/")
        return (head[-2] if len(head) >= 2 else default_type), head[-1]
    return default_type, value


def reference_hit(vals: list, value: str, want_type: str | None) -> bool:
    rtype, rid = ref_target(value, want_type)
    for v in vals:
        ref = v.get("reference") if isinstance(v, dict) else None
        if not ref or ref.startswith("#"):
            continue
        t, i = ref_target(ref, None)
        if i == rid and (rtype is None or t == rtype):
            return True
    return False


# -- quantities ----------------------------------------------------------------------------------


def _dec(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except (InvalidOperation, ValueError):
        return None


def quantity_hit(vals: list, value: str) -> bool:
    prefix, rest = _prefix(value)
    parts = _split_pipe(rest)
    number = _dec(parts[0])
    if number is None:
        return False
    system = parts[1] if len(parts) > 1 and parts[1] else None
    code = parts[2] if len(parts) > 2 and parts[2] else None
    exp = number.as_tuple().exponent
    half = Decimal(5).scaleb(exp - 1) if isinstance(exp, int) else Decimal(0)
    for v in vals:
        if not isinstance(v, dict) or "value" not in v:
            continue
        q = _dec(str(v["value"]))
        if q is None:
            continue
        if system and v.get("system") != system:
            continue
        if code and code not in (v.get("code"), v.get("unit")):
            continue
        ok = {"eq": number - half <= q < number + half, "ne": not (number - half <= q < number + half),
              "lt": q < number, "gt": q > number, "le": q <= number, "ge": q >= number,
              "sa": q > number, "eb": q < number}[prefix]
        if ok:
            return True
    return False


# -- one criterion -------------------------------------------------------------------------------


def matches(resource: dict, crit: Criterion) -> bool:
    sp, mod = crit.param, crit.modifier
    vals = values(resource, sp)
    if mod == "missing":
        want_missing = crit.values[0] == "true"
        return (not vals) == want_missing
    if sp.type == "token":
        if mod == "not":
            return not any(token_hit(vals, v) for v in crit.values)
        return any(token_hit(vals, v, text=mod == "text") for v in crit.values)
    if sp.type == "string":
        return any(string_hit(vals, v, mod) for v in crit.values)
    if sp.type == "date":
        return any(match_date(vals, v) for v in crit.values)
    if sp.type == "reference":
        want = "Patient" if sp.name in ("patient", "subject") or mod == "Patient" else None
        return any(reference_hit(vals, v, want) for v in crit.values)
    if sp.type == "quantity":
        return any(quantity_hit(vals, v) for v in crit.values)
    return False


def matches_all(resource: dict, criteria: list[Criterion]) -> bool:
    return all(matches(resource, c) for c in criteria)


def sort_value(resource: dict, param: SearchParam | None) -> float | None:
    if param is None:
        return None
    rs = [r for r in (value_range(v) for v in values(resource, param)) if r]
    return min(r[0] for r in rs) if rs else None
