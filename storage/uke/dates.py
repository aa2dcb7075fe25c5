"""UKE dates: 和暦 GYYMM(DD) and 西暦 YYYYMM(DD), told apart by length.  Parsing only; FHIR
date text is the mappers' business (``mappers.claim.uke_date_fhir``)."""

from __future__ import annotations

from datetime import date

from ..memo import memo

ERAS = {"1": 1867, "2": 1911, "3": 1925, "4": 1988, "5": 2018}  # 明治 大正 昭和 平成 令和 (year 1 = base+1)


@memo(4096)
def parse_uke_date(text: str) -> tuple[int, int, int | None] | None:
    """和暦 GYYMM / GYYMMDD or 西暦 YYYYMM / YYYYMMDD (told apart by length) -> (y, m, d|None).
    Remembered: a file's receipts repeat the same months and dates."""
    t = (text or "").strip()
    if not t.isdigit() or len(t) not in (5, 6, 7, 8):
        return None
    if len(t) in (5, 7):
        base = ERAS.get(t[0])
        if base is None or int(t[1:3]) == 0:
            return None
        y, m, d = base + int(t[1:3]), int(t[3:5]), (int(t[5:7]) if len(t) == 7 else None)
    else:
        y, m, d = int(t[:4]), int(t[4:6]), (int(t[6:8]) if len(t) == 8 else None)
    try:
        date(y, m, d or 1)
    except ValueError:
        return None
    return y, m, d


def uke_month(text: str) -> str | None:
    """``YYYYMM`` of a UKE month (和暦 or 西暦)."""
    p = parse_uke_date(text)
    return f"{p[0]:04d}{p[1]:02d}" if p else None
