"""レセプト電算 (UKE) receipt files: bytes -> records -> receipts, with every defect reported.

A UKE file is positional CSV (no quoting, no escaping), one record per line, the first field
being the record id (``IR``, ``RE``, ``SI`` ...).  Genuine files are CP932 with CRLF and a
trailing 0x1A; exported samples are often UTF-8 with LF, so both are read.  Nothing here knows
FHIR: :mod:`mappers.claim` turns a :class:`Receipt` into a Claim.

Layouts (field names by position) are plain data in :data:`LAYOUTS` so that a writer (the
synthetic hospital) can build records with :func:`build_record` and :func:`encode_uke` and the
reader can take them back apart.  Layouts change with every 記録条件仕様 revision, so a record
type may have several variants, chosen by field count (medical vs dental files differ).

Every problem (undecodable bytes, unknown record types, wrong field counts, records outside a
receipt, GO totals that do not add up) becomes a :class:`storage.reader.Problem` whose reason
starts with ``line N:`` and whose offset is the byte offset of that line.  Nothing raises.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Iterator

from .encoding import WAVE_DASH_FOLD
from .names import is_valid_patient_id
from .reader import ERROR, WARNING, Problem

EOF = b"\x1a"

# Problem kinds (stable strings).
KIND_DECODE = "uke-decode"
KIND_UNKNOWN = "uke-unknown-record"
KIND_FIELDS = "uke-field-count"
KIND_STRUCTURE = "uke-structure"
KIND_TOTALS = "uke-totals"
KIND_DATE = "uke-date"
KIND_IO = "io-error"
KIND_EMPTY = "zero-bytes"

HEADER_TYPES = ("IR", "UK", "YK")
ITEM_TYPES = ("SI", "IY", "TO", "SS")  # SS = 歯科診療行為
DAYS = tuple(f"day{d:02d}" for d in range(1, 32))  # 算定日情報 1日 … 31日

# 点数表 (IR-4): which kind of receipt file this is.
TENSUHYO = {"1": "医科", "2": "DPC", "3": "歯科", "4": "調剤", "5": "介護老人保健施設",
            "6": "訪問看護ステーション", "B": "介護医療院"}


@dataclass(frozen=True, slots=True)
class Layout:
    """Field names of one record variant; ``fields[0]`` is the record id (position 1)."""

    record: str
    variant: str  # "medical" | "dental" | ...
    fields: tuple[str, ...]
    labels: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.fields)

    def position(self, name: str) -> int:
        """1-based position of a field name (HL7-style numbering, as in the spec tables)."""
        return self.fields.index(name) + 1


def _layout(record: str, variant: str, *spec: str) -> Layout:
    """``spec`` items are ``name:ラベル``; ``name*N`` repeats a block N times with suffixes."""
    names, labels = ["record_id"], ["レコード識別情報"]
    for item in spec:
        name, _, label = item.partition(":")
        names.append(name)
        labels.append(label or name)
    return Layout(record, variant, tuple(names), tuple(labels))


_COMMENTS = ("comment_code_1:コメントコード1", "comment_text_1:文字データ1",
             "comment_code_2:コメントコード2", "comment_text_2:文字データ2",
             "comment_code_3:コメントコード3", "comment_text_3:文字データ3")
_DAYS = tuple(f"{d}:算定日{i}日" for i, d in enumerate(DAYS, 1))
_DEPTS = tuple(
    f"{n}_{k}:{label}{k}"
    for k in (1, 2, 3)
    for n, label in (("department", "診療科名"), ("body_part", "人体の部位等"), ("sex_class", "性別等"),
                     ("treatment", "医学的処置"), ("specific_disease", "特定疾病"))
)

# Medical (医科) layouts observed in 2018-2019 files (reference/ssmix2.md §7.3).  Dental (歯科)
# variants are read from ORCA's dental sample; fields whose meaning is not confirmed are named
# ``field_N`` (kept, never dropped).
_ALL: tuple[Layout, ...] = (
    _layout("IR", "medical", "payer:審査支払機関", "prefecture:都道府県", "tensuhyo:点数表",
            "facility_code:医療機関コード", "reserved_6:予備", "facility_name:医療機関名称",
            "claim_month:請求年月", "volume:マルチボリューム識別情報", "phone:電話番号"),
    _layout("IR", "dental", "payer:審査支払機関", "prefecture:都道府県", "tensuhyo:点数表",
            "facility_code:医療機関コード", "reserved_6:予備", "claim_month:請求年月",
            "phone:電話番号", "field_9"),
    _layout("UK", "dental", "payer:審査支払機関", "prefecture:都道府県", "tensuhyo:点数表",
            "facility_code:医療機関コード", "reserved_6:予備", "facility_name:医療機関名称",
            "claim_month:請求年月", "field_9", "volume:マルチボリューム識別情報"),
    _layout("RE", "medical", "receipt_no:レセプト番号", "receipt_type:レセプト種別",
            "service_month:診療年月", "name:氏名", "sex:男女区分", "birth_date:生年月日",
            "benefit_ratio:給付割合", "admission_date:入院年月日", "ward:病棟区分",
            "burden_class:一部負担金・食事療養費・生活療養費標準負担額区分",
            "special_notes:レセプト特記事項", "beds:病床数", "karte_no:カルテ番号等",
            "discount_unit_price:割引点数単価", "reserved_16:予備", "reserved_17:予備",
            "reserved_18:予備", "search_no:検索番号", "spec_month:記録条件仕様年月情報",
            "claim_info:請求情報", *_DEPTS, "kana:カタカナ（氏名）", "patient_status:患者の状態"),
    _layout("RE", "dental", "receipt_no:レセプト番号", "receipt_type:レセプト種別",
            "service_month:診療年月", "name:氏名", "sex:男女区分", "birth_date:生年月日",
            "benefit_ratio:給付割合", "admission_date:入院年月日", "first_visit_date:初診年月日",
            "field_11", "field_12", "field_13", "field_14", "field_15", "field_16", "field_17",
            "field_18", "field_19", "field_20", "field_21", "field_22", "field_23", "field_24",
            "field_25", "kana:カタカナ（氏名）", "patient_status:患者の状態"),
    _layout("HO", "medical", "insurer_no:保険者番号", "symbol:被保険者証等の記号",
            "number:被保険者証等の番号", "days:診療実日数", "points:合計点数", "reserved_7:予備",
            "meal_count:食事療養・生活療養回数", "meal_amount:食事療養・生活療養合計金額",
            "duty_reason:職務上の事由", "certificate_no:証明書番号", "burden_amount:負担金額",
            "reduction_class:減免区分", "reduction_rate:減額割合", "reduction_amount:減額金額"),
    _layout("HO", "dental", "insurer_no:保険者番号", "symbol:被保険者証等の記号",
            "number:被保険者証等の番号", "days:診療実日数", "points:合計点数",
            "meal_count:食事療養・生活療養回数", "meal_amount:食事療養・生活療養合計金額",
            "duty_reason:職務上の事由", "certificate_no:証明書番号", "burden_amount:負担金額",
            "reduction_class:減免区分", "reduction_rate:減額割合", "reduction_amount:減額金額"),
    _layout("KO", "medical", "payer_no:公費負担者番号", "recipient_no:公費受給者番号",
            "optional_benefit:任意給付区分", "days:診療実日数", "points:合計点数",
            "burden_amount:負担金額（公費）", "outpatient_copay:公費給付対象外来一部負担金",
            "inpatient_copay:公費給付対象入院一部負担金", "reserved_10:予備",
            "meal_count:食事療養・生活療養回数", "meal_amount:食事療養・生活療養合計金額"),
    _layout("SN", "medical", "bearer_type:負担者種別", "confirmation:確認区分",
            "insurer_no:保険者番号等", "symbol:被保険者証等の記号", "number:被保険者証等の番号",
            "branch:枝番", "recipient_no:受給者番号", "reserved_9:予備"),
    _layout("JD", "medical", "bearer_type:負担者種別", *_DAYS),
    _layout("MF", "medical", "window_burden_class:窓口負担額区分", "reserved_3:予備"),
    _layout("SY", "medical", "disease_code:傷病名コード", "start_date:診療開始日",
            "outcome:転帰区分", "modifiers:修飾語コード", "disease_name:傷病名称",
            "main:主傷病", "supplement:補足コメント"),
    _layout("HS", "dental", "field_2", "field_3", "teeth:部位", "disease_code:傷病名コード",
            "field_6", "field_7", "field_8", "field_9", "field_10",
            "comment_code_1:コメントコード", "comment_text_1:文字データ", "field_13"),
    _layout("SI", "medical", "category:診療識別", "burden:負担区分", "code:診療行為コード",
            "quantity:数量データ", "points:点数", "count:回数", *_COMMENTS, *_DAYS),
    _layout("IY", "medical", "category:診療識別", "burden:負担区分", "code:医薬品コード",
            "quantity:使用量", "points:点数", "count:回数", *_COMMENTS, *_DAYS),
    _layout("TO", "medical", "category:診療識別", "burden:負担区分", "code:特定器材コード",
            "quantity:使用量", "points:点数", "count:回数", "unit_code:単位コード",
            "unit_price:単価", "device_name:特定器材名称", "product_name:商品名及び規格又はサイズ",
            *_COMMENTS, *_DAYS),
    _layout("TO", "dental", "category:診療識別", "burden:負担区分", "code:特定器材コード",
            "quantity:使用量", *(f"field_{i}" for i in range(6, 13)), "points:点数",
            "count:回数", *_DAYS),
    _layout("SS", "dental", "category:診療識別", "burden:負担区分", "code:診療行為コード",
            "quantity:数量データ", *(f"field_{i}" for i in range(6, 77)), "points:点数",
            "count:回数", *_DAYS),
    _layout("CO", "medical", "category:診療識別", "burden:負担区分", "code:コメントコード",
            "text:文字データ"),
    _layout("SJ", "medical", "kind:症状詳記区分", "text:症状詳記データ"),
    _layout("GO", "medical", "total_receipts:総件数", "total_points:総合計点数",
            "volume:マルチボリューム識別情報"),
)

LAYOUTS: dict[str, tuple[Layout, ...]] = {}
for _l in _ALL:
    LAYOUTS[_l.record] = LAYOUTS.get(_l.record, ()) + (_l,)

# Record ids we know exist (reference §7.2) even when we have no field layout for them: they are
# kept as raw records without an "unknown record" problem.
KNOWN_TYPES = frozenset(LAYOUTS) | {
    "GR", "NI", "TI", "TR", "TS", "KH", "RC", "JY", "EX", "MN", "HI", "HR", "HG", "MD", "RT", "JR",
    "MK", "BU", "SB", "KK", "SK", "GA", "HH", "GT", "CD", "SH", "CZ", "TK", "KI", "ST",
}


def layout_for(record: str, count: int, variant: str = "medical") -> Layout | None:
    """The layout whose field count matches; else the one of the file's variant; else the first."""
    options = LAYOUTS.get(record, ())
    for lay in options:
        if lay.count == count:
            return lay
    for lay in options:
        if lay.variant == variant:
            return lay
    return options[0] if options else None


