"""Monthly レセプト電算 (UKE) files for the synthetic patients (reference §7).

Records are built with :func:`build_record` / :func:`encode_uke` from ``storage.uke.LAYOUTS``
(one implementation of the layouts, shared with the reader).  One file per 診療年月 and 審査支払機関:
``RECEIPTC_<YYYYMM>_<payer>.UKE`` (payer 1 = 社会保険診療報酬支払基金, 2 = 国民健康保険団体連合会),
because each IR header names one payer.  Dates are 和暦 (GYYMM / GYYMMDD).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from storage.encoding import WAVE_DASH_FOLD
from storage.uke import EOF, LAYOUTS

from . import content as C

if TYPE_CHECKING:
    from .timeline import Course

ERAS = ((date(2019, 5, 1), "5", 2018), (date(1989, 1, 8), "4", 1988), (date(1926, 12, 25), "3", 1925),
        (date(1912, 7, 30), "2", 1911), (date(1868, 1, 1), "1", 1867))


# --- writing records (the one UKE writer; the tests build their files with it too) -------------

def build_record(record: str, values: dict[str, str], variant: str = "medical") -> list[str]:
    """A record's field list from named values, per :data:`storage.uke.LAYOUTS` (unknown names raise)."""
    lay = next((x for x in LAYOUTS.get(record, ()) if x.variant == variant), None)
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


KOHI = ("54136015", "難病医療")  # 公費負担者番号 (法別 54) for the few patients who have one


def wareki(d: date, day: bool = True) -> str:
    """GYYMMDD (or GYYMM) with 年号区分 1 明治 … 5 令和."""
    for since, era, base in ERAS:
        if d >= since:
            s = f"{era}{d.year - base:02d}{d.month:02d}"
            return s + f"{d.day:02d}" if day else s
    raise ValueError(f"date before 明治: {d}")


@dataclass
class ReceiptPatient:
    """What the receipts need of one patient, small enough to send back from a worker."""

    pid: str
    name: str
    kana: str
    sex: str
    birth: date
    symbol: str
    number: str
    family: bool
    insurance_young: C.Insurance
    kohi: str  # 受給者番号 or ""
    conditions: list[tuple[str, date, date | None, str, bool, bool, str]]  # code, start, end, outcome, suspected, main, name
    bills: list[tuple]  # Bill as tuples
    stays: list[tuple[date, date]] = field(default_factory=list)

    @classmethod
    def from_course(cls, course: "Course") -> "ReceiptPatient":
        p = course.patient
        kohi = f"{course.rng.randrange(10**6, 10**7)}" if course.rng.random() < 0.03 else ""
        conds = [(c.disease.receipt, c.recorded, c.end, c.outcome, c.suspected, c.main, c.disease.name)
                 for c in course.conditions]
        bills = [(b.day, b.inpatient, b.rec, b.ident, b.code, b.qty, b.points, b.count, b.unit)
                 for b in course.bills]
        return cls(p.pid, f"{p.family}　{p.given}", f"{p.kana_family}　{p.kana_given}",
                   "1" if p.sex == "M" else "2", p.birth, p.ins_symbol, p.ins_number,
                   p.relation[0] != "SEL", p.insurance, kohi, conds, bills, list(course._stays))

    def age(self, on: date) -> int:
        return on.year - self.birth.year - ((on.month, on.day) < (self.birth.month, self.birth.day))

    def insurance(self, on: date) -> C.Insurance:
        return C.ELDERLY_INSURANCE if self.age(on) >= 75 else self.insurance_young


def receipt_type(p: ReceiptPatient, month_start: date, inpatient: bool) -> str:
    """レセプト種別: 1 医科, 1 医保 / 3 後期, 1 単独 / 2 +公費1, patient class with 入院 odd."""
    age = p.age(month_start)
    elderly = age >= 75
    second = "3" if elderly else "1"
    third = "2" if p.kohi else "1"
    if elderly:
        fourth = "1" if inpatient else "2"
    elif age < 6:
        fourth = "3" if inpatient else "4"
    elif age >= 70:
        fourth = "7" if inpatient else "8"
    elif p.family:
        fourth = "5" if inpatient else "6"
    else:
        fourth = "1" if inpatient else "2"
    return "1" + second + third + fourth


