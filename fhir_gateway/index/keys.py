"""Search keys of the patient index: name grams, birth-date numbers, and the query side of both.

Names are compared on :func:`storage.text.search_key` (width, hiragana/katakana, dashes and
spaces folded).  Whoosh has no cheap substring query, so each name key is indexed as all of its
2- and 3-character grams plus one marker per name part (family, given) for 1-character prefix
queries; the kanji name's terms carry a tag so a kana query never meets them.  A query of 1-3
characters is then exactly one term; a longer one is the AND of trigrams covering it, and those
candidates are checked against the real keys (see :func:`contains`), so the result is exact
substring matching.
"""

from __future__ import annotations

import re
from datetime import date

from storage.text import search_key

GRAM_MAX = 3  # longest gram indexed; longer queries are ANDed trigrams plus verification
# Control characters never occur in a readable message (the reader rejects them), so these
# prefixes cannot collide with a name's own grams.
PREFIX = "\x01"  # marker: the first character of a name part
KANJI = "\x02"  # tag of the kanji name's terms (kana terms are untagged)

__all__ = ["search_key", "grams", "query_grams", "name_terms", "query_terms", "birth_number", "birth_range",
           "BadCriterion"]


class BadCriterion(ValueError):
    """A search value that cannot mean anything (e.g. the birth date ``1999-13``)."""


def grams(key: str) -> set[str]:
    """Every substring of ``key`` with 2..GRAM_MAX characters."""
    out: set[str] = set()
    n = len(key)
    for size in range(2, min(n, GRAM_MAX) + 1):
        for i in range(n - size + 1):
            out.add(key[i:i + size])
    return out


def name_terms(full: str, parts: tuple[str, ...] | list[str]) -> set[str]:
    """Index terms of one name (kanji or kana): grams of the full key, a marker per part."""
    terms = grams(full)
    for p in (full, *parts):
        if p:
            terms.add(PREFIX + p[0])
    return terms


def query_terms(key: str) -> list[str]:
    """Terms to AND for a query key: the marker for one character, else :func:`query_grams`."""
    return [PREFIX + key] if len(key) == 1 else query_grams(key)


def query_grams(key: str) -> list[str]:
    """Terms whose AND finds every key containing ``key`` (len >= 2).

    Up to GRAM_MAX characters the key itself is a term; beyond, non-overlapping trigrams plus
    the last one cover it (a superset: candidates are verified afterwards).
    """
    if len(key) <= GRAM_MAX:
        return [key]
    out = [key[i:i + GRAM_MAX] for i in range(0, len(key) - GRAM_MAX + 1, GRAM_MAX)]
    last = key[-GRAM_MAX:]
    if last not in out:
        out.append(last)
    return out


def contains(query: str, keys: tuple[str, ...] | list[str], parts: tuple[str, ...] | list[str]) -> bool:
    """The matching rule: a 1-character query is a prefix of a name part; longer ones are
    substrings of a full key."""
    if len(query) == 1:
        return any(p.startswith(query) for p in parts) or any(k.startswith(query) for k in keys)
    return any(query in k for k in keys)


# --- birth dates ------------------------------------------------------------------------------

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?$")
_FHIR_PREFIX = re.compile(r"^(eq|ne|ge|gt|le|lt|sa|eb|ap)(?=\d)")


def _parts(text: str) -> tuple[int, int, int]:
    """(year, month, day) with 0 for what the text leaves out; raises BadCriterion."""
    t = text.strip()
    m = _DATE.match(t) or _COMPACT.match(t)
    if not m:
        raise BadCriterion(f"birth date {text!r} is not YYYY, YYYY-MM or YYYY-MM-DD")
    y, mo, d = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    try:
        date(y, mo or 1, d or 1)
    except ValueError:
        raise BadCriterion(f"birth date {text!r} is not a calendar date") from None
    return y, mo, d


def birth_number(fhir_date: str | None) -> int | None:
    """The indexed number of a birth date: YYYYMMDD, with 00 for an unknown month or day."""
    if not fhir_date:
        return None
    try:
        y, mo, d = _parts(fhir_date[:10])
    except BadCriterion:
        return None
    return y * 10000 + mo * 100 + d


def _bounds(text: str) -> tuple[int, int]:
    y, mo, d = _parts(text)
    if d:
        n = y * 10000 + mo * 100 + d
        return n, n
    if mo:
        return y * 10000 + mo * 100, y * 10000 + mo * 100 + 99
    return y * 10000, y * 10000 + 9999


def birth_range(value: str | tuple[str | None, ...] | list[str | None]) -> tuple[int, int]:
    """Inclusive number range for ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or a ``(start, end)``
    pair (either end may be None).  FHIR prefixes ``eq ge gt le lt sa eb`` are understood too, so
    the REST layer can pass a parameter through; ``ne`` and ``ap`` give the whole range (the
    caller filters).  Raises :class:`BadCriterion`."""
    lo_all, hi_all = 0, 99999999
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise BadCriterion("a birth-date range is a (start, end) pair")
        start, end = value
        lo = _bounds(start)[0] if start else lo_all
        hi = _bounds(end)[1] if end else hi_all
        return lo, hi
    text = str(value).strip()
    m = _FHIR_PREFIX.match(text)
    op = m.group(1) if m else "eq"
    text = text[m.end():] if m else text
    if len(text) > 10 and text[10] == "T":
        text = text[:10]  # a dateTime: birth dates are days
    lo, hi = _bounds(text)
    if op in ("ne", "ap"):
        return lo_all, hi_all  # cannot narrow (ne) or fuzzy (ap): every date, callers filter
    if op == "eq":
        return lo, hi
    if op == "ge":
        return lo, hi_all
    if op in ("gt", "sa"):
        return hi + 1, hi_all
    if op == "le":
        return lo_all, hi
    return lo_all, lo - 1  # lt, eb