@dataclass(slots=True)
class UkeRecord:
    """One line: its fields (``fields[0]`` is the record id), line number and byte offset."""

    fields: list[str]
    line: int
    offset: int = 0
    layout: Layout | None = None
    category: str = ""  # effective 診療識別 of SI/IY/TO/SS/CO (carried forward when left empty)

    @property
    def type(self) -> str:
        return self.fields[0]

    def __getitem__(self, key: int | str) -> str:
        """``rec[5]`` = field at 1-based position 5; ``rec["name"]`` = field by layout name."""
        if isinstance(key, str):
            if self.layout is None or key not in self.layout.fields:
                return ""
            key = self.layout.position(key)
        return self.fields[key - 1].strip() if 0 < key <= len(self.fields) else ""

    def get(self, key: int | str) -> str:
        return self[key]

    def raw(self, key: int | str) -> str:
        """Unstripped value (fixed-width fields such as HO 保険者番号 are space-padded)."""
        if isinstance(key, str):
            if self.layout is None or key not in self.layout.fields:
                return ""
            key = self.layout.position(key)
        return self.fields[key - 1] if 0 < key <= len(self.fields) else ""

    def named(self) -> dict[str, str]:
        """Non-empty fields by name (``field_N`` for positions past the layout)."""
        names = self.layout.fields if self.layout else ()
        return {(names[i] if i < len(names) else f"field_{i + 1}"): v
                for i, v in enumerate(self.fields) if v and i}

    def days(self) -> dict[int, int]:
        """算定日情報: day of month -> count, for SI/IY/TO/SS/JD records."""
        out = {}
        for i, d in enumerate(DAYS, 1):
            v = self[d]
            if v.isdigit() and int(v):
                out[i] = int(v)
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
        return "dental" if self.tensuhyo == "3" else "medical"

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


