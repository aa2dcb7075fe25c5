"""UKE record layouts: field names by position, per record type and variant (医科 / 歯科).

Layouts change with every 記録条件仕様 revision, so a record type may have several variants,
chosen by field count.  Plain data, shared by the reader and the synthetic writer
(``fhir_gateway.synth.uke``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..memo import memo

EOF = b"\x1a"
ABSENT = 1 << 30  # index of a field a layout lacks (:meth:`Layout.indices`): past any record

HEADER_TYPES = ("IR", "UK", "YK")
ITEM_TYPES = ("SI", "IY", "TO", "SS")  # SS = 歯科診療行為
DAYS = tuple(f"day{d:02d}" for d in range(1, 32))  # 算定日情報 1日 … 31日
# Fields holding a 和暦/西暦 date (the reader checks them).
DATE_FIELDS = {"claim_month", "service_month", "birth_date", "admission_date", "start_date",
               "first_visit_date"}

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
    # name -> 1-based position, built once (fields are looked up by name millions of times)
    positions: dict[str, int] = field(default_factory=dict, compare=False, hash=False,
                                      repr=False)
    # names tuple -> 0-based indices (:meth:`indices`), filled as callers ask
    picks: dict[tuple[str, ...], tuple[int, ...]] = field(default_factory=dict, compare=False,
                                                          hash=False, repr=False)
    dates: tuple[str, ...] = field(default=(), init=False, compare=False, repr=False)
    # 0-based index of 算定日情報 1日 (the 31 day fields are contiguous); -1: none
    days_at: int = field(default=-1, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.positions.update((n, i) for i, n in enumerate(self.fields, 1))
        # in field order (DATE_FIELDS is a set: its order changes with the hash seed, and with
        # it the order of a record's date problems from one process to the next)
        object.__setattr__(self, "dates", tuple(n for n in self.fields if n in DATE_FIELDS))
        object.__setattr__(self, "days_at", self.positions.get(DAYS[0], 0) - 1)

    def indices(self, names: tuple[str, ...]) -> tuple[int, ...]:
        """0-based field indices of ``names`` (a name this layout lacks: :data:`ABSENT`, past the
        end of any record), worked out once per tuple: an item reads ~15 fields by name."""
        got = self.picks.get(names)
        if got is None:
            got = self.picks[names] = tuple(self.positions.get(n, ABSENT + 1) - 1 for n in names)
        return got

    @property
    def count(self) -> int:
        return len(self.fields)

    def position(self, name: str) -> int:
        """1-based position of a field name (HL7-style numbering, as in the spec tables)."""
        try:
            return self.positions[name]
        except KeyError:
            raise ValueError(f"{name!r} is not a field of {self.record}") from None


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


def variant_of(tensuhyo: str) -> str:
    """The layout variant of a 点数表 (IR-4 / UK-4): 3 歯科 has layouts of its own."""
    return "dental" if tensuhyo == "3" else "medical"


def header_variant(fields: list[str]) -> str:
    """The variant a header record (IR/UK/YK) gives itself: its own 点数表, the fourth field
    (the file's variant is not known before its first header)."""
    return variant_of(fields[3] if len(fields) > 3 else "")


@memo(4096)
def layout_for(record: str, count: int, variant: str = "medical") -> Layout | None:
    """The layout of a ``record`` of ``count`` fields in a file of ``variant`` (see
    :func:`_choose`); remembered, since every record of a file asks."""
    return _choose(record, count, variant)


def _choose(record: str, count: int, variant: str) -> Layout | None:
    """The file's variant's layout (the one whose field count matches, if it has several);
    else the layout whose field count matches; else the first.  The variant (IR-4 点数表) wins
    over the count: a dental IR with one trailing empty field has the medical IR's count."""
    options = LAYOUTS.get(record, ())
    own = [lay for lay in options if lay.variant == variant]
    for lay in own:
        if lay.count == count:
            return lay
    if own:
        return own[0]
    for lay in options:
        if lay.count == count:
            return lay
    return options[0] if options else None
