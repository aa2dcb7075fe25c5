"""Tiny helpers to write HL7 v2.5 ER7 segments by HL7 field number.

``seg("PV1", {1: "0001", 2: "O", 10: "01"})`` reads like the field tables in
reference/ssmix2.md appendix A, so a reviewer can check positions without counting bars.
"""

from __future__ import annotations

from datetime import date, datetime

PROFILE = "SS-MIX2_1.20^SS-MIX2^1.2.392.200250.2.1.100.1.2.120^ISO"


def seg(sid: str, fields: dict[int, str]) -> str:
    """One segment; ``fields`` maps HL7 field numbers (1-based) to already-encoded values."""
    if not fields:
        return sid
    get = fields.get
    return "|".join([sid] + [get(i, "") for i in range(1, max(fields) + 1)]).rstrip("|")


def msh(facility: str, ts: str, msg_type: str, control_id: str) -> str:
    """MSH exactly as the guideline samples write it (MSH-18 ``~ISO IR87``, MSH-20, MSH-21)."""
    return ("MSH|^~\\&|HIS|" + facility + "|GW|RCV|" + ts + "||" + msg_type + "|" + control_id
            + "|P|2.5||||||~ISO IR87||ISO 2022-1994|" + PROFILE)


def cwe(code: str, text: str, system: str) -> str:
    return f"{code}^{text}^{system}"


def sub(code: str, text: str, system: str) -> str:
    """A CWE used as a component (``&`` separated), e.g. TQ1-3 and RXE-19."""
    return f"{code}&{text}&{system}"


def ts(dt: datetime, digits: int = 14) -> str:
    return f"{dt.year:04d}{dt.month:02d}{dt.day:02d}{dt.hour:02d}{dt.minute:02d}{dt.second:02d}"[:digits]


def d8(d: date | datetime) -> str:
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def ts17(dt: datetime) -> str:
    """発生日時 part of a file name: YYYYMMDDHHMMSSfff."""
    return ts(dt) + f"{dt.microsecond // 1000:03d}"