# --- dates --------------------------------------------------------------------------------------

ERAS = {"1": 1867, "2": 1911, "3": 1925, "4": 1988, "5": 2018}  # 明治 大正 昭和 平成 令和 (year 1 = base+1)


def parse_uke_date(text: str) -> tuple[int, int, int | None] | None:
    """和暦 GYYMM / GYYMMDD or 西暦 YYYYMM / YYYYMMDD (told apart by length) -> (y, m, d|None)."""
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


def uke_date_fhir(text: str) -> str | None:
    """FHIR date text (``YYYY-MM`` or ``YYYY-MM-DD``) of a UKE date; None when invalid/empty."""
    p = parse_uke_date(text)
    if p is None:
        return None
    y, m, d = p
    return f"{y:04d}-{m:02d}" + (f"-{d:02d}" if d else "")


def uke_month(text: str) -> str | None:
    """``YYYYMM`` of a UKE month (和暦 or 西暦)."""
    p = parse_uke_date(text)
    return f"{p[0]:04d}{p[1]:02d}" if p else None


_DATE_FIELDS = {"claim_month", "service_month", "birth_date", "admission_date", "start_date",
                "first_visit_date"}


# --- reading ------------------------------------------------------------------------------------

def _lines(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, bytes) of each non-empty line.  0x0A never occurs inside a CP932
    character, so splitting before decoding is safe."""
    offset = 0
    for n, raw in enumerate(data.split(b"\n"), 1):
        start = offset
        offset += len(raw) + 1
        line = raw.rstrip(b"\r").rstrip(EOF)
        if line.strip():
            yield n, start, line


def facility_code(header: UkeRecord | None) -> str:
    """10-digit 医療機関コード = 都道府県(2) + 点数表(1) + 医療機関コード(7) of a header record;
    the header's own code when a part is missing, "" without a header."""
    if header is None:
        return ""
    code = header["facility_code"]
    if header["prefecture"] and header["tensuhyo"] and code:
        return header["prefecture"].zfill(2) + header["tensuhyo"] + code.zfill(7)
    return code


