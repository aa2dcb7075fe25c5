"""Names for receipt codes: the 支払基金 基本マスター (医薬品, 診療行為, 特定器材, 傷病名, 修飾語).

UKE receipts carry codes only (``SI,…,112007410``): without the masters a clinician sees
numbers.  ``fhir-gateway masters import DIR`` reads the official CSV files (CP932, quoted or not,
one row per code) into ``{data_dir}/masters.sqlite3``; :func:`apply_names` then gives every
Claim item, diagnosis and modifier its name after mapping (the mapper stays pure), so the API,
the viewer and the keyword search all see the same names.  A code the masters do not know is
shown as 「名称マスター未登録」 — never silently as a bare number.

Columns relied on (0-based, the official layouts; the file name does not matter, the kind comes
from column 1 マスター種別):

=========  ====  =====  ============================  =============  ==================
master     kind  code   name                          kana           unit
=========  ====  =====  ============================  =============  ==================
医薬品      Y     2      4 医薬品名・規格名 漢字名称       6              9 単位 漢字名称
診療行為    S     2      4 省略名称 漢字名称               6              9 データ規格名
特定器材    T     2      4 特定器材名・規格名 漢字名称     6              9 単位 漢字名称
傷病名      B     2      5 傷病名 基本名称                 9              —
修飾語      Z     2      6 修飾語名称                      9              —
=========  ====  =====  ============================  =============  ==================
"""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from storage.memo import memo

UNKNOWN = "名称マスター未登録"
DB_NAME = "masters.sqlite3"
# kind -> (code column, name column, kana column, unit column or None)
LAYOUT: dict[str, tuple[int, int, int, int | None]] = {
    "Y": (2, 4, 6, 9), "S": (2, 4, 6, 9), "T": (2, 4, 6, 9), "B": (2, 5, 9, None), "Z": (2, 6, 9, None),
}
KIND_NAMES = {"Y": "医薬品", "S": "診療行為", "T": "特定器材", "B": "傷病名", "Z": "修飾語"}
# Claim coding systems -> master kind (mappers.terminology)
SYSTEM_KIND = {"masterY-medicine": "Y", "masterS-medicalProcedure": "S", "masterT-device": "T",
               "masterB-disease": "B", "masterZ-disease-modifier": "Z"}


class MasterError(Exception):
    pass


@dataclass
class ImportResult:
    files: dict[str, int]        # file name -> rows imported
    kinds: dict[str, int]        # kind -> rows
    skipped: list[str]           # files that are not a master we know, with the reason


def _decode(data: bytes) -> str:
    for enc in ("cp932", "utf-8-sig"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise MasterError("not CP932 (nor UTF-8) text")


def read_master_file(path: Path) -> tuple[str, list[tuple[str, str, str, str]]]:
    """(kind, [(code, name, kana, unit)]) of one master CSV; MasterError when it is not one."""
    text = _decode(path.read_bytes())
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(x.strip() for x in r)]
    if not rows:
        raise MasterError("empty file")
    kinds = {r[1].strip().upper() for r in rows if len(r) > 1}
    if len(kinds) != 1 or next(iter(kinds)) not in LAYOUT:
        raise MasterError(f"column 2 マスター種別 is {sorted(kinds)[:3]}, not one of Y/S/T/B/Z")
    kind = kinds.pop()
    ci, ni, ki, ui = LAYOUT[kind]
    out = []
    for n, r in enumerate(rows, 1):
        if len(r) <= ni:
            raise MasterError(f"row {n}: {len(r)} columns, the {KIND_NAMES[kind]} layout needs {ni + 1}+")
        code = r[ci].strip()
        if not code:
            continue
        out.append((code, r[ni].strip(), r[ki].strip() if len(r) > ki else "",
                    r[ui].strip() if ui is not None and len(r) > ui else ""))
    return kind, out


class MasterStore:
    """The imported masters (sqlite, read-only for the server); reloaded when the file changes."""

    def __init__(self, data_dir: Path | str | None) -> None:
        self.path = Path(data_dir) / DB_NAME if data_dir else None
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._names: dict[tuple[str, str], str] = {}

    def _load(self) -> dict[tuple[str, str], str]:
        if self.path is None:
            return {}
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                try:
                    self._names = {(k, c): n for k, c, n in
                                   con.execute("SELECT kind, code, name FROM names")}
                finally:
                    con.close()
                self._stamp = stamp
            return self._names

    def table(self) -> "Names":
        """The (kind, code) -> name table as of now (re-read when the file changed)."""
        return self._load()

    def __len__(self) -> int:
        return len(self._load())

    @property
    def version(self) -> tuple | None:
        self._load()
        return self._stamp


