"""HL7 times as FHIR text: ``dateTime``, ``date`` and ``instant``.

``storage.timestamps`` parses HL7 TS/DTM into :class:`~storage.timestamps.HL7Time` (a Tokyo
time and the precision that was written) and knows nothing of FHIR; how such a time is written
in a resource lives here, beside the other data-type conversions."""

from __future__ import annotations

from collections.abc import Callable

from storage.memo import memo
from storage.timestamps import HL7Time, parse_ts


def datetime_text(t: HL7Time) -> str:
    """FHIR dateTime with only the precision that was written (+09:00 for times)."""
    v = t.value
    if t.precision == "year":
        return f"{v.year:04d}"
    if t.precision == "month":
        return f"{v.year:04d}-{v.month:02d}"
    if t.precision == "day":
        return v.date().isoformat()
    spec = {"minute": "seconds", "second": "seconds", "millis": "milliseconds"}[t.precision]
    return v.isoformat(timespec=spec)


def date_text(t: HL7Time) -> str:
    """FHIR date (no time), for elements such as Patient.birthDate: a year or month as
    written, else the day."""
    if t.precision in ("year", "month"):
        return datetime_text(t)
    return t.value.date().isoformat()


def instant_text(t: HL7Time) -> str:
    """FHIR instant (meta.lastUpdated, issued): seconds, or milliseconds when written."""
    return t.value.isoformat(timespec="milliseconds" if t.precision == "millis" else "seconds")


def fhir_datetime(text: str | None) -> str | None:
    """An HL7 timestamp's text as FHIR dateTime; None for empty or unparseable text."""
    return _formatted(text, datetime_text, _fhir_datetime)


def fhir_date(text: str | None) -> str | None:
    """An HL7 timestamp's text as FHIR date; None for empty or unparseable text."""
    return _formatted(text, date_text, _fhir_date)


def _formatted(text: str | None, fmt: Callable[[HL7Time], str],
               cached: Callable[[str], str | None]) -> str | None:
    if not text:
        return None
    if not isinstance(text, str):  # odd inputs stay out of the cache
        t = parse_ts(text)
        return fmt(t) if t else None
    return cached(text)


@memo(8192)
def _fhir_datetime(text: str) -> str | None:
    t = parse_ts(text)
    return datetime_text(t) if t else None


@memo(8192)
def _fhir_date(text: str) -> str | None:
    t = parse_ts(text)
    return date_text(t) if t else None