def _sniff(data: bytes) -> tuple[bytes, str]:
    """The bytes without a UTF-8 BOM, and their codec: UTF-8 when all of them decode as UTF-8,
    else CP932 (the Shift_JIS of the receipt files).  :func:`read_uke` and
    :func:`scan_receipts` must choose alike: receipt numbers index one into the other."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        data.decode("utf-8")
        return data, "utf-8"
    except UnicodeDecodeError:
        return data, "cp932"


def read_uke(data: bytes, path: str) -> UkeFile:
    """Parse the bytes of one UKE file; problems are collected, never raised."""
    uf = UkeFile(path)
    if not data.strip(EOF + b"\r\n \t"):
        uf.problem(None, KIND_EMPTY, "the file is empty")
        return uf
    data, codec = _sniff(data)
    uf.codec = codec
    recs: list[UkeRecord] = []
    for n, off, raw in _lines(data):
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as exc:
            text = raw.decode(codec, errors="replace")
            rec = UkeRecord(text.split(","), n, off)
            uf.problem(rec, KIND_DECODE, f"bytes at offset {off + exc.start} are not {codec}; "
                       f"{text.count(chr(0xFFFD))} characters replaced")
        text = text.translate(WAVE_DASH_FOLD)
        recs.append(UkeRecord(text.split(","), n, off))
    _group(uf, recs)
    return uf


def scan_receipts(data: bytes) -> tuple[UkeRecord | None, list[UkeRecord]]:
    """The header (IR/UK/YK) and the RE records of a UKE file, nothing else.

    For indexing receipts by カルテ番号 and number without grouping or checking the other records
    (about 40x cheaper than :func:`read_uke`): the n-th RE returned is ``read_uke(data).receipts[n]``
    (same line splitting and codec choice).  Records carry their layout; never raises."""
    data, codec = _sniff(data)
    header: UkeRecord | None = None
    res: list[UkeRecord] = []
    for n, off, raw in _lines(data):
        head = raw[:8].lstrip()
        if not head.startswith((b"RE", b"IR", b"UK", b"YK")):
            continue
        fields = raw.decode(codec, errors="replace").translate(WAVE_DASH_FOLD).split(",")
        rtype = fields[0].strip()
        fields[0] = rtype
        rec = UkeRecord(fields, n, off)
        if rtype == "RE":
            variant = "dental" if header is not None and header["tensuhyo"] == "3" else "medical"
            rec.layout = layout_for("RE", len(fields), variant)
            res.append(rec)
        elif rtype in HEADER_TYPES and (header is None or (header.type != "IR" and rtype == "IR")):
            rec.layout = layout_for(rtype, len(fields), "dental" if len(fields) > 3
                                    and fields[3] == "3" else "medical")
            header = rec
    return header, res


def read_uke_file(path: str | os.PathLike[str], relpath: str | None = None) -> UkeFile:
    p = Path(path)
    rel = relpath or p.name
    try:
        data = p.read_bytes()
    except OSError as exc:
        uf = UkeFile(rel)
        uf.problem(None, KIND_IO, f"cannot read the file: {exc.strerror or exc}")
        return uf
    return read_uke(data, rel)


def _check_fields(uf: UkeFile, rec: UkeRecord) -> None:
    lay = layout_for(rec.type, len(rec.fields), uf.variant)
    rec.layout = lay
    if lay is None:
        return
    n = len(rec.fields)
    if n < lay.count:
        uf.problem(rec, KIND_FIELDS, f"{rec.type} has {n} fields, the {lay.variant} layout has "
                   f"{lay.count}; the missing trailing fields are read as empty", WARNING)
    elif n > lay.count and any(f.strip() for f in rec.fields[lay.count:]):
        uf.problem(rec, KIND_FIELDS, f"{rec.type} has {n} fields, the {lay.variant} layout has "
                   f"{lay.count}; the extra fields are kept unnamed", WARNING)
    for name in _DATE_FIELDS:
        if name in lay.fields:
            v = rec[name]
            if v and parse_uke_date(v) is None:
                uf.problem(rec, KIND_DATE, f"{rec.type} {name} {v!r} is not a 和暦 GYYMM(DD) "
                           "or 西暦 YYYYMM(DD) date", WARNING)


def _group(uf: UkeFile, recs: list[UkeRecord]) -> None:
    cur: Receipt | None = None
    category = ""
    unit = 0
    unit_open = False
    pending: list[UkeRecord] = []  # CO waiting for the item they precede

    def close() -> None:
        nonlocal pending
        if cur is not None:
            cur.comments.extend(pending)
        pending = []

    for rec in recs:
        rtype = rec.type.strip()
        rec.fields[0] = rtype
        if not re.fullmatch(r"[A-Z0-9]{2}", rtype):
            uf.problem(rec, KIND_STRUCTURE, f"line does not start with a record id: {rtype[:20]!r}")
            (cur.records if cur else uf.orphans).append(rec)
            continue
        if rtype in HEADER_TYPES:
            rec.layout = layout_for(rtype, len(rec.fields),
                                    "dental" if len(rec.fields) > 3 and rec.fields[3] == "3"
                                    else "medical")
            _check_fields(uf, rec)
            if uf.receipts and uf.ir is not None and rec["facility_code"] != uf.ir["facility_code"]:
                uf.problem(rec, KIND_STRUCTURE, "a header for another facility "
                           f"({rec['facility_code']}) inside the file of {uf.ir['facility_code']}")
            uf.headers.append(rec)
            if uf.ir is None or (uf.ir.type != "IR" and rtype == "IR"):
                uf.ir = rec
            continue
        _check_fields(uf, rec)
        if rtype not in KNOWN_TYPES:
            uf.problem(rec, KIND_UNKNOWN, f"unknown record type {rtype}; the record is kept raw",
                       WARNING)
        if rtype == "GO":
            close()
            cur = None
            if uf.go is not None:
                uf.problem(rec, KIND_STRUCTURE, "a second GO record")
            uf.go = rec
            continue
        if rtype == "RE":
            close()
            cur = Receipt(rec, records=[rec])
            uf.receipts.append(cur)
            category, unit, unit_open = "", 0, False
            if uf.go is not None:
                uf.problem(rec, KIND_STRUCTURE, "receipt after the GO trailer")
            continue
        if cur is None:
            uf.problem(rec, KIND_STRUCTURE, f"{rtype} record outside any receipt (no RE before it)")
            uf.orphans.append(rec)
            continue
        cur.records.append(rec)
        if rtype == "HO":
            if cur.ho is not None:
                uf.problem(rec, KIND_STRUCTURE, "a second HO record in one receipt", WARNING)
            cur.ho = cur.ho or rec
        elif rtype == "KO":
            cur.ko.append(rec)
        elif rtype == "SN":
            cur.sn.append(rec)
        elif rtype == "JD":
            cur.jd.append(rec)
        elif rtype == "MF":
            cur.mf = rec
        elif rtype == "SY":
            cur.sy.append(rec)
        elif rtype == "HS":
            cur.hs.append(rec)
        elif rtype == "SJ":
            cur.sj.append(rec)
        elif rtype in ITEM_TYPES:
            if rec["category"]:
                if rec["category"] != category:
                    unit_open = False
                category = rec["category"]
            if not unit_open:
                unit += 1
                unit_open = True
            item = Item(rec, category, unit)
            rec.category = category
            if pending and all(c.category == category for c in pending):
                item.comments.extend(pending)
            else:
                cur.comments.extend(pending)
            pending = []
            cur.items.append(item)
            if rec["points"]:
                unit_open = False  # points close the 点数・回数算定単位
        elif rtype == "CO":
            if rec["category"]:
                category = rec["category"]
            rec.category = category
            last = cur.items[-1] if cur.items else None
            if not pending and last is not None and last.category == category:
                last.comments.append(rec)
            else:
                pending.append(rec)
    close()
    _check_totals(uf)


def _check_totals(uf: UkeFile) -> None:
    if uf.ir is None:
        uf.problem(None, KIND_STRUCTURE, "no IR/UK/YK header record")
    if uf.go is None:
        uf.problem(None, KIND_STRUCTURE, "no GO trailer record (file may be cut short)")
        return
    # 総件数 counts each bearer of a receipt (HO and every KO), as the paper 請求書 does: the
    # samples confirm it (7 RE + 6 KO = 13).  A plain receipt count is accepted as well.
    count = uf.go["total_receipts"]
    bearers = sum(max(1, (1 if r.ho else 0) + len(r.ko)) for r in uf.receipts)
    if count.isdigit() and int(count) not in (bearers, len(uf.receipts)):
        uf.problem(uf.go, KIND_TOTALS, f"GO 総件数 is {int(count)}, the file holds "
                   f"{len(uf.receipts)} receipts with {bearers} bearers (HO + KO)")
    points = uf.go["total_points"]
    totals = [r.total_points for r in uf.receipts]
    if points.isdigit() and None not in totals and int(points) != sum(totals):  # type: ignore[arg-type]
        uf.problem(uf.go, KIND_TOTALS, f"GO 総合計点数 is {int(points)}, the receipts add up to "
                   f"{sum(totals)}")  # type: ignore[arg-type]


# --- writing (used by the synthetic hospital; one implementation) --------------------------------

def build_record(record: str, values: dict[str, str], variant: str = "medical") -> list[str]:
    """A record's field list from named values, per :data:`LAYOUTS` (unknown names raise)."""
    lay = next((l for l in LAYOUTS.get(record, ()) if l.variant == variant), None)
    if lay is None:
        raise KeyError(f"no {variant} layout for {record}")
    out = [""] * lay.count
    out[0] = record
    for k, v in values.items():
        out[lay.position(k) - 1] = str(v)
    return out


