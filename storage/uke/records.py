"""What a UKE file is read into: records, items, receipts and the file, with its problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import compress

from ..reader import ERROR, Problem
from .layouts import DAYS, TENSUHYO, Layout, variant_of
from .matching import normalise_karte_no

# Problem kinds (stable strings).
KIND_DECODE = "uke-decode"
KIND_UNKNOWN = "uke-unknown-record"
KIND_FIELDS = "uke-field-count"
KIND_STRUCTURE = "uke-structure"
KIND_TOTALS = "uke-totals"
KIND_DATE = "uke-date"
KIND_IO = "io-error"
KIND_EMPTY = "zero-bytes"

_DAY_NUMBERS = range(1, len(DAYS) + 1)


@dataclass(slots=True)
class UkeRecord:
    """One line: its fields (``fields[0]`` is the record id), line number and byte offset."""

    fields: list[str]
    line: int
    offset: int = 0  # of the line (after a BOM: see ``UkeFile.skip``)
    layout: Layout | None = None
    category: str = ""  # effective 診療識別 of SI/IY/TO/SS/CO (carried forward when left empty)
    end: int = 0  # offset just past the line and its line break

    @property
    def type(self) -> str:
        return self.fields[0]

    def __getitem__(self, key: int | str) -> str:
        """``rec[5]`` = field at 1-based position 5; ``rec["name"]`` = field by layout name."""
        if key.__class__ is str:  # (isinstance costs more, and this runs 30 times per item)
            lay = self.layout
            pos = lay.positions.get(key) if lay is not None else None
            if pos is None:
                return ""
            key = pos
        fields = self.fields
        return fields[key - 1].strip() if 0 < key <= len(fields) else ""  # type: ignore[operator]

    def get(self, key: int | str) -> str:
        return self[key]

    def values(self, names: tuple[str, ...]) -> list[str]:
        """``[rec[name] for name in names]`` in one call (the layout's indices of ``names`` are
        worked out once per layout): the mapper reads ~15 fields of every item."""
        lay = self.layout
        if lay is None:
            return [""] * len(names)
        fields = self.fields
        n = len(fields)
        return [fields[i].strip() if i < n else "" for i in lay.indices(names)]

    def raw(self, key: int | str) -> str:
        """Unstripped value (fixed-width fields such as HO 保険者番号 are space-padded)."""
        if isinstance(key, str):
            pos = self.layout.positions.get(key) if self.layout is not None else None
            if pos is None:
                return ""
            key = pos
        return self.fields[key - 1] if 0 < key <= len(self.fields) else ""

    def named(self) -> dict[str, str]:
        """Non-empty fields by name (``field_N`` for positions past the layout)."""
        names = self.layout.fields if self.layout else ()
        return {(names[i] if i < len(names) else f"field_{i + 1}"): v
                for i, v in enumerate(self.fields) if v and i}

    def days(self) -> dict[int, int]:
        """算定日情報: day of month -> count, for SI/IY/TO/SS/JD records (one slice of the 31
        contiguous day fields: most are empty, and an item is read once per receipt)."""
        out: dict[int, int] = {}
        lay = self.layout
        at = lay.days_at if lay is not None else -1
        if at < 0:
            return out
        days = self.fields[at:at + len(DAYS)]
        for i in compress(_DAY_NUMBERS, days):  # the non-empty ones, found in C
            v = days[i - 1].strip()
            if v.isdecimal():
                n = int(v)
                if n:
                    out[i] = n
        return out


@dataclass(slots=True)
class Item:
    """One SI/IY/TO/SS record with its effective 診療識別 and the CO comments that belong to it."""

    record: UkeRecord
    category: str  # 診療識別, carried forward from earlier lines when the record leaves it empty
    unit: int  # 点数・回数算定単位 number within the receipt (points sit on the unit's last line)
    comments: list[UkeRecord] = field(default_factory=list)

    @property
    def type(self) -> str:
        return self.record.type


@dataclass(slots=True)
class Receipt:
    re: UkeRecord
    ho: UkeRecord | None = None
    ko: list[UkeRecord] = field(default_factory=list)
    sn: list[UkeRecord] = field(default_factory=list)
    jd: list[UkeRecord] = field(default_factory=list)
    mf: UkeRecord | None = None
    sy: list[UkeRecord] = field(default_factory=list)
    hs: list[UkeRecord] = field(default_factory=list)  # 歯科 傷病名部位
    items: list[Item] = field(default_factory=list)
    comments: list[UkeRecord] = field(default_factory=list)  # CO not attached to an item
    sj: list[UkeRecord] = field(default_factory=list)
    records: list[UkeRecord] = field(default_factory=list)  # every record, in file order

    @property
    def span(self) -> tuple[int, int, int]:
        """(start, end, first line) of the receipt's bytes, for :func:`read_ranges`."""
        return self.records[0].offset, self.records[-1].end, self.records[0].line

    @property
    def receipt_no(self) -> str:
        return self.re["receipt_no"]

    @property
    def lines(self) -> tuple[int, int]:
        return self.records[0].line, self.records[-1].line

    @property
    def karte_no(self) -> str:
        return normalise_karte_no(self.re["karte_no"])

    @property
    def total_points(self) -> int | None:
        """HO 合計点数, or the first KO's for 公費単独 receipts (the GO check adds these)."""
        for rec in ([self.ho] if self.ho else []) + self.ko:
            v = rec["points"]
            if v.isdigit():
                return int(v)
        return None

    @property
    def inpatient(self) -> bool:
        """レセプト種別 4th digit odd = 入院."""
        t = self.re["receipt_type"]
        return len(t) == 4 and t[3].isdigit() and int(t[3]) % 2 == 1


