"""SS-MIX2 file names, data types and condition flags.

A standardized-storage file is named
``{patient}_{date|-}_{data type}_{order no}_{timestamp}_{department|-}_{flag}`` and has no
extension.  The name is split from both ends: the patient id is the first part, the flag, the
department, the timestamp and the order number are the last four, the date the second, and
whatever remains in the middle is the data type (extended-storage type codes may contain ``_``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

FLAG_CURRENT = "1"
FLAG_SUPERSEDED = "2"
FLAG_DELETED = "0"
FLAGS = {FLAG_CURRENT: "current", FLAG_SUPERSEDED: "superseded", FLAG_DELETED: "deleted"}

NO_DATE = "-"
NO_ORDER = "999999999999999"

_DATE = re.compile(r"^\d{8}$")
_TIMESTAMP = re.compile(r"^\d{12,17}$")
_ORDER = re.compile(r"^[0-9A-Za-z\-]{1,22}$")
_DEPT = re.compile(r"^([0-9A-Za-z]{1,5}|-)$")
_PATIENT = re.compile(r"^[0-9A-Za-z\-]{1,20}$")


@dataclass(frozen=True, slots=True)
class DataType:
    code: str
    name_ja: str
    name_en: str
    events: tuple[tuple[str, str, str], ...]  # (message, event, structure); first = normal, rest = cancel/delete
    dateless: bool = False

    @property
    def message(self) -> str:
        return self.events[0][0]

    def accepts(self, message: str, event: str) -> bool:
        return any(m == message and e == event for m, e, _ in self.events)

    def readable(self, message: str, event: str) -> bool:
        """True when another MSH-9 has a structure this data type's mapper reads: the same
        message type (ADT^A01 in ADT-12) or a listed equivalent (ORU^R01 lab results in
        OML-11).  The file is then read with a warning and mapped by the folder's type."""
        if any(m == message for m, _e, _s in self.events):
            return True
        return (message, event) in ALSO_READABLE.get(self.code, ())

    def is_cancel(self, message: str, event: str) -> bool:
        """True when the event is the cancel/delete variant of this data type."""
        return any(m == message and e == event for m, e, _ in self.events[1:])


def _dt(code: str, ja: str, en: str, *events: str, dateless: bool = False) -> DataType:
    parsed = tuple(tuple(e.replace("^", " ").replace("(", " ").rstrip(")").split()) for e in events)
    return DataType(code, ja, en, parsed, dateless)  # type: ignore[arg-type]


# MSH-9 values that do not belong to a data type but whose structure its mapper reads (JAHIS
# 臨床検査 results sent as ORU^R01 under OML-11: OBR/OBX groups like OUL^R22).
ALSO_READABLE: dict[str, tuple[tuple[str, str], ...]] = {"OML-11": (("ORU", "R01"),)}


# The 26 standardized-storage data types (guideline Ver.1.2g p11; reference/ssmix2.md §3).
DATA_TYPES: dict[str, DataType] = {
    d.code: d
    for d in (
        _dt("ADT-00", "患者基本情報の更新/削除", "Patient demographics",
            "ADT^A08(ADT_A01)", "ADT^A23(ADT_A21)", dateless=True),
        _dt("ADT-01", "担当医の変更/取消", "Attending doctor change",
            "ADT^A54(ADT_A54)", "ADT^A55(ADT_A52)", dateless=True),
        _dt("ADT-12", "外来診察の受付", "Outpatient visit", "ADT^A04(ADT_A01)"),
        _dt("ADT-21", "入院予定/取消", "Planned admission", "ADT^A14(ADT_A05)", "ADT^A27(ADT_A21)"),
        _dt("ADT-22", "入院実施/取消", "Admission", "ADT^A01(ADT_A01)", "ADT^A11(ADT_A09)"),
        _dt("ADT-31", "外出泊実施/取消", "Leave of absence", "ADT^A21(ADT_A21)", "ADT^A52(ADT_A52)"),
        _dt("ADT-32", "外出泊帰院実施/取消", "Return from leave", "ADT^A22(ADT_A21)", "ADT^A53(ADT_A52)"),
        _dt("ADT-41", "転科・転棟予定/取消", "Planned transfer", "ADT^A15(ADT_A15)", "ADT^A26(ADT_A21)"),
        _dt("ADT-42", "転科・転棟実施/取消", "Transfer", "ADT^A02(ADT_A02)", "ADT^A12(ADT_A09)"),
        _dt("ADT-51", "退院予定/取消", "Planned discharge", "ADT^A16(ADT_A16)", "ADT^A25(ADT_A21)"),
        _dt("ADT-52", "退院実施/取消", "Discharge", "ADT^A03(ADT_A03)", "ADT^A13(ADT_A01)"),
        _dt("ADT-61", "アレルギー情報の登録/更新", "Allergies", "ADT^A60(ADT_A60)", dateless=True),
        _dt("PPR-01", "病名(歴)情報の登録/更新", "Diagnoses", "PPR^ZD1(PPR_ZD1)", dateless=True),
        _dt("OMD", "食事オーダ", "Diet order", "OMD^O03(OMD_O03)"),
        _dt("OMP-01", "処方オーダ", "Prescription order", "RDE^O11(RDE_O11)"),
        _dt("OMP-11", "処方実施通知", "Prescription administration", "RAS^O17(RAS_O17)"),
        _dt("OMP-02", "注射オーダ", "Injection order", "RDE^O11(RDE_O11)"),
        _dt("OMP-12", "注射実施通知", "Injection administration", "RAS^O17(RAS_O17)"),
        _dt("OML-01", "検体検査オーダ", "Laboratory order", "OML^O33(OML_O33)"),
        _dt("OML-11", "検体検査結果通知", "Laboratory result", "OUL^R22(OUL_R22)"),
        _dt("OMG-01", "放射線検査オーダ", "Radiology order", "OMG^O19(OMG_O19)"),
        _dt("OMG-11", "放射線検査の実施通知", "Radiology performed", "OMI^Z23(OMI_Z23)"),
        _dt("OMG-02", "内視鏡検査オーダ", "Endoscopy order", "OMG^O19(OMG_O19)"),
        _dt("OMG-12", "内視鏡検査の実施通知", "Endoscopy performed", "OMI^Z23(OMI_Z23)"),
        _dt("OMG-03", "生理検査オーダ", "Physiology order", "OMG^O19(OMG_O19)"),
        _dt("OMG-13", "生理検査結果通知", "Physiology result", "ORU^R01(ORU_R01)"),
    )
}