def copay_rate(p: ReceiptPatient, on: date) -> float:
    age = p.age(on)
    return 0.1 if age >= 75 else 0.2 if age >= 70 or age < 6 else 0.3


def _units(bills: list[tuple]) -> list[tuple[tuple, dict[int, int]]]:
    """Merge identical billing units of a month: signature -> {day of month: count}."""
    by_unit: dict[int, list[tuple]] = defaultdict(list)
    for b in bills:
        by_unit[b[8]].append(b)
    merged: dict[tuple, dict[int, int]] = {}
    order: list[tuple] = []
    for lines in by_unit.values():
        sig = tuple((b[2], b[3], b[4], b[5], b[6]) for b in lines)
        days = merged.get(sig)
        if days is None:
            days = merged[sig] = {}
            order.append(sig)
        d = lines[0][0].day
        days[d] = days.get(d, 0) + lines[0][7]
    order.sort(key=lambda s: s[0][1])  # 診療識別 order, stable within
    return [(sig, merged[sig]) for sig in order]


def _re_record(p: ReceiptPatient, no: int, month: date, inpatient: bool, month_end: date) -> list[str]:
    """RE: the receipt header (type, month, patient; admission date and beds for a stay)."""
    admission = ""
    if inpatient:
        stay = next((s for s in p.stays if s[0] <= month_end and s[1] >= month), None)
        if stay:
            admission = wareki(stay[0])
    re = {"receipt_no": str(no), "receipt_type": receipt_type(p, month, inpatient),
          "service_month": wareki(month, day=False), "name": p.name, "sex": p.sex,
          "birth_date": wareki(p.birth), "karte_no": p.pid, "kana": p.kana}
    if p.insurance(month).payer == "2":
        re["benefit_ratio"] = str(round((1 - copay_rate(p, month)) * 100))
    if admission:
        re["admission_date"] = admission
        re["beds"] = str(C.HOSPITAL_BEDS)
    return build_record("RE", re)


def _device(inpatient: bool, bills: list[tuple], burden: str) -> dict[str, str] | None:
    """TO: one 静脈留置針 per infusion day of a stay (None without infusions)."""
    if not (inpatient and any(b[3] == "33" for b in bills)):
        return None
    inj_days = sorted({b[0].day for b in bills if b[3] == "33" and b[2] == "SI"})
    device = {"category": "33", "burden": burden, "code": "710010141", "quantity": "1",
              "points": "10", "count": str(len(inj_days)), "unit_code": "010",
              "unit_price": "100", "device_name": "静脈留置針"}
    device.update({f"day{d:02d}": "1" for d in inj_days})
    return device


def _sy_records(p: ReceiptPatient, month: date, month_end: date) -> list[list[str]]:
    """SY: the diseases current in the month, with their 転帰 when they ended in it."""
    recs = []
    for code, start, end, outcome, suspected, main, _name in p.conditions:
        if start > month_end or (end is not None and end < month):
            continue
        tenki = "1"
        if end is not None and month <= end <= month_end:
            tenki = {"F": "2", "D": "3", "S": "4", "P": "1"}.get(outcome, "1")
        recs.append(build_record("SY", {
            "disease_code": code, "start_date": wareki(start), "outcome": tenki,
            "modifiers": C.MODIFIER_SUSPECTED[0] if suspected else "", "main": "01" if main else "",
        }))
    return recs


def _unit_records(units: list[tuple[tuple, dict[int, int]]], burden: str) -> list[list[str]]:
    """SI/IY/TO lines of each merged billing unit (points on its last line, counts per day),
    with a CO comment on long prescriptions."""
    recs = []
    for sig, days in units:
        count = sum(days.values())
        for i, (rec, ident, code, qty, points) in enumerate(sig):
            values = {"category": ident if i == 0 else "", "burden": burden, "code": code,
                      "quantity": qty, "count": str(count)}
            if i == len(sig) - 1:
                values["points"] = str(points)
            for d, n in days.items():
                values[f"day{d:02d}"] = str(n)
            recs.append(build_record(rec, values))
        if sig[0][0] == "IY" and sig[0][1] == "21" and max(days.values()) > 60:
            recs.append(build_record("CO", {"category": "", "burden": burden, "code": "810000001",
                                            "text": "長期処方（慢性疾患にて病状安定のため）"}))
    return recs


