"""One patient's clinical course over the storage period, as SS-MIX2 documents.

The course is drawn in three passes: the problem list (chronic conditions, acute episodes,
admissions), then every encounter's messages, then the documents that summarise the list
(PPR-01 and ADT-00 version chains).  Billing lines for the UKE receipts are collected on the way,
from the same orders, so receipts and storage agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Callable

from . import content as C
from .hl7build import d8
from .messages import NO_ORDER, Builder, Doc
from .patients import Condition, Doctor, Patient, doctors

# Realistic rates (per order) of rewritten and cancelled orders.
RATE_UPDATE = 0.03
RATE_CANCEL = 0.015
RATE_RESULT_PRELIM = 0.05
RATE_RESULT_CORRECTED = 0.02


def _mistype(value: str) -> str:
    """The classic transcription error: a digit typed twice."""
    return value[0] + value if value[:1].isdigit() else value + "0"


@dataclass
class Ext:
    """One extended-storage content folder (reference §6)."""

    date: str
    type_folder: str
    key: str
    when: datetime
    dept: str
    files: dict[str, bytes]


@dataclass
class Bill:
    """One UKE line: SI (procedure) or IY (drug), grouped into 剤 by ``unit``."""

    day: date
    inpatient: bool
    rec: str  # SI / IY
    ident: str  # 診療識別
    code: str
    qty: str
    points: int  # on the last line of a unit only (0 elsewhere)
    count: int
    unit: int  # billing-unit number (lines with the same unit form one 剤)


@dataclass(frozen=True)
class _Stay:
    """What every part of one inpatient stay shares (see :meth:`Course.admission`)."""

    reason: str
    dept: str
    doc: Doctor
    ward: tuple
    loc: str
    admit_day: date
    discharge_day: date
    admitted: datetime

    @property
    def los(self) -> int:
        return (self.discharge_day - self.admit_day).days


@dataclass
class Course:
    rng: random.Random
    patient: Patient
    facility: str
    start: date
    end: date
    heavy: bool = False
    docs: list[Doc] = field(default_factory=list)
    ext: list[Ext] = field(default_factory=list)
    bills: list[Bill] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.b = Builder(self.facility, self.patient)
        self._orders = 0
        self._units = 0
        self._busy: set[tuple[str, date]] = set()  # (data type, day) for order-less types
        self._stays: list[tuple[date, date]] = []
        self._seen_first = False
        self._drug_choice: dict[str, list[tuple[C.Drug, str]]] = {}

    # -- small utilities ----------------------------------------------------------------------
    def order_no(self) -> str:
        self._orders += 1
        return f"{self.patient.index % 10_000_000:07d}{self._orders:08d}"

    def unit(self) -> int:
        self._units += 1
        return self._units

    def at(self, day: date, lo: int = 9, hi: int = 16) -> datetime:
        r = self.rng
        return datetime(day.year, day.month, day.day, r.randint(lo, hi), r.randrange(60),
                        r.randrange(60), r.randrange(1000) * 1000)

    def later(self, t: datetime, lo: int = 1, hi: int = 600) -> datetime:
        return t + timedelta(seconds=self.rng.randint(lo, hi), microseconds=self.rng.randrange(1000) * 1000)

    def add(self, dtype: str, day: date | None, order: str, dept: str, when: datetime, text: str,
            flag: str = "1") -> None:
        self.docs.append(Doc(dtype, d8(day) if day else "-", order, dept, when, text, flag))

    def cancelled_duplicate(self, dtype: str, day: date, dept: str, t: datetime,
                            build: Callable[[datetime, str, bool], str],
                            entered: tuple[int, int], cancelled: tuple[int, int]) -> None:
        """An order entered twice by mistake: the duplicate (``entered`` seconds after ``t``) and
        its cancel message (``cancelled`` seconds after), both stored with flag 0.
        ``build(time, order number, cancel)`` writes the message."""
        dup = self.order_no()
        self.add(dtype, day, dup, dept, self.later(t, *entered), build(t, dup, False), "0")
        ct = self.later(t, *cancelled)
        self.add(dtype, day, dup, dept, self.later(ct), build(ct, dup, True), "0")

    def doctor(self, dept: str) -> Doctor:
        docs = doctors(dept)
        return docs[self.patient.index % len(docs)]

    def in_stay(self, day: date) -> bool:
        return any(a - timedelta(days=1) <= day <= b + timedelta(days=1) for a, b in self._stays)

    def free_day(self, dtype: str, day: date) -> date:
        while (dtype, day) in self._busy or self.in_stay(day):
            day += timedelta(days=1)
        self._busy.add((dtype, day))
        return day

    def new_condition(self, key: str, recorded: date, dept: str, *, onset: date | None = None,
                      end: date | None = None, outcome: str = "", suspected: bool = False,
                      main: bool = False, setting: str = "O") -> Condition:
        c = Condition(C.DISEASES[key], onset or recorded, recorded,
                      f"{self.patient.pid}{len(self.conditions) + 1:05d}", end, outcome, suspected,
                      main, setting, self.doctor(dept))
        self.conditions.append(c)
        return c

    # -- the whole course ---------------------------------------------------------------------
    def run(self) -> None:
        p = self.patient
        first = max(p.registered, self.start)
        if first > self.end:
            first = self.end
        by_dept = self.chronic_conditions(first)
        self.plan_admissions(first)
        self.chronic_care(first, by_dept)
        self.acute_episodes(first)
        self.vaccinations(first)
        self.demographics(first)
        self.problem_list()
        self.docs.sort(key=lambda d: (d.when, d.dtype))

    # -- pass 1+2: encounters ---------------------------------------------------------------
    def chronic_conditions(self, first: date) -> dict[str, list[str]]:
        """Diagnose the chronic conditions and fix each one's drugs; return keys by department."""
        p, r = self.patient, self.rng
        by_dept: dict[str, list[str]] = {}
        for i, key in enumerate(p.chronic):
            dis = C.DISEASES[key]
            onset = p.registered - timedelta(days=r.randrange(30, 3000)) if p.registered == self.start \
                else p.registered + timedelta(days=r.randrange(0, 400))
            onset = max(onset, p.birth + timedelta(days=365 * 18))
            recorded = max(onset, p.registered)
            if recorded > self.end:
                continue
            # One department manages most chronic conditions; specialists keep a few of them.
            dept = dis.dept if (i == 0 or self.heavy or r.random() < 0.3) else \
                C.DISEASES[p.chronic[0]].dept
            self.new_condition(key, recorded, dept, onset=onset, main=(i == 0), suspected=False)
            by_dept.setdefault(dept, []).append(key)
            picks = C.DISEASE_DRUGS.get(key, ())
            n = 1 if len(picks) < 2 or r.random() < 0.55 else 2
            self._drug_choice[key] = [(C.DRUGS[k], C.DRUGS[k].dose) for k in picks[:n]]
        return by_dept

    def chronic_care(self, first: date, by_dept: dict[str, list[str]]) -> None:
        r = self.rng
        stop = self.end
        if not self.heavy and r.random() < 0.55:  # stable: referred back to a clinic (逆紹介), or moved
            stop = first + timedelta(days=r.randrange(60, max(61, min(1500, (self.end - first).days))))
        for dept, keys in by_dept.items():
            interval = (20, 28) if self.heavy else (28, 91)
            recorded = min(c.recorded for c in self.conditions if c.disease.key in keys)
            day = max(first, recorded)
            if recorded < first:  # established patients: the first visit falls anywhere in a cycle
                day = first + timedelta(days=r.randrange(interval[1]))
            n = 0
            while day <= stop:
                n += 1
                active = list(keys)
                gap = r.randint(*interval)
                self.visit(day, dept, active, gap, labs=("dm" in keys or n % 3 == 1 or self.heavy))
                if (("gerd" in keys or "gastritis" in keys) and n % 14 == 3):
                    self.endoscopy(day + timedelta(days=r.randint(7, 20)), dept)
                if any(k in keys for k in ("htn", "chf", "af", "angina")) and n % 6 == 1:
                    self.ecg(day, dept, keys)
                if any(k in keys for k in ("chf", "copd", "asthma")) and n % 8 == 2:
                    self.imaging(day, dept, C.RADIOLOGY[0], inpatient=False,
                                 purpose="定期評価", finding="著変なし。")
                day += timedelta(days=gap)

    def visit(self, day: date, dept: str, keys: list[str], days: int, labs: bool,
              acute: tuple[str, ...] = ()) -> date:
        """One outpatient visit: reception, prescription, maybe labs, maybe a progress note."""
        r = self.rng
        day = self.free_day("ADT-12", day)
        if day > self.end:
            return day
        doc = self.doctor(dept)
        t = self.at(day)
        self.b.visit = "V" + self.order_no()  # one visit number for the visit's messages
        self.add("ADT-12", day, NO_ORDER, dept, self.later(t, 1, 30), self.b.adt12(t, dept, doc))
        first_visit = not self._seen_first
        self._seen_first = True
        fee = C.FEE_FIRST_VISIT if first_visit else C.FEE_RETURN_VISIT
        self.bill(day, False, "SI", "11" if first_visit else "12", fee[0], "", fee[1], 1)
        if not first_visit:
            self.bill(day, False, "SI", "12", C.FEE_OUTPATIENT_MGMT[0], "", C.FEE_OUTPATIENT_MGMT[1], 1)
        drugs = [dd for k in keys for dd in self._drug_choice.get(k, ())]
        drugs += [(C.DRUGS[k], C.DRUGS[k].dose) for a in acute for k in C.DISEASE_DRUGS[a][:2]]
        if drugs:
            self.prescription(self.later(t, 300, 1800), dept, doc, drugs, min(days, 90 if not acute else days),
                              inpatient=False)
        if labs:
            extra = [lab for k in keys + list(acute) for lab, _ in C.DISEASE_LABS.get(k, ())]
            self.lab(self.later(t, 60, 600), dept, doc, list(C.BASIC_PANEL) + extra, inpatient=False)
        if r.random() < 0.25 or self.heavy:
            self.note(t, dept, doc, keys + list(acute))
        self.b.visit = ""
        return day

    def prescription(self, t: datetime, dept: str, doc: Doctor, drugs: list[tuple[C.Drug, str]],
                     days: int, inpatient: bool) -> str:
        """OMP-01 with one Rp per usage; sometimes rewritten (flag 2 -> 1) or a cancelled duplicate."""
        r = self.rng
        rps: dict[str, list[tuple[C.Drug, str]]] = {}
        seen = set()
        for d, dose in drugs:
            if d.key in seen:
                continue
            seen.add(d.key)
            rps.setdefault(d.usage, []).append((d, dose))
        groups = list(rps.values())
        order = self.order_no()
        day = t.date()
        if r.random() < RATE_UPDATE:  # first version with a different duration, then corrected
            old = self.b.omp01(t, order, groups, days + 7, dept, doc, inpatient)
            self.add("OMP-01", day, order, dept, self.later(t), old, "2")
            t = self.later(t, 600, 7200)
        self.add("OMP-01", day, order, dept, self.later(t), self.b.omp01(t, order, groups, days, dept,
                                                                         doc, inpatient))
        if r.random() < RATE_CANCEL:  # a duplicate entered by mistake and cancelled
            self.cancelled_duplicate(
                "OMP-01", day, dept, t, lambda at, no, cancel: self.b.omp01(
                    at, no, groups, days, dept, doc, inpatient, cancel=cancel), (60, 300), (400, 900))
        # receipts: one 剤 per Rp (internal pharmacy), plus 処方料/調剤料
        ident_for = {"21": "21", "22": "22", "23": "23"}
        for g in groups:
            u = self.unit()
            yen = 0.0
            for i, (d, dose) in enumerate(g):
                per_day = float(dose) * (d.times or 1)
                yen += d.price * per_day
                last = i == len(g) - 1
                n = days if d.times else 5
                self.bill(day, inpatient, "IY", ident_for[d.category], d.receipt, f"{per_day:g}",
                          max(1, round(yen / 10)) if last else 0, n, u)
        if not inpatient:
            self.bill(day, False, "SI", "25", C.FEE_PRESCRIPTION[0], "", C.FEE_PRESCRIPTION[1], 1)
            self.bill(day, False, "SI", "24", C.FEE_DISPENSING[0], "", C.FEE_DISPENSING[1], 1)
        return order

    def lab(self, t: datetime, dept: str, doc: Doctor, keys: list[str], inpatient: bool,
            severity: float = 1.0) -> None:
        """OML-01 order and its OML-11 result (sometimes preliminary→final or corrected)."""
        r, p = self.rng, self.patient
        labs: dict[str, list[C.Lab]] = {}
        for k in dict.fromkeys(keys):
            lab = C.LABS[k]
            labs.setdefault(lab.material, []).append(lab)
        order = self.order_no()
        day = t.date()
        if r.random() < RATE_CANCEL:
            self.cancelled_duplicate(
                "OML-01", day, dept, t, lambda at, no, cancel: self.b.oml01(
                    at, no, labs, dept, doc, inpatient, t, cancel=cancel), (1, 60), (120, 600))
        self.add("OML-01", day, order, dept, self.later(t), self.b.oml01(t, order, labs, dept, doc,
                                                                         inpatient, t))
        shifts: dict[str, float] = {}
        for k in p.chronic + [c.disease.key for c in self.conditions if c.active_on(day)]:
            for lab_key, s in C.DISEASE_LABS.get(k, ()):
                shifts[lab_key] = s * severity
        results: dict[str, list[tuple]] = {}
        for material, items in labs.items():
            rows = []
            for lab in items:
                mean = lab.mean + shifts.get(lab.key, 0.0) * lab.sd * r.uniform(0.6, 1.1)
                v = max(lab.low * 0.3 if lab.low else 0.0, r.gauss(mean, lab.sd * 0.5))
                value = f"{v:.{lab.decimals}f}"
                flag = "H" if float(value) > lab.high else "L" if float(value) < lab.low else ""
                rows.append(("NM", lab.jlac10, lab.name, lab.local, value, lab.unit,
                             f"{lab.low:g}-{lab.high:g}", flag, "F", lab.group))
            results[material] = rows
        if r.random() < 0.2:  # qualitative urine tests: text results
            urine = []
            for code, name, local in C.URINE_TESTS:
                val = r.choices(("(-)", "(+-)", "(1+)", "(2+)"), (80, 10, 7, 3))[0]
                if code.startswith("1A035") and "dm" in p.chronic and r.random() < 0.4:
                    val = "(2+)"
                urine.append(("ST", code, name, local, val, "", "(-)", "" if val == "(-)" else "A",
                              "F", "E003"))
            results["001"] = urine
        spec = f"{day:%y%m%d}{self._orders:05d}"
        done = self.later(t, 1800, 7200)
        if r.random() < RATE_RESULT_PRELIM:  # preliminary first, final later
            prelim = {m: [row[:8] + ("P", row[9]) for row in rows] for m, rows in results.items()}
            self.add("OML-11", day, order, dept, self.later(done),
                     self.b.oml11(done, order, prelim, dept, doc, inpatient, t, spec), "2")
            done = self.later(done, 1800, 3600)
        if r.random() < RATE_RESULT_CORRECTED:  # a mistyped value reported, then corrected (OBX-11 C)
            first_mat = next(iter(results))
            rows = list(results[first_mat])
            row = rows[0]
            wrong = {**results, first_mat: [row[:4] + (_mistype(row[4]),) + row[5:]] + rows[1:]}
            self.add("OML-11", day, order, dept, self.later(done),
                     self.b.oml11(done, order, wrong, dept, doc, inpatient, t, spec), "2")
            done = self.later(done, 3600, 20000)
            results = {**results, first_mat: [row[:8] + ("C", row[9])] + rows[1:]}
        self.add("OML-11", day, order, dept, self.later(done),
                 self.b.oml11(done, order, results, dept, doc, inpatient, t, spec))
        u = self.unit()
        self.bill(day, inpatient, "SI", "60", C.FEE_BLOOD_DRAW[0], "", C.FEE_BLOOD_DRAW[1], 1, u)
        self.bill(day, inpatient, "SI", "60", C.FEE_HEMATOLOGY[0], "", C.FEE_HEMATOLOGY[1], 1,
                  self.unit())
        self.bill(day, inpatient, "SI", "60", C.FEE_BIOCHEM[0], "", C.FEE_BIOCHEM[1], 1, self.unit())
        if "hba1c" in keys:
            self.bill(day, inpatient, "SI", "60", C.FEE_HBA1C[0], "", C.FEE_HBA1C[1], 1, self.unit())
        self.bill(day, inpatient, "SI", "60", C.FEE_LAB_JUDGEMENT[0], "", C.FEE_LAB_JUDGEMENT[1], 1,
                  self.unit())

    def imaging(self, day: date, dept: str, study: tuple[str, str, str, str, int], inpatient: bool,
                purpose: str, finding: str) -> None:
        if day > self.end:
            return
        doc = self.doctor(dept)
        t = self.at(day, 9, 11)
        order = self.order_no()
        code, name, modality, fee, points = study
        self.add("OMG-01", day, order, dept, self.later(t),
                 self.b.omg_order(t, order, code, name, "JJ1017", t + timedelta(hours=1), purpose,
                                  dept, doc, inpatient))
        done = t + timedelta(hours=1, minutes=self.rng.randrange(60))
        acc = f"R{day:%y%m%d}{self._orders:05d}"
        self.add("OMG-11", day, order, dept, self.later(done),
                 self.b.omg_done(done, order, code, name, "JJ1017", done, modality, dept, doc,
                                 inpatient, acc, finding))
        self.bill(day, inpatient, "SI", "70", fee, "", points, 1, self.unit())

    def ecg(self, day: date, dept: str, keys: list[str]) -> None:
        """OMG-03 order and OMG-13 result: a 12-lead ECG at a cardiology/internal-medicine visit."""
        if day > self.end or self.in_stay(day):
            return
        r = self.rng
        doc = self.doctor(dept)
        t = self.at(day, 9, 11)
        order = self.order_no()
        self.add("OMG-03", day, order, dept, self.later(t), self.b.omg03(t, order, t, dept, doc))
        done = t + timedelta(minutes=r.randint(20, 90))
        af = "af" in keys
        values = []
        for code, name, unit, lo, hi, mean in C.ECG_ITEMS:
            v = r.gauss(mean + (18 if af and code == "01" else 0), (hi - lo) / 8)
            if af and code == "02":
                continue  # no P waves, no PR interval
            value = f"{v:.0f}"
            flag = "H" if v > hi else "L" if v < lo else ""
            values.append((code, name, value, unit, f"{lo:g}-{hi:g}", flag))
        conclusion = "心房細動。心室応答はやや頻拍。" if af else r.choice(
            ("洞調律。正常範囲内。", "洞調律。左室高電位。", "洞調律。軽度ＳＴ－Ｔ変化。"))
        at = self.later(done, 600, 3600)
        self.add("OMG-13", day, order, dept, self.later(at),
                 self.b.omg13(at, order, done, dept, doc, values, conclusion))
        self.bill(day, False, "SI", "60", C.FEE_ECG[0], "", C.FEE_ECG[1], 1, self.unit())

    def endoscopy(self, day: date, dept: str) -> None:
        day = self.free_day("-endo", day)
        if day > self.end:
            return
        doc = self.doctor(dept)
        t = self.at(day, 9, 11)
        order = self.order_no()
        code, name, fee, points = C.ENDOSCOPY[0]
        self.add("OMG-02", day, order, dept, self.later(t),
                 self.b.omg_order(t, order, code, name, "LENDO", t + timedelta(hours=2), "胃部症状精査",
                                  dept, doc, False))
        done = t + timedelta(hours=2, minutes=self.rng.randrange(50))
        finding = self.rng.choice(("萎縮性胃炎を認める。悪性所見なし。", "逆流性食道炎　ロサンゼルス分類Ａ。",
                                   "明らかな異常所見なし。"))
        self.add("OMG-12", day, order, dept, self.later(done),
                 self.b.omg_done(done, order, code, name, "LENDO", done, "ES", dept, doc, False,
                                 f"E{day:%y%m%d}{self._orders:05d}", finding))
        self.bill(day, False, "SI", "60", fee, "", points, 1, self.unit())

    def note(self, t: datetime, dept: str, doc: Doctor, keys: list[str]) -> None:
        from .documents import progress_note
        names = "、".join(C.DISEASES[k].name for k in keys) or "経過観察"
        key = self.order_no()
        self.ext.append(Ext(d8(t), "L-PN^経過記録^99ZL01^11506-3^経過記録^LN", key, self.later(t, 900, 1800),
                            dept, {"main_document.xml": progress_note(self.patient, doc, t, names,
                                                                      self.facility)}))

    def bill(self, day: date, inpatient: bool, rec: str, ident: str, code: str, qty: str,
             points: int, count: int, unit: int | None = None) -> None:
        self.bills.append(Bill(day, inpatient, rec, ident, code, qty, points, count,
                               unit if unit is not None else self.unit()))

    # -- acute episodes -------------------------------------------------------------------------
    def acute_episodes(self, first: date) -> None:
        p, r = self.patient, self.rng
        span = (self.end - first).days
        n = r.choice((0, 0, 1, 1, 2, 3)) if not self.heavy else 6
        for _ in range(n):
            if span < 7:
                break
            day = first + timedelta(days=r.randrange(span))
            key = r.choice(("uri", "uri", "ge", "flu", "lbp"))
            dept = "09" if p.age(day) < 15 else C.DISEASES[key].dept
            day = self.free_day("ADT-12", day)
            if day > self.end:
                continue
            suspected = key == "flu" and r.random() < 0.3
            heal = day + timedelta(days=r.randint(7, 21))
            outcome = "S" if suspected else "F"
            self.new_condition(key, day, dept, end=min(heal, self.end) if heal <= self.end else None,
                               outcome=outcome if heal <= self.end else "", suspected=suspected)
            self._busy.discard(("ADT-12", day))
            self.visit(day, dept, [], r.randint(3, 7), labs=r.random() < 0.3,
                       acute=(key,))

    # -- vaccinations (OMP-02 + OMP-12 with 注射種別 06) -------------------------------------------
    def vaccinations(self, first: date) -> None:
        p, r = self.patient, self.rng
        for year in range(first.year, self.end.year + 1):
            day = date(year, 10, 15) + timedelta(days=r.randrange(40))
            if not (first <= day <= self.end) or p.age(day) < 65 or r.random() > 0.6 or self.in_stay(day):
                continue
            self.vaccine(day, C.VACCINES[0])
        if p.age(self.end) >= 66 and r.random() < 0.4:
            day = first + timedelta(days=r.randrange(max(1, (self.end - first).days)))
            if not self.in_stay(day):
                self.vaccine(day, C.VACCINES[1])

    def vaccine(self, day: date, vac: tuple[str, str, str, str, str]) -> None:
        key, name, hot9, rcpt, lot = vac
        inj = C.Injection(key, name, hot9, rcpt, "0.5", "ML", "ミリリットル", 0.0)
        dept = "01"
        doc = self.doctor(dept)
        t = self.at(day, 9, 15)
        order = self.order_no()
        kind = ("06", "予防接種")
        self.add("OMP-02", day, order, dept, self.later(t),
                 self.b.omp02(t, order, [(t, t)], [("B", inj)], dept, doc, "", kind, inpatient=False))
        done = t + timedelta(minutes=self.rng.randint(10, 40))
        self.add("OMP-12", day, order, dept, self.later(done),
                 self.b.omp12(done, order, 1, done, done, [("B", inj)], dept, doc, f"{dept}^^^^^C",
                              C.NURSES[self.patient.index % len(C.NURSES)], kind, inpatient=False,
                              lot=f"{lot}{day:%y}{self.rng.randint(100, 999)}", maker="^阪大微研^99MKR"))

    # -- admissions -----------------------------------------------------------------------------
    def plan_admissions(self, first: date) -> None:
        p, r = self.patient, self.rng
        age = p.age(self.end)
        chance = 0.25 if age >= 65 else 0.08
        n = 4 if self.heavy else (1 if r.random() < chance else 0) + (1 if r.random() < chance / 4 else 0)
        span = (self.end - first).days
        for _ in range(n):
            if span < 60:
                return
            options = [a for a in C.ADMISSION_REASONS
                       if a[0] != "chf" or "chf" in p.chronic]
            if age < 50:
                options = [a for a in options if a[0] in ("pneumonia", "appendicitis", "cholecystitis")]
            reason, dept, (lo, hi) = r.choice(options)
            admit = first + timedelta(days=r.randrange(span - 40))
            los = r.randint(lo, hi)
            if any(not (admit > b + timedelta(days=7) or admit + timedelta(days=los + 7) < a)
                   for a, b in self._stays):
                continue
            discharge = admit + timedelta(days=los)
            if discharge >= self.end:
                continue
            self._stays.append((admit, discharge))
            self.admission(reason, dept, admit, discharge)

    def admission(self, reason: str, dept: str, admit_day: date, discharge_day: date) -> None:
        """One inpatient stay: every message, document and bill line it produces, in the order
        (and with the random draws) of the stay's days."""
        r, b = self.rng, self.b
        doc = self.doctor(dept)
        ward = next(w for w in C.WARDS if dept in w[2])
        room = f"{ward[0][0]}{r.randint(1, 20):02d}"
        loc = f"{ward[0]}^{room}^{r.randint(1, 4)}^^^N"
        elective = reason in ("cataract", "fracture") or r.random() < 0.3
        admitted = self.at(admit_day, 10, 15)
        b.visit = "A" + self.order_no()  # 入院番号 shared by every message of the stay
        st = _Stay(reason, dept, doc, ward, loc, admit_day, discharge_day, admitted)
        if elective:
            self._planned_admission(st)
        self.add("ADT-22", admit_day, NO_ORDER, dept, self.later(admitted),
                 b.adt22(admitted, admitted, dept, doc, loc))
        onset = admit_day - timedelta(days=r.randint(0, 5))
        outcome = "F" if reason in ("appendicitis", "cholecystitis", "cataract", "pneumonia") else "P"
        cond = self.new_condition(reason, admit_day, dept, onset=onset, main=True, setting="H",
                                  end=discharge_day + timedelta(days=r.randint(0, 30)), outcome=outcome)
        if cond.end and cond.end > self.end:
            cond.end, cond.outcome = None, ""
        self._stay_diet(st)
        self._stay_imaging(st)
        nurse = C.NURSES[self.patient.index % len(C.NURSES)]
        self._stay_injections(st, nurse)
        self._stay_oral(st, nurse)
        self._stay_labs(st)
        cur_loc = self._stay_transfer(st)
        # vitals (extended storage), one content folder per day
        for i in range(st.los + 1):
            self.vitals(admit_day + timedelta(days=i), dept, doc, cur_loc if i > st.los // 2 else loc,
                        reason, i)
        self._discharge(st, cur_loc)
        for i in range(st.los):
            day = admit_day + timedelta(days=i)
            self.bill(day, True, "SI", "90", C.FEE_ADMISSION[0], "", C.FEE_ADMISSION[1], 1)
        b.visit = ""

    def _planned_admission(self, st: _Stay) -> None:
        """ADT-21 planned admission, sometimes cancelled and re-planned."""
        r, b = self.rng, self.b
        dept, doc, loc, admitted = st.dept, st.doc, st.loc, st.admitted
        plan_t = self.at(st.admit_day - timedelta(days=r.randint(7, 21)))
        if r.random() < 0.1:
            wrong = admitted - timedelta(days=r.randint(3, 10))
            self.add("ADT-21", wrong.date(), NO_ORDER, dept, self.later(plan_t - timedelta(days=2)),
                     b.adt21(plan_t - timedelta(days=2), wrong, dept, doc, loc), "0")
            ct = self.later(plan_t, 60, 600)
            self.add("ADT-21", wrong.date(), NO_ORDER, dept, self.later(ct),
                     b.adt21(ct, wrong, dept, doc, loc, cancel=True), "0")
        self.add("ADT-21", st.admit_day, NO_ORDER, dept, self.later(plan_t),
                 b.adt21(plan_t, admitted, dept, doc, loc))

    def _stay_diet(self, st: _Stay) -> None:
        """OMD diet order (sometimes updated); nil by mouth first for acute abdomen."""
        r, b = self.rng, self.b
        dept, doc, loc, admitted, admit_day = st.dept, st.doc, st.loc, st.admitted, st.admit_day
        diet_key = ("npo" if st.reason in ("appendicitis", "cholecystitis") else
                    next((k for k in ("dm", "chf", "ckd", "htn") if k in self.patient.chronic), "normal"))
        diet_order = self.order_no()
        dt = self.later(admitted, 600, 3600)
        if r.random() < RATE_UPDATE * 3:
            self.add("OMD", admit_day, diet_order, dept, self.later(dt),
                     b.omd(dt, diet_order, C.DIETS["soft"], dt, dept, doc, loc), "2")
            dt = self.later(dt, 600, 3600)
        self.add("OMD", admit_day, diet_order, dept, self.later(dt),
                 b.omd(dt, diet_order, C.DIETS[diet_key], dt, dept, doc, loc))
        if diet_key == "npo":
            change = admitted + timedelta(days=r.randint(2, 4))
            o2 = self.order_no()
            self.add("OMD", change.date(), o2, dept, self.later(change),
                     b.omd(change, o2, C.DIETS["soft"], change, dept, doc, loc))

    def _stay_imaging(self, st: _Stay) -> None:
        """Imaging on admission for the reasons that call for it."""
        reason = st.reason
        study = {"pneumonia": C.RADIOLOGY[2], "chf": C.RADIOLOGY[0], "cholecystitis": C.RADIOLOGY[5],
                 "appendicitis": C.RADIOLOGY[3], "fracture": C.RADIOLOGY[1]}.get(reason)
        if study:
            findings = {"pneumonia": "右下葉に浸潤影を認める。", "chf": "心拡大と両側胸水を認める。",
                        "cholecystitis": "胆のう壁肥厚と胆石を認める。",
                        "appendicitis": "虫垂の腫大と周囲脂肪織濃度上昇を認める。",
                        "fracture": "骨折線を認める。"}
            self.imaging(st.admit_day, st.dept, study, inpatient=True,
                         purpose=C.DISEASES[reason].name + "疑い", finding=findings[reason])

    def _stay_injections(self, st: _Stay, nurse: tuple[str, str, str]) -> None:
        """Injections: one OMP-02 order, one OMP-12 administration (and its bill lines) per day."""
        r, b = self.rng, self.b
        reason, dept, doc, loc, admit_day, los = st.reason, st.dept, st.doc, st.loc, st.admit_day, st.los
        course = {"pneumonia": [("B", C.INJECTIONS["saline"]), ("A", C.INJECTIONS["ceftriaxone"])],
                  "cholecystitis": [("B", C.INJECTIONS["saline"]), ("A", C.INJECTIONS["cefazolin"])],
                  "appendicitis": [("B", C.INJECTIONS["saline"]), ("A", C.INJECTIONS["cefazolin"])],
                  "chf": [("B", C.INJECTIONS["saline"]), ("A", C.INJECTIONS["furosemide_iv"])],
                  }.get(reason, [("B", C.INJECTIONS["solita"]), ("A", C.INJECTIONS["adona"])])
        n_inj = min(los, r.randint(3, 7)) if reason in ("pneumonia", "cholecystitis", "appendicitis", "chf") \
            else min(los, 2)
        if self.heavy:
            n_inj = los
        inj_order = self.order_no()
        ot = self.later(st.admitted, 900, 3000)
        doses = []
        for i in range(n_inj):
            s = datetime.combine(admit_day + timedelta(days=i), datetime.min.time()).replace(hour=10)
            doses.append((s, s + timedelta(hours=6)))
        self.add("OMP-02", admit_day, inj_order, dept, self.later(ot),
                 b.omp02(ot, inj_order, doses, course, dept, doc, loc))
        for i, (s, e) in enumerate(doses, 1):
            done = e + timedelta(minutes=r.randint(5, 40))
            self.add("OMP-12", s.date(), inj_order, dept, self.later(done),
                     b.omp12(done, inj_order, i, s, e, course, dept, doc, loc, nurse))
            u = self.unit()
            yen = 0.0
            for j, (_role, inj) in enumerate(course):
                yen += inj.price
                self.bill(s.date(), True, "IY", "33", inj.receipt, inj.amount,
                          max(1, round(yen / 10)) if j == len(course) - 1 else 0, 1, u)
            self.bill(s.date(), True, "SI", "33", C.FEE_INJECTION_IV[0], "", C.FEE_INJECTION_IV[1], 1)

    def _stay_oral(self, st: _Stay, nurse: tuple[str, str, str]) -> None:
        """Oral medication continues in hospital (OMP-01 inpatient + daily OMP-11)."""
        r, b = self.rng, self.b
        drugs = [dd for c in self.conditions if c.recorded <= st.admit_day
                 for dd in self._drug_choice.get(c.disease.key, ())]
        if not drugs:
            return
        rx_t = self.later(st.admitted, 1800, 5400)
        rx_days = min(st.los, 14)
        order = self.prescription(rx_t, st.dept, st.doc, drugs, rx_days, inpatient=True)
        for i in range(1, min(rx_days, 10 if not self.heavy else rx_days) + 1):
            given = datetime.combine(st.admit_day + timedelta(days=i), datetime.min.time()).replace(hour=8)
            at = given + timedelta(minutes=r.randint(10, 90))
            self.add("OMP-11", given.date(), order, st.dept, self.later(at),
                     b.omp11(at, order, drugs[:4], given, st.dept, st.doc, nurse, st.loc))

    def _stay_labs(self, st: _Stay) -> None:
        """Labs on admission and every 2-4 days, improving."""
        panel = list(C.BASIC_PANEL) + [lab for lab, _ in C.DISEASE_LABS.get(st.reason, ())]
        day, k = st.admit_day, 0
        while day < st.discharge_day:
            sev = max(0.05, 1.0 - k * 0.3)
            self._lab_with_condition(self.at(day, 6, 7), st.dept, st.doc, panel, sev)
            k += 1
            day += timedelta(days=self.rng.randint(2, 4))

    def _stay_transfer(self, st: _Stay) -> str:
        """Transfer (ADT-41 planned, ADT-42 done) in a quarter of the stays; the bed at the end."""
        r, b = self.rng, self.b
        dept, doc, loc, ward, los = st.dept, st.doc, st.loc, st.ward, st.los
        if not (los >= 6 and (r.random() < 0.25 or self.heavy)):
            return loc
        move_day = st.admit_day + timedelta(days=r.randint(2, los - 2))
        new_loc = f"{ward[0]}^{ward[0][0]}{r.randint(21, 30):02d}^{r.randint(1, 4)}^^^N"
        pt = self.at(move_day - timedelta(days=1), 14, 17)
        moved = self.at(move_day, 10, 15)
        self.add("ADT-41", move_day, NO_ORDER, dept, self.later(pt),
                 b.adt41(pt, moved, dept, doc, loc, new_loc))
        self.add("ADT-42", move_day, NO_ORDER, dept, self.later(moved),
                 b.adt42(moved, moved, dept, doc, new_loc, loc, st.admitted))
        return new_loc

    def _discharge(self, st: _Stay, cur_loc: str) -> None:
        """Planned discharge (ADT-51), discharge (ADT-52) and the discharge summary document."""
        r, b, p = self.rng, self.b, self.patient
        dept, doc, admitted, discharge_day = st.dept, st.doc, st.admitted, st.discharge_day
        plan = self.at(discharge_day - timedelta(days=r.randint(1, 3)), 13, 17)
        discharged = self.at(discharge_day, 10, 11)
        self.add("ADT-51", discharge_day, NO_ORDER, dept, self.later(plan),
                 b.adt51(plan, discharged, dept, doc, cur_loc, admitted))
        self.add("ADT-52", discharge_day, NO_ORDER, dept, self.later(discharged),
                 b.adt52(discharged, discharged, dept, doc, cur_loc, admitted))
        from .documents import discharge_summary
        self.ext.append(Ext(d8(discharge_day), "L-DS^退院時サマリー^99ZL01^18842-5^退院時サマリー^LN",
                            self.order_no(), self.later(discharged, 1800, 7200), dept,
                            {"main_document.xml": discharge_summary(
                                p, doc, admitted, discharged, C.DISEASES[st.reason].name,
                                [C.DISEASES[k].name for k in p.chronic], self.facility)}))

    def _lab_with_condition(self, t: datetime, dept: str, doc: Doctor, panel: list[str],
                            severity: float) -> None:
        self.lab(t, dept, doc, panel, inpatient=True, severity=severity)

    def vitals(self, day: date, dept: str, doc: Doctor, loc: str, reason: str, n: int) -> None:
        r = self.rng
        rows = []
        fever = reason in ("pneumonia", "cholecystitis", "appendicitis") and n < 3
        for hour in (6, 14, 20):
            when = datetime(day.year, day.month, day.day, hour, r.randrange(60))
            for code, name, unit, unit_text, ref, mean, sd, dec in C.VITALS:
                if code.startswith("9P1") and fever:
                    mean += 1.6 - n * 0.5
                v = r.gauss(mean, sd)
                val = f"{v:.{dec}f}"
                flag = ""
                if ref.startswith("<") and float(val) >= float(ref[1:]):
                    flag = "H"
                elif "-" in ref:
                    lo, hi = (float(x) for x in ref.split("-"))
                    flag = "H" if float(val) > hi else "L" if float(val) < lo else ""
                rows.append((when, code, name, unit, unit_text, ref, val, flag))
        at = datetime(day.year, day.month, day.day, 21, 0, r.randrange(60), r.randrange(1000) * 1000)
        key = f"{day:%Y%m%d}".rjust(15, "0")
        from .encode import encode_message
        text = self.b.vitals(at, key, rows, dept, doc, loc)
        self.ext.append(Ext(d8(day), "L-OBSERVATIONS^OBSERVATIONS^99ZL01", key, at, dept,
                            {"main_document.hl7": encode_message(text)}))

    # -- pass 3: ADT-00 / ADT-61 / PPR-01 chains ----------------------------------------------
    def demographics(self, first: date) -> None:
        p, r = self.patient, self.rng
        t = self.at(first, 8, 9)
        times = [t]
        span = (self.end - first).days
        for _ in range(r.choice((0, 0, 1, 1, 2, 3)) if not self.heavy else 4):
            if span > 30:
                times.append(self.at(first + timedelta(days=r.randrange(1, span))))
        times.sort()
        weight = p.weight
        for i, at in enumerate(times):
            flag = "1" if i == len(times) - 1 else "2"
            w = weight + r.uniform(-2.5, 2.5) * i
            self.add("ADT-00", None, NO_ORDER, "-", self.later(at), self.b.adt00(at, w, p.home_dept), flag)
        if p.allergies:
            at = self.later(t, 60, 900)
            if r.random() < 0.2:
                self.add("ADT-61", None, NO_ORDER, "-", self.later(at), self.b.adt61(at), "2")
                at = self.later(at, 86400, 86400 * 200)
                if at.date() > self.end:
                    at = self.later(t, 1000, 2000)
            self.add("ADT-61", None, NO_ORDER, "-", self.later(at), self.b.adt61(at))

    def problem_list(self) -> None:
        """PPR-01: one file holds every diagnosis; each change of the list writes a new version."""
        if not self.conditions:
            return
        changes = sorted({c.recorded for c in self.conditions} |
                         {c.end for c in self.conditions if c.end and c.end <= self.end})
        changes = changes[-40:] if not self.heavy else changes
        for i, day in enumerate(changes):
            at = self.at(day, 17, 19)
            listed = [c for c in self.conditions if c.recorded <= day]
            flag = "1" if i == len(changes) - 1 else "2"
            dept = listed[0].disease.dept if listed else "-"
            self.add("PPR-01", None, NO_ORDER, dept, self.later(at), self.b.ppr01(at, listed), flag)
