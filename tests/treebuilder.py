"""Write small SS-MIX2 trees for tests, with the same name and encoding code the product uses."""

from __future__ import annotations

from pathlib import Path

from storage.encoding import encode_iso2022jp
from storage.layout import Storage
from storage.names import FileName

MSH = ("MSH|^~\\&|HIS|SEND|GW|RCV|{ts}||{mtype}|{ctl}|P|2.5||||||~ISO IR87||ISO 2022-1994|"
       "SS-MIX2_1.20^SS-MIX2^1.2.392.200250.2.1.100.1.2.120^ISO")

ADT00_BODY = [
    "EVN||201112202100|||||SEND001",
    "PID|0001||{pid}^^^^PI||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19480405|M|||"
    "^^^^422-8033^JPN^H^静岡県静岡市登呂１－３－５",
]


def message(mtype: str, body: list[str], ts: str = "20111220224447", pid: str = "9999013") -> str:
    lines = [MSH.format(ts=ts, mtype=mtype, ctl=ts)] + [b.format(pid=pid) for b in body]
    return "\r".join(lines) + "\r"


def write(root: Path, name: FileName, text: str | None = None, raw: bytes | None = None,
          folder: tuple[str, ...] | None = None) -> Path:
    """Write one file where the guideline puts it (or into ``folder`` for misplaced tests)."""
    parts = folder or (Storage.candidate_dirs(name.patient_id)[0] + (name.date, name.data_type))
    d = root.joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    p = d / name.name
    p.write_bytes(raw if raw is not None else encode_iso2022jp(text or "") + b"\x1c")
    return p


def adt00(pid: str, ts: str = "20111220224447339", flag: str = "1") -> tuple[FileName, str]:
    name = FileName(pid, "-", "ADT-00", "999999999999999", ts, "-", flag)
    return name, message("ADT^A08^ADT_A01", ADT00_BODY, ts[:14], pid)
