"""Synthetic patients: demographics, insurance, allergies and the diseases they live with.

Each patient is drawn from its own ``random.Random`` seeded by (run seed, patient index), so a
patient is the same whatever the number of workers or patients generated around it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from . import content as C


@dataclass(frozen=True)
class Doctor:
    id: str
    family: str
    given: str
    kana_family: str
    kana_given: str
    dept: str

    @property
    def xcn(self) -> str:
        """``id^family^given^^^^^^^L^^^^^I`` as in the guideline samples."""
        return f"{self.id}^{self.family}^{self.given}^^^^^^^L^^^^^I"

    @property
    def full_name(self) -> str:
        return f"{self.family}　{self.given}"


def doctors(dept: str) -> list[Doctor]:
    return [Doctor(*d, dept=dept) for d in C.DOCTORS[dept]]


def staff_xcn(person: tuple[str, str, str]) -> str:
    return f"{person[0]}^{person[1]}^{person[2]}^^^^^^^L^^^^^I"


@dataclass
class Condition:
    """One diagnosis on the patient's problem list (one PRB in PPR-01, one SY in a receipt)."""

    disease: C.Disease
    onset: date
    recorded: date
    instance: str  # PRB-4
    end: date | None = None
    outcome: str = ""  # "" active, F 治癒, P 軽快, D 死亡
    suspected: bool = False
    main: bool = False
    setting: str = "O"  # JHSD0004: O 外来時, H 入院時
    doctor: Doctor | None = None

    def active_on(self, day: date) -> bool:
        return self.recorded <= day and (self.end is None or day <= self.end)


@dataclass
class Patient:
    index: int
    pid: str
    sex: str  # M / F
    birth: date
    family: str
    given: str
    kana_family: str
    kana_given: str
    postal: str
    address: str
    phone: str
    work_phone: str
    employer: str
    insurance: C.Insurance
    ins_symbol: str
    ins_number: str
    relation: tuple[str, str]  # HL70063: SEL 本人 / ... for the insured person
    abo: str
    rh: str
    height: float
    weight: float
    kin: tuple[str, str, str, str, str, str]  # family, given, kana family, kana given, rel code, rel name
    allergies: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)
    chronic: list[str] = field(default_factory=list)  # disease keys
    registered: date = date(2000, 1, 1)
    home_dept: str = "01"

    @property
    def kanji(self) -> str:
        return f"{self.family}　{self.given}"

    @property
    def kana(self) -> str:
        return f"{self.kana_family}　{self.kana_given}"

    def age(self, on: date) -> int:
        return on.year - self.birth.year - ((on.month, on.day) < (self.birth.month, self.birth.day))

    def insurance_on(self, on: date) -> C.Insurance:
        """75 歳以上は後期高齢者医療 (the insurer changes, as it does in real receipts)."""
        return C.ELDERLY_INSURANCE if self.age(on) >= 75 else self.insurance


def patient_id(seed: int, index: int) -> str:
    """10-digit, zero-padded hospital ids (leading zeros are significant), deterministic."""
    base = random.Random(f"fhir-gateway-synth-ids:{seed}").randrange(10_000, 900_000)
    return f"{base + index * 7:010d}"


HEAVY_PATIENT_ID = "9000000001"


def _age_band(age: int) -> int:
    return 0 if age < 40 else 1 if age < 65 else 2


def make_patient(rng: random.Random, index: int, pid: str, start: date, end: date,
                 heavy: bool = False) -> Patient:
    """Draw one patient.  ``start``/``end`` bound the period the storage covers."""
    sex = rng.choice("MF")
    # Hospital populations are old: a mixture weighted towards 60-85.
    age = int(min(98, max(0, rng.choice((rng.gauss(72, 11), rng.gauss(45, 18), rng.uniform(0, 90))))))
    if heavy:
        age, sex = 71, "M"
    birth = end - timedelta(days=age * 365 + rng.randrange(365))
    fam, kfam = rng.choice(C.SURNAMES)
    given, kgiven = rng.choice(C.MALE_NAMES if sex == "M" else C.FEMALE_NAMES)
    postal, town, area = rng.choice(C.ADDRESSES)
    number = f"{rng.randint(1, 6)}-{rng.randint(1, 30)}-{rng.randint(1, 20)}"
    address = town + number.translate(C.FULLWIDTH_DIGITS)
    phone = f"{area}-{rng.randint(1000, 9999) if len(area) < 4 else rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    ins = rng.choice(C.INSURANCES)
    relation = ("SEL", "本人") if age >= 20 and rng.random() < 0.7 else ("EXF", "家族")
    kin_rel = rng.choice(C.RELATIONS)
    kin_given, kin_kgiven = rng.choice(C.MALE_NAMES + C.FEMALE_NAMES)
    height = rng.gauss(170 if sex == "M" else 157, 6) if age >= 16 else 60 + age * 6.5
    bmi = rng.gauss(23.5, 3.5)
    p = Patient(
        index=index, pid=pid, sex=sex, birth=birth, family=fam, given=given,
        kana_family=kfam, kana_given=kgiven, postal=postal, address=address, phone=phone,
        work_phone=f"03-{rng.randint(3000, 6999)}-{rng.randint(1000, 9999)}",
        employer=rng.choice(C.EMPLOYERS), insurance=ins, ins_symbol=str(rng.randint(100, 9999)),
        ins_number=str(rng.randint(1, 99999)), relation=relation,
        abo=rng.choices("AOBX", (38, 31, 22, 9))[0].replace("X", "AB"),
        rh="+" if rng.random() < 0.995 else "-",
        height=round(height, 1), weight=round(max(3.0, bmi * (height / 100) ** 2), 1),
        kin=(fam, kin_given, kfam, kin_kgiven, *kin_rel),
    )
    if rng.random() < 0.18:
        p.allergies = rng.sample(C.ALLERGENS, k=rng.choice((1, 1, 2)))
    band = _age_band(p.age(end))
    p.chronic = [key for key, prev in C.CHRONIC_PREVALENCE if rng.random() < prev[band]]
    if sex == "M" and p.age(end) >= 55 and rng.random() < 0.15:
        p.chronic.append("bph")
    if heavy:
        p.chronic = ["dm", "htn", "dl", "ckd", "chf", "af", "gerd", "knee"]
    # Registration: established patients predate the window, others arrive during it.
    span = (end - start).days
    if heavy or rng.random() < 0.35:
        p.registered = start
    else:
        p.registered = start + timedelta(days=rng.randrange(max(1, span - 14)))
    if p.registered < birth:
        p.registered = birth + timedelta(days=30)
    if p.chronic:
        p.home_dept = C.DISEASES[p.chronic[0]].dept
    elif p.age(end) < 15:
        p.home_dept = "09"
    return p