class BadFileName(ValueError):
    """A file name that breaks the SS-MIX2 naming rule."""


class RecordKey(NamedTuple):
    """The key that groups the versions of one record (guideline: 患者ID+診療日+データ種別+オーダNo)."""

    patient_id: str
    date: str
    data_type: str
    order_no: str


@dataclass(frozen=True, slots=True)
class FileName:
    patient_id: str
    date: str  # YYYYMMDD or "-"
    data_type: str
    order_no: str
    timestamp: str  # 発生日時, 12-17 digits
    department: str  # "-" when none
    flag: str  # "1" current, "2" superseded, "0" deleted

    @property
    def key(self) -> RecordKey:
        return RecordKey(self.patient_id, self.date, self.data_type, self.order_no)

    @property
    def name(self) -> str:
        return "_".join(
            (self.patient_id, self.date, self.data_type, self.order_no, self.timestamp,
             self.department, self.flag)
        )

    def with_flag(self, flag: str) -> "FileName":
        return FileName(self.patient_id, self.date, self.data_type, self.order_no,
                        self.timestamp, self.department, flag)

    @property
    def is_current(self) -> bool:
        return self.flag == FLAG_CURRENT

    @property
    def is_deleted(self) -> bool:
        return self.flag == FLAG_DELETED

    @property
    def sort_key(self) -> tuple[str, str]:
        """Orders versions of one record: by 発生日時 (padded to 17 digits), then by flag."""
        return (self.timestamp.ljust(17, "0"), self.flag)


def parse_name(name: str, standard: bool = True) -> FileName:
    """Parse a standardized-storage file name; raise :class:`BadFileName` with a plain reason.

    ``standard=False`` accepts any data-type text (extended storage).
    """
    parts = name.split("_")
    if len(parts) < 7:
        raise BadFileName(f"{len(parts)} parts separated by '_' (7 required)")
    patient_id, date = parts[0], parts[1]
    order_no, timestamp, department, flag = parts[-4:]
    data_type = "_".join(parts[2:-4])
    if not _PATIENT.match(patient_id):
        raise BadFileName(f"patient id part {patient_id!r} is not a valid id")
    if date != NO_DATE and not _DATE.match(date):
        raise BadFileName(f"date part {date!r} is neither YYYYMMDD nor '-'")
    if standard and data_type not in DATA_TYPES:
        raise BadFileName(f"data type part {data_type!r} is not a standardized-storage data type")
    if not data_type:
        raise BadFileName("empty data type part")
    if not _ORDER.match(order_no):
        raise BadFileName(f"order number part {order_no!r} is not 1-22 letters or digits")
    if not _TIMESTAMP.match(timestamp):
        raise BadFileName(f"timestamp part {timestamp!r} is not 12-17 digits")
    if not _DEPT.match(department):
        raise BadFileName(f"department part {department!r} is not a code or '-'")
    if flag not in FLAGS:
        raise BadFileName(f"condition flag {flag!r} is not 0, 1 or 2")
    return FileName(patient_id, date, data_type, order_no, timestamp, department, flag)


def is_valid_patient_id(value: str) -> bool:
    """Patient ids are validated before any path is built from them."""
    return bool(_PATIENT.match(value)) and value not in (".", "..")


def is_valid_date_folder(value: str) -> bool:
    return value == NO_DATE or bool(_DATE.match(value))


def parse_content_folder_name(name: str, data_type: str | None = None) -> FileName:
    """Parse an extended-storage content-folder name; raise :class:`BadFileName`.

    ``{patient}_{date|-}_{data type}_{key}_{timestamp}[_{department}]_{flag}``: the guideline text
    has 7 parts, NHO's samples omit the department (6 parts).  The data type (caret-separated
    code names, possibly holding ``_``) is taken from ``data_type`` (the parent folder) when the
    name carries it verbatim; otherwise the department is present only when the part before the
    flag is not a 12-17 digit timestamp.  A missing department is returned as ``-``.
    """
    parts = name.split("_")
    if len(parts) < 6:
        raise BadFileName(f"{len(parts)} parts separated by '_' (6 or 7 required)")
    if data_type and name.startswith(f"{parts[0]}_{parts[1]}_{data_type}_"):
        tail = name[len(f"{parts[0]}_{parts[1]}_{data_type}_"):].split("_")
        if len(tail) not in (3, 4):
            raise BadFileName(f"{len(tail)} parts after the data type (3 or 4 required)")
        head = [parts[0], parts[1], data_type]
    else:
        dept_missing = bool(_TIMESTAMP.match(parts[-2]))
        n_tail = 3 if dept_missing else 4
        if len(parts) < 3 + n_tail:
            raise BadFileName(f"{len(parts)} parts separated by '_' (6 or 7 required)")
        tail = parts[-n_tail:]
        head = [parts[0], parts[1], "_".join(parts[2:-n_tail])]
    if len(tail) == 3:
        tail = [tail[0], tail[1], NO_DATE, tail[2]]
    return parse_name("_".join(head + tail), standard=False)