def import_dir(folder: Path, data_dir: Path) -> ImportResult:
    """Read every master CSV in ``folder`` into ``{data_dir}/masters.sqlite3`` (replacing the
    rows of the kinds found; other kinds stay).  Written to a temporary file, then renamed."""
    if not folder.is_dir():
        raise MasterError(f"{folder} is not a folder")
    found: dict[str, list[tuple[str, str, str, str]]] = {}
    files: dict[str, int] = {}
    skipped: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".txt")):
        try:
            kind, rows = read_master_file(path)
        except MasterError as exc:
            skipped.append(f"{path.name}: {exc}")
            continue
        found.setdefault(kind, []).extend(rows)
        files[path.name] = len(rows)
    if not found:
        raise MasterError(f"no master files in {folder}" + (f" ({'; '.join(skipped)})" if skipped else ""))
    data_dir.mkdir(parents=True, exist_ok=True)
    final = data_dir / DB_NAME
    tmp = data_dir / f".{DB_NAME}.{time.time_ns()}.tmp"
    con = sqlite3.connect(tmp)
    try:
        con.execute("CREATE TABLE names (kind TEXT, code TEXT, name TEXT, kana TEXT, unit TEXT,"
                    " PRIMARY KEY (kind, code))")
        con.execute("CREATE TABLE imports (kind TEXT, files TEXT, rows INTEGER, at REAL)")
        if final.exists():  # keep the kinds this import does not bring
            old = sqlite3.connect(f"file:{final}?mode=ro", uri=True)
            try:
                keep = [r for r in old.execute("SELECT kind, code, name, kana, unit FROM names")
                        if r[0] not in found]
                keep_log = [r for r in old.execute("SELECT kind, files, rows, at FROM imports")
                            if r[0] not in found]
            finally:
                old.close()
            con.executemany("INSERT OR REPLACE INTO names VALUES (?,?,?,?,?)", keep)
            con.executemany("INSERT INTO imports VALUES (?,?,?,?)", keep_log)
        for kind, rows in found.items():
            con.executemany("INSERT OR REPLACE INTO names VALUES (?,?,?,?,?)",
                            [(kind, *r) for r in rows])
            con.execute("INSERT INTO imports VALUES (?,?,?,?)",
                        (kind, ",".join(n for n in files), len(rows), time.time()))
        con.commit()
    finally:
        con.close()
    tmp.replace(final)
    return ImportResult(files, {k: len(v) for k, v in found.items()}, skipped)


Names = dict[tuple[str, str], str]  # (kind, code) -> name


def _kind_of(system: object) -> str | None:
    return _system_kind(str(system or ""))


@memo(256)
def _system_kind(system: str) -> str | None:
    """The master kind of a coding system (a handful of systems, asked for every coding)."""
    return SYSTEM_KIND.get(system.rsplit("/", 1)[-1])


def _name_coding(coding: dict, table: Names) -> str | None:
    kind = _kind_of(coding.get("system", ""))
    if kind is None or not coding.get("code"):
        return None
    name = table.get((kind, str(coding["code"])))
    if name and not coding.get("display"):
        coding["display"] = name
    return name


def _first_code(codings: list[dict]) -> str:
    for c in codings:
        code = c.get("code")
        if code:
            return str(code)
    return ""


def _name_item(it: dict, table: Names) -> None:
    """A billed item: display on every known coding, text = the first name (or 未登録 + code)."""
    pos = it.get("productOrService") or {}
    codings = pos.get("coding") or []
    first = _name_codings(codings, table)
    if not pos.get("text"):
        pos["text"] = first or f"{UNKNOWN} ({_first_code(codings)})"


def _name_codings(codings: list[dict], table: Names) -> str | None:
    """Name every coding (:func:`_name_coding`); the first name found, if any."""
    if not table:  # no masters imported: nothing to name (the common case, skipped cheaply)
        return None
    first = None
    for c in codings:
        name = _name_coding(c, table)
        if name and first is None:
            first = name
    return first


def _modifiers(d: dict, table: Names) -> list[tuple[str, str]]:
    """(code, name) of the 修飾語 (Z master) extensions of a Claim diagnosis."""
    mods: list[tuple[str, str]] = []
    for ext in d.get("extension") or []:
        vc = ext.get("valueCoding")
        if isinstance(vc, dict) and _kind_of(vc.get("system", "")) == "Z":
            code = str(vc.get("code", ""))
            mods.append((code, _name_coding(vc, table) or f"[{UNKNOWN} {code}]"))
    return mods


def _name_diagnosis(d: dict, table: Names) -> None:
    """A diagnosis: display on known codings, text = modifiers + disease name (or 未登録 + code)."""
    cc = d.get("diagnosisCodeableConcept") or {}
    codings = cc.get("coding") or []
    first = _name_codings(codings, table)
    mods = _modifiers(d, table)
    if not cc.get("text") and codings:
        base = first or f"{UNKNOWN} ({_first_code(codings)})"
        cc["text"] = _with_modifiers(base, mods)


def apply_names(resources: list[dict], store: MasterStore) -> list[dict]:
    """Give Claim item, diagnosis and modifier codings their master names (in place); a code the
    masters do not know gets the text 「名称マスター未登録 (code)」 so it is never a bare number.
    The table is looked up once per call (one stat of the master file), not once per coding."""
    return name_resources(resources, store.table())


def name_resources(resources: list[dict], table: Names) -> list[dict]:
    """:func:`apply_names` with the table already looked up (once for many receipts)."""
    for r in resources:
        if r.get("resourceType") != "Claim":
            continue
        for it in r.get("item") or []:
            _name_item(it, table)
        for d in r.get("diagnosis") or []:
            _name_diagnosis(d, table)
    return resources


def _with_modifiers(base: str, mods: list[tuple[str, str]]) -> str:
    """修飾語 codes 8xxx are suffixes (「の疑い」), the others come before the name (部位, 左右 …)."""
    pre = "".join(n for c, n in mods if not c.startswith("8"))
    suf = "".join(("の" + n) if n == "疑い" else n for c, n in mods if c.startswith("8"))
    return f"{pre}{base}{suf}"