@dataclass(slots=True)
class UkeFile:
    path: str
    ir: UkeRecord | None = None  # the facility header (IR, or UK/YK when no IR)
    headers: list[UkeRecord] = field(default_factory=list)  # every header record
    receipts: list[Receipt] = field(default_factory=list)
    go: UkeRecord | None = None
    problems: list[Problem] = field(default_factory=list)
    codec: str = ""
    orphans: list[UkeRecord] = field(default_factory=list)  # records outside any receipt
    skip: int = 0  # bytes before offset 0 (a UTF-8 BOM)

    @property
    def kind(self) -> str:
        """点数表 name of the file (医科 / 歯科 / 調剤 ...)."""
        return TENSUHYO.get(self.tensuhyo, self.tensuhyo)

    @property
    def tensuhyo(self) -> str:
        for h in ([self.ir] if self.ir else []) + self.headers:
            if h["tensuhyo"]:
                return h["tensuhyo"]
        return ""

    @property
    def variant(self) -> str:
        return variant_of(self.tensuhyo)

    @property
    def facility_code(self) -> str:
        """10-digit 医療機関コード of the IR header (see :func:`facility_code`)."""
        return facility_code(self.ir)

    @property
    def claim_month(self) -> str:
        return self.ir["claim_month"] if self.ir else ""

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def problem(self, rec: UkeRecord | None, kind: str, reason: str,
                severity: str = ERROR) -> None:
        where = f"line {rec.line}: " if rec else ""
        self.problems.append(Problem(self.path, kind, where + reason, severity,
                                     rec.offset if rec else None))


def facility_code(header: UkeRecord | None) -> str:
    """10-digit 医療機関コード = 都道府県(2) + 点数表(1) + 医療機関コード(7) of a header record;
    the header's own code when a part is missing, "" without a header."""
    if header is None:
        return ""
    code = header["facility_code"]
    if header["prefecture"] and header["tensuhyo"] and code:
        return header["prefecture"].zfill(2) + header["tensuhyo"] + code.zfill(7)
    return code