def _receipt(p: ReceiptPatient, no: int, month: date, inpatient: bool, bills: list[tuple],
             month_end: date) -> tuple[list[list[str]], int]:
    ins = p.insurance(month)
    burden = "2" if p.kohi else "1"
    recs: list[list[str]] = [_re_record(p, no, month, inpatient, month_end)]
    units = _units(bills)
    total = sum(sig[-1][4] * sum(days.values()) for sig, days in units)
    device = _device(inpatient, bills, burden)
    if device is not None:
        total += 10 * int(device["count"])
    days_seen = len({b[0] for b in bills})
    recs.append(build_record("HO", {
        "insurer_no": ins.insurer.rjust(8), "symbol": p.symbol, "number": p.number,
        "days": str(days_seen), "points": str(total),
        "burden_amount": str(int(round(total * 10 * copay_rate(p, month), -1))),
    }))
    if p.kohi:
        recs.append(build_record("KO", {"payer_no": KOHI[0], "recipient_no": p.kohi.zfill(7),
                                        "days": str(days_seen), "points": str(total),
                                        "burden_amount": "0"}))
    recs += _sy_records(p, month, month_end)
    recs += _unit_records(units, burden)
    if device is not None:
        recs.append(build_record("TO", device))
    return recs, total


def _next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def encode_lines(records: list[list[str]]) -> bytes:
    """``encode_uke`` without the final 0x1A, checked per line instead of per field
    (the same bytes — a test compares them — at a fraction of the cost for millions of records)."""
    out = []
    for rec in records:
        line = ",".join(rec)
        if line.count(",") != len(rec) - 1 or any(c in line for c in "\r\n\x1a"):
            return encode_uke(records)[: -len(EOF)]  # let the shared encoder raise its error
        out.append(line.translate(WAVE_DASH_FOLD).encode("cp932") + b"\r\n")
    return b"".join(out)


@dataclass(frozen=True)
class Chunk:
    """One patient's receipt for a month, already encoded (RE number patched in by the writer)."""

    month: date
    payer: str
    inpatient: bool
    data: bytes  # CP932 lines with CRLF, starting with b"RE,0,"
    points: int
    bearers: int


def patient_receipts(p: ReceiptPatient) -> list[Chunk]:
    """Every monthly receipt of one patient (runs in the worker, so receipts scale with cores)."""
    per: dict[tuple[date, bool], list[tuple]] = defaultdict(list)
    for b in p.bills:
        per[(date(b[0].year, b[0].month, 1), b[1])].append(b)
    chunks = []
    for (month, inpatient), bills in sorted(per.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        month_end = date.fromordinal(_next_month(month).toordinal() - 1)
        recs, points = _receipt(p, 0, month, inpatient, bills, month_end)
        data = encode_lines(recs)
        chunks.append(Chunk(month, p.insurance(month).payer, inpatient, data, points,
                            2 if p.kohi else 1))
    return chunks


def write_receipts(out: Path, chunks: list[Chunk], facility: str) -> list[Path]:
    """Write one file per 診療年月 and payer from the patients' chunks (in patient order)."""
    months: dict[tuple[date, str], list[Chunk]] = defaultdict(list)
    for c in chunks:
        months[(c.month, c.payer)].append(c)
    written = []
    out.mkdir(parents=True, exist_ok=True)
    pref, tensu, code7 = facility[:2], facility[2:3] or "1", facility[3:].rjust(7, "0")[-7:]
    for (month, payer), entries in sorted(months.items(), key=lambda kv: kv[0]):
        head = encode_uke([build_record("IR", {
            "payer": payer, "prefecture": pref, "tensuhyo": tensu, "facility_code": code7,
            "facility_name": C.HOSPITAL_NAME, "claim_month": wareki(_next_month(month), day=False),
            "volume": "00", "phone": C.HOSPITAL_PHONE})])[: -len(EOF)]
        body = [head]
        for no, c in enumerate(entries, 1):
            body.append(b"RE,%d," % no + c.data[len(b"RE,0,"):])
        tail = encode_uke([build_record("GO", {
            "total_receipts": str(sum(c.bearers for c in entries)),
            "total_points": str(sum(c.points for c in entries)), "volume": "99"})])
        path = out / f"RECEIPTC_{month:%Y%m}_{payer}.UKE"
        path.write_bytes(b"".join(body) + tail)
        written.append(path)
    return written
