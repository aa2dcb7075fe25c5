"""Lenient HL7 v2 timestamp (TS/DTM) parsing, always in Asia/Tokyo.

Real SS-MIX2 files carry 8/12/14/17-digit forms, HL7 fractions (``20111220224447.3399``),
offsets (``+0900``), hours 24-47 meaning "the next day" (night-shift clocks) and all-zero times
that mean "date only".  The result keeps the precision that was actually written, so a mapper can
emit ``2011-12-20`` rather than inventing ``T00:00:00``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from .memo import memo

JST = timezone(timedelta(hours=9), "JST")

_TS = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.?(?P<f>\d{1,4}))?(?P<tz>[+-]\d{4})?$"
)


@dataclass(frozen=True, slots=True)
class HL7Time:
    value: datetime  # timezone-aware
    precision: str  # year | month | day | minute | second | millis


def parse_ts(text: str | None) -> HL7Time | None:
    """Parse an HL7 timestamp leniently; None for empty or unparseable text.

    Cached: a message repeats its times (MSH-7, ORC-9, SPM-17 on every result) and HL7Time is
    immutable, so sharing one is safe.
    """
    if not text:
        return None
    if not isinstance(text, str):  # keep odd inputs out of the cache (and unhashable ones)
        return _parse(text)
    return _parse_cached(text)


def _parse(text: str) -> HL7Time | None:
    text = text.strip()
    if len(text) in (8, 12, 14, 17) and text.isascii() and text.isdigit():
        return _parse_digits(text)
    return _parse_general(text)


def _parse_digits(text: str) -> HL7Time | None:
    """The shapes nearly every stored time has — YYYYMMDD, YYYYMMDDHHMM, YYYYMMDDHHMMSS and a
    file name's 発生日時 YYYYMMDDHHMMSSfff — without the regex: the same result as
    :func:`_parse_general` (a test compares them), at a third of its cost (every file's
    発生日時 is a new text, so the cache does not help there)."""
    n = len(text)
    try:
        base = date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None
    if n == 8:
        return _at(base, "day", None, 0, None, "", JST)
    return _at(base, "day", int(text[8:10]), int(text[10:12]),
               int(text[12:14]) if n >= 14 else None, text[14:], JST)


def _parse_general(text: str) -> HL7Time | None:
    if len(text) > 14 and "." not in text and text[:17].isdigit() and len(text) in (15, 16, 17):
        # 発生日時-style YYYYMMDDHHMMSSfff without the dot
        text = text[:14] + "." + text[14:]
    m = _TS.match(text)
    if not m:
        return None
    g = m.groupdict()
    try:
        year = int(g["y"])
        month = int(g["mo"] or 1)
        day = int(g["d"] or 1)
        base = date(year, month, day)
    except ValueError:
        return None
    if g["mo"] is None:
        precision = "year"
    elif g["d"] is None:
        precision = "month"
    else:
        precision = "day"
    tz = JST
    if g["tz"]:
        sign = 1 if g["tz"][0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(g["tz"][1:3]), minutes=int(g["tz"][3:5])))
    return _at(base, precision, int(g["h"]) if g["h"] is not None else None, int(g["mi"] or 0),
               int(g["s"]) if g["s"] is not None else None, g["f"] or "", tz)


def _at(base: date, precision: str, hour: int | None, minute: int, second: int | None,
        frac: str, tz: timezone) -> HL7Time | None:
    """``base`` at ``hour``:``minute``:``second``.``frac`` in ``tz`` (``hour`` None: the date
    alone, with the ``precision`` its text had), as a Tokyo time; None out of range.  Hours
    24-47 are the next day (night-shift clocks); an all-zero time means the date alone."""
    h, s = hour or 0, second or 0
    if h > 47 or minute > 59 or s > 59:
        return None
    if hour is not None and not (h == minute == s == 0 and not frac.strip("0")):
        precision = "millis" if frac else ("second" if second is not None else "minute")
    micro = int((frac + "000000")[:6]) if frac else 0
    try:
        if h < 24:
            value = datetime(base.year, base.month, base.day, h, minute, s, micro, tzinfo=tz)
        else:
            value = datetime(base.year, base.month, base.day, tzinfo=tz) + timedelta(
                hours=h, minutes=minute, seconds=s, microseconds=micro)
        return HL7Time(value if tz is JST else value.astimezone(JST), precision)
    except OverflowError:  # past 9999-12-31 (hours 24-47, an offset) or before year 1
        return None


_parse_cached = memo(8192)(_parse)


def folder_date(text: str) -> date | None:
    """A YYYYMMDD date folder as a date (None for '-' or malformed)."""
    t = parse_ts(text) if len(text) == 8 else None
    return t.value.date() if t else None