def encode_uke(records: list[list[str]]) -> bytes:
    """Records -> spec bytes: CP932, CRLF after each record, 0x1A at the end.

    Raises ValueError for a field holding a comma or line break (the format has no escaping) and
    UnicodeEncodeError for characters CP932 lacks: a writer must not produce such a file.
    """
    lines = []
    for rec in records:
        for f in rec:
            if any(c in f for c in ",\r\n\x1a"):
                raise ValueError(f"UKE fields cannot hold commas or line breaks: {f!r}")
        lines.append(",".join(rec).translate(WAVE_DASH_FOLD).encode("cp932"))
    return b"".join(line + b"\r\n" for line in lines) + EOF


# --- discovery and patient matching ---------------------------------------------------------------

def sniff_uke(path: str | os.PathLike[str]) -> bool:
    """True when a file's first record is a UKE header (IR, UK or YK), whatever its name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n \t")
    return head[:3] in (b"IR,", b"UK,", b"YK,")


def iter_uke_files(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Every UKE file below a receipts folder (any name: .UKE, .csv, none), in sorted order."""
    base = Path(root)
    if not base.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if not fn.startswith(".") and sniff_uke(p):
                yield p


def normalise_karte_no(text: str) -> str:
    """RE カルテ番号等 as an id: NFKC (full-width -> half-width), all whitespace removed."""
    return "".join(unicodedata.normalize("NFKC", text or "").split())


def karte_candidates(karte_no: str, widths: tuple[int, ...] = (10,)) -> list[str]:
    """Ids to try for a カルテ番号, in order: as written, zero-padded to ``widths``, unpadded."""
    n = normalise_karte_no(karte_no)
    if not n:
        return []
    out = [n]
    if n.isdigit():
        stripped = n.lstrip("0") or "0"
        out += [stripped.zfill(w) for w in widths if w >= len(stripped)]
        out.append(stripped)
    seen: list[str] = []
    for c in out:
        if c not in seen and is_valid_patient_id(c):
            seen.append(c)
    return seen


def match_patient(karte_no: str, candidate_exists: Callable[[str], bool],
                  widths: tuple[int, ...] = (10,)) -> str | None:
    """The SS-MIX2 patient id a receipt's カルテ番号 refers to, or None.

    Tried in order: the normalised number as written; for digit strings, zero-padded to each
    width in ``widths`` (10 by default) and with leading zeros removed.  Only ids that pass the
    storage's patient-id rule reach ``candidate_exists``.
    """
    for c in karte_candidates(karte_no, widths):
        try:
            if candidate_exists(c):
                return c
        except (OSError, ValueError):
            continue
    return None
