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
    top = max(k for k, v in fields.items() if v) if any(fields.values()) else 0
    return "|".join([sid] + [fields.get(i, "") for i in range(1, top + 1)])


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
    return dt.strftime("%Y%m%d%H%M%S")[:digits]


def d8(d: date | datetime) -> str:
    return d.strftime("%Y%m%d")


def ts17(dt: datetime) -> str:
    """発生日時 part of a file name: YYYYMMDDHHMMSSfff."""
    return dt.strftime("%Y%m%d%H%M%S") + f"{dt.microsecond // 1000:03d}"
