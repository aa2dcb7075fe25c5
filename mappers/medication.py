"""Pieces shared by the medication mappers (OMP-01, OMP-02, OMP-11, OMP-12).

SS-MIX2 writes one drug line per ``ORC`` group (``ORC RXE TQ1* RXR* RXC*`` in RDE^O11,
``ORC [RXE TQ1 RXR RXC*] RXA* RXR*`` in RAS^O17).  These helpers turn the ORC numbering into
JP Core Rp identifiers, MERIT-9 units into Quantities, TQ1 into Dosage timing and RXR into
route/site/method, so each per-type module only says which resource it builds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from storage.hl7 import STANDARD_DELIMITERS, Field, Message, Segment
from storage.memo import memo
from storage.names import DATA_TYPES

from . import datatypes as dt
from . import terminology as term
from .context import MapContext
from .ids import resource_id
from .jsontypes import Json

EXT_PERIOD_OF_USE = term.JP_EXT + "JP_MedicationRequest_DosageInstruction_PeriodOfUse"
EXT_USAGE_DURATION = term.JP_EXT + "JP_MedicationRequest_DosageInstruction_UsageDuration"
EXT_REPEAT_COUNT = term.JP_EXT + "JP_MedicationRequest_DispenseRequest_ExpectedRepeatCount"
EXT_INGREDIENT_DRUG_NO = term.JP_EXT + "JP_Medication_Ingredient_DrugNo"
EXT_MA_DEPARTMENT = term.JP_EXT + "JP_MedicationAdministration_RequestDepartment"
EXT_MA_AUTHORED_ON = term.JP_EXT + "JP_MedicationAdministration_RequestAuthoredOn"
EXT_MA_REQUESTER = term.JP_EXT + "JP_MedicationAdministration_Requester"
# JP Core has no department element on MedicationRequest; ORC-17 goes where every order mapper
# puts it (terminology.REQUEST_DEPARTMENT_EXT, the JP-CLINS/eCS department extension).
EXT_ORDER_DEPARTMENT = term.REQUEST_DEPARTMENT_EXT

# 注射種別 (JHSI table 0002; guideline samples use the local name 99I02).  06 = 予防接種.
INJECTION_TYPE_SYSTEMS = ("JHSI0002", "99I02")
VACCINATION = "06"

_POS = re.compile(r"[^A-Za-z0-9\-]")


@dataclass
class OrderGroup:
    """One ORC and the segments that follow it up to the next ORC."""

    index: int  # 1-based position of the ORC in the message
    orc: Segment
    segments: list[Segment] = field(default_factory=list)

    def all(self, seg_id: str) -> list[Segment]:
        return [s for s in self.segments if s.id == seg_id]

    def first(self, seg_id: str) -> Segment | None:
        for s in self.segments:
            if s.id == seg_id:
                return s
        return None


def order_groups(msg: Message) -> list[OrderGroup]:
    return [OrderGroup(i, g[0], g[1:]) for i, g in enumerate(msg.groups("ORC"), 1)]


# --- Rp numbering and ids ---------------------------------------------------------------------

def zero_suppress(value: str) -> str:
    """JP Core writes Rp numbers without leading zeros ("1", not "01")."""
    return (value.lstrip("0") or "0") if value.isdigit() else value


def rp_parts(orc: Segment) -> tuple[str, str]:
    """(Rp number, sequence) from ORC-4.

    Seen in the wild: ``1`` (Rp only), ``12345678_01`` (order_Rp) and
    ``123456789012345_01_001`` (order_Rp_sequence).  A bare ORC-4 equal to the order number
    carries no Rp and yields ("", "").
    """
    value = orc.get(4).strip()
    if not value:
        return "", ""
    parts = value.split("_")
    if len(parts) == 1:
        if value == orc.get(2).strip() and len(value) > 4:
            return "", ""
        return zero_suppress(value), ""
    return zero_suppress(parts[1]), zero_suppress(parts[2]) if len(parts) > 2 else ""


def position(value: str, fallback: object) -> str:
    """A token usable inside a resource id (letters, digits, '-', ≤16 chars)."""
    token = _POS.sub("", value)[:16]
    return token or str(fallback)


def group_rp(group: OrderGroup) -> tuple[str, str]:
    """(Rp, sequence) of an order group as id positions: ORC-4's Rp, else the ORC's place in
    the message; the sequence as :func:`rp_parts` reads it ("" when ORC-4 has none)."""
    rp, seq = rp_parts(group.orc)
    return position(rp, group.index), seq


class Numbering:
    """Hands out stable, unique id positions inside one message."""

    def __init__(self) -> None:
        self._per_rp: dict[str, int] = {}
        self._used: set[tuple[str, ...]] = set()

    def next_in_rp(self, rp: str) -> int:
        n = self._per_rp.get(rp, 0) + 1
        self._per_rp[rp] = n
        return n

    def line(self, rp: str, seq: str) -> str:
        """The drug line's place in its Rp: ORC-4's sequence, else the next number in ``rp``."""
        return position(seq, 0) if seq else str(self.next_in_rp(rp))

    def unique(self, *pos: object) -> tuple[str, ...]:
        key = tuple(str(p) for p in pos)
        n = 1
        candidate = key
        while candidate in self._used:
            n += 1
            candidate = key[:-1] + (f"{key[-1]}-{n}",)
        self._used.add(candidate)
        return candidate


def rid(ctx: MapContext, *pos: str) -> str:
    return resource_id(ctx.name, *pos)


def rp_identifiers(rp: str, order_in_rp: str | None) -> list[Json]:
    ids = [{"system": term.RP_NUMBER, "value": rp}]
    if order_in_rp:
        ids.append({"system": term.ORDER_IN_RP, "value": order_in_rp})
    return ids


def order_identifier(ctx: MapContext, orc: Segment) -> Json | None:
    """ORC-2 placer order number as the JP Core requestIdentifier."""
    value = orc.get(2).strip()
    if not value:
        return None
    return {"system": term.RESOURCE_INSTANCE, "value": value}


def prescription_group(ctx: MapContext, orc: Segment) -> Json | None:
    """groupIdentifier: the prescription (order) number shared by every Rp of the order."""
    value = orc.get(2).strip()
    if not value:
        return None
    return {"system": term.PRESCRIPTION_ID_OID + ctx.facility, "value": value}


# --- quantities ---------------------------------------------------------------------------------

def med_quantity(value: str, code: str = "", text: str = "", system_name: str = "",
                 facility: str = "") -> Json | None:
    """An amount with a MERIT-9 (MR9P), UCUM (ISO+) or local unit; None when not numeric."""
    number = dt.decimal_value(value)
    if number is None:
        return None
    q: Json = {"value": number}
    label = text or code
    if label:
        q["unit"] = label
    if code:
        name = system_name.upper()
        if name == "MR9P":
            q["system"], q["code"] = term.MERIT9_UNIT, code
        elif name in ("ISO+", "UCUM", ""):
            u = dt.ucum(code) or dt.ucum(text)
            if u:
                q["system"], q["code"] = term.UCUM, u
        else:
            q["system"], q["code"] = term.system_for(system_name, facility), code
    return q


def field_quantity(value: str, unit: Field, facility: str = "") -> Json | None:
    """NM value + CWE unit field (RXE-3/RXE-5, RXE-10/RXE-11, RXC-3/RXC-4, RXA-6/RXA-7)."""
    return med_quantity(value, unit.component(1), unit.component(2), unit.component(3), facility)


def cq_quantity(f: Field, facility: str = "") -> Json | None:
    """CQ ``3^TAB&錠&MR9P``: quantity with the unit CWE in sub-components."""
    subs = f.subcomponents(2) + ["", "", ""]
    return med_quantity(f.component(1), subs[0], subs[1], subs[2], facility)


_DURATION_UNITS = {"d": "d", "day": "d", "日": "d", "wk": "wk", "w": "wk", "週": "wk",
                   "mo": "mo", "月": "mo", "h": "h", "hr": "h", "時間": "h", "min": "min",
                   "分": "min", "s": "s", "秒": "s", "a": "a", "年": "a"}
_DURATION_TEXT = {"d": "日", "wk": "週", "mo": "月", "h": "時間", "min": "分", "s": "秒", "a": "年"}


def duration(f: Field) -> Json | None:
    """TQ1-6 / TQ1-13 ``5^d`` or ``3^D&日&ISO+`` -> Duration (UCUM)."""
    if not f.standard_delimiters:
        return _duration(f)
    d = _duration_cached(f.raw)
    return None if d is None else d.copy()


@memo(4096)
def _duration_cached(raw: str) -> Json | None:
    """Never hand this dict out: :func:`duration` copies it (its values are immutable)."""
    return _duration(Field(raw, STANDARD_DELIMITERS))


def _duration(f: Field) -> Json | None:
    number = dt.decimal_value(f.component(1))
    if number is None:
        return None
    subs = f.subcomponents(2) + ["", ""]
    code = _DURATION_UNITS.get(subs[0].lower()) or _DURATION_UNITS.get(subs[1])
    d: Json = {"value": number}
    if code:
        d.update(unit=subs[1] or _DURATION_TEXT[code], system=term.UCUM, code=code)
    elif subs[0] or subs[1]:
        d["unit"] = subs[1] or subs[0]
    return d


_RATE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(.*)$")


def rate_ratio(amount: str, unit: str, unit_text: str = "") -> Json | None:
    """Injection rate ``102`` + ``ml/hr`` (RXE-23/24) or ``102ml/hr`` (RXA-12) -> Ratio."""
    if not unit:
        m = _RATE.match(amount or "")
        if not m:
            return None
        amount, unit = m.group(1), m.group(2)
    number = dt.decimal_value(amount)
    if number is None:
        return None
    num_unit, _, per = (unit or "").partition("/")
    numerator: Json = {"value": number}
    if num_unit:
        numerator["unit"] = num_unit
        u = dt.ucum(num_unit)
        if u:
            numerator.update(system=term.UCUM, code=u)
    ratio: Json = {"numerator": numerator}
    per_code = _DURATION_UNITS.get(per.strip().lower()) if per else None
    if per_code:
        ratio["denominator"] = {"value": 1, "unit": _DURATION_TEXT[per_code], "system": term.UCUM,
                                "code": per_code}
    elif per:
        ratio["denominator"] = {"value": 1, "unit": per}
    elif unit_text:
        numerator["unit"] = unit_text
    return ratio


def per_day(q: Json) -> Json:
    """1日量 RXE-19 as rateRatio (numerator / 1 日), as JP Core's notes require."""
    return {"numerator": q, "denominator": {"value": 1, "unit": "日", "system": term.UCUM,
                                            "code": "d"}}


# --- dosage --------------------------------------------------------------------------------------

def usage_code(tq1: Segment, facility: str) -> Json | None:
    """TQ1-3 repeat pattern: ``code&用法名&JAMISDP01`` (RPT with a CWE in sub-components)."""
    f3 = tq1[3]
    if not f3.standard_delimiters:
        return _usage_code(f3, facility)
    return dt.copy_concept(_usage_code_cached(f3.raw, facility))


@memo(4096)
def _usage_code_cached(raw: str, facility: str) -> Json | None:
    """Never hand this dict out: :func:`usage_code` copies it."""
    return _usage_code(Field(raw, STANDARD_DELIMITERS), facility)


def _usage_code(f3: Field, facility: str) -> Json | None:
    subs = f3.subcomponents(1) + ["", "", ""]
    code, text, system_name = subs[0], subs[1], subs[2]
    if not code and not text:
        return None
    c = dt.coding(code, text, system_name or "JAMISDP01", facility) if code else None
    cc: Json = {}
    if c:
        cc["coding"] = [c]
    if text or code:
        cc["text"] = text or code
    return cc


def route_parts(rxr: Segment | None, facility: str) -> Json:
    """RXR-1 route, RXR-2 site (+ RXR-6 site modifier), RXR-4 method, RXR-3 device;
    built once per RXR text, copied per caller."""
    if rxr is None:
        return {}
    if not rxr.standard_delimiters:
        return _route_parts(rxr, facility)
    return {k: (dt.copy_concept(v) if k != "extension" else [e.copy() for e in v])
            for k, v in _route_parts_cached(rxr.line, facility).items()}


@memo(4096)
def _route_parts_cached(line: str, facility: str) -> Json:
    """Never hand this dict out: :func:`route_parts` copies it."""
    return _route_parts(Segment(line, STANDARD_DELIMITERS, 0), facility)


EXT_DEVICE = term.LOCAL_EXT + "dosage-administration-device"
EXT_LINE = term.JP_EXT + "JP_MedicationDosage_Line"  # 主管/側管 (RXR-5 routing instruction)


def _route_parts(rxr: Segment, facility: str) -> Json:
    out: Json = {}
    for key, n in (("route", 1), ("site", 2), ("method", 4)):
        cc = dt.codeable(rxr[n], facility)
        if cc:
            out[key] = cc
    modifier = dt.codeable(rxr[6], facility)  # 部位修飾子 (左/右 ...): part of the site
    if modifier:
        site = out.setdefault("site", {})
        site.setdefault("coding", []).extend(modifier.get("coding", []))
        site["text"] = " ".join(x for x in (modifier.get("text"), site.get("text")) if x)
    device = dt.codeable(rxr[3], facility)  # 投薬装置 (点滴ポンプ): R4 Dosage has no device
    if device:
        out["extension"] = [{"url": EXT_DEVICE, "valueCodeableConcept": device}]
    line = dt.codeable(rxr[5], facility)  # 投与経路指示 主管/側管
    if line:
        out.setdefault("extension", []).append({"url": EXT_LINE, "valueCodeableConcept": line})
    return out


# JAMI 標準用法 補足用法コード after the base usage in TQ1-3 (JAMISDP01): W + 7 flags Sunday
# first (W0100100 = 月曜日、木曜日); I + days on + days off (I1100000 = 隔日).
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WEEKLY = re.compile(r"^W([01]{7})$")
_INTERVAL = re.compile(r"^I([1-9])([1-9])0*$")


def usage_repetitions(tq1: Segment, facility: str) -> list[Json]:
    """TQ1-3 repetitions after the first (補足用法): one CodeableConcept each."""
    f3 = tq1[3]
    if f3.delimiters.repetition not in f3.raw:
        return []
    out = []
    for rep in f3.repetitions[1:]:
        cc = _usage_code(rep, facility)
        if cc:
            out.append(cc)
    return out


def schedule(code: str) -> Json:
    """timing.repeat of a weekday or interval 補足用法コード ({} when it is neither)."""
    m = _WEEKLY.match(code)
    if m:
        days = [d for d, flag in zip(_WEEKDAYS, m.group(1)) if flag == "1"]
        return {"dayOfWeek": days} if days else {}
    m = _INTERVAL.match(code)
    if m:
        on, off = int(m.group(1)), int(m.group(2))
        return {"frequency": on, "period": on + off, "periodUnit": "d"}
    return {}


def _time_of_day(value: str) -> str | None:
    """TQ1-4 TM ``0800`` / ``080000`` -> ``08:00:00``."""
    digits = value.strip()
    if not digits.isdigit() or len(digits) not in (2, 4, 6):
        return None
    digits = digits.ljust(6, "0")
    hh, mm, ss = digits[:2], digits[2:4], digits[4:6]
    if int(hh) > 23 or int(mm) > 59 or int(ss) > 59:
        return None
    return f"{hh}:{mm}:{ss}"


def dosage(tq1: Segment | None, rxr: Segment | None, facility: str, *, sequence: int = 1,
           dose: Json | None = None, rate: Json | None = None, rate_ratio_: Json | None = None,
           as_needed: bool = False, injection: bool = False,
           instruction: Json | list[Json] | None = None) -> Json:
    """One JP_MedicationDosage from TQ1 + RXR + the doses the caller computed."""
    d: Json = {"sequence": sequence}
    ext: list[Json] = []
    timing: Json = {}
    condition = ""
    if tq1 is not None:
        _usage(d, timing, tq1, facility)
        _use_period(ext, timing, tq1, injection)
        _repeat(timing, tq1, injection)
        note = tq1[11].text
        if note:
            d.setdefault("additionalInstruction", []).append({"text": note})
            d.setdefault("text", note)
        condition = tq1[10].text
    if instruction:
        d.setdefault("additionalInstruction", []).extend(
            instruction if isinstance(instruction, list) else [instruction])
    if ext:
        d["extension"] = ext
    if timing:
        d["timing"] = timing
    if condition:  # 条件 (疼痛時 ...): the as-needed condition
        d["asNeededCodeableConcept"] = {"text": condition}
    elif as_needed:
        d["asNeededBoolean"] = True
    parts = route_parts(rxr, facility)
    device = parts.pop("extension", None)
    if device:
        d.setdefault("extension", []).extend(device)
    d.update(parts)
    dr: Json = {}
    if dose:
        dr["doseQuantity"] = dose
    if rate_ratio_:
        dr["rateRatio"] = rate_ratio_
    elif rate:
        dr["rateQuantity"] = rate
    if dr:
        d["doseAndRate"] = [dr]
    return d


def _usage(d: Json, timing: Json, tq1: Segment, facility: str) -> None:
    """TQ1-3 用法: the first repetition is timing.code and the text; the others are
    additional instructions whose schedule (JAMI 用法) adds to timing.repeat."""
    usage = usage_code(tq1, facility)
    if usage:
        timing["code"] = usage
        d["text"] = usage["text"]
    for extra in usage_repetitions(tq1, facility):
        codes = extra.get("coding") or [{}]
        rep = schedule(codes[0].get("code", ""))
        if rep:
            timing.setdefault("repeat", {}).update(rep)
        d.setdefault("additionalInstruction", []).append(extra)
        d["text"] = " ".join(x for x in (d.get("text"), extra.get("text")) if x)


def _use_period(ext: list[Json], timing: Json, tq1: Segment, injection: bool) -> None:
    """TQ1-7..8: an injection's boundsPeriod, else the period-of-use extension; TQ1-6 days
    (not for injections) the usage-duration extension."""
    start, end = dt.datetime_(tq1[7]), dt.datetime_(tq1[8])
    if start or end:
        period = {k: v for k, v in (("start", start), ("end", end)) if v}
        if injection:
            timing.setdefault("repeat", {})["boundsPeriod"] = period
        else:
            ext.append({"url": EXT_PERIOD_OF_USE, "valuePeriod": period})
    days = duration(tq1[6])
    if days and not injection:
        ext.append({"url": EXT_USAGE_DURATION, "valueDuration": days})


def _repeat(timing: Json, tq1: Segment, injection: bool) -> None:
    """timing.repeat: TQ1-4 timeOfDay, TQ1-13 duration, TQ1-14 count (injections)."""
    if tq1.get(4):
        times = [t for t in (_time_of_day(r.component(1)) for r in tq1[4].repetitions) if t]
        if times:
            timing.setdefault("repeat", {})["timeOfDay"] = times
    occ = duration(tq1[13])
    if occ and occ.get("code"):
        rep = timing.setdefault("repeat", {})
        rep["duration"], rep["durationUnit"] = occ["value"], occ["code"]
    total = dt.decimal_value(tq1.get(14))
    if total is not None and injection and total == int(total) and total > 0:
        timing.setdefault("repeat", {})["count"] = int(total)


def administration_dosage(rxr: Segment | None, facility: str) -> tuple[Json, list[Json]]:
    """MedicationAdministration.dosage from RXR, and .device (RXR-3 投薬装置 as display)."""
    parts = route_parts(rxr, facility)
    devices = []
    for e in parts.pop("extension", []):
        if e["url"] != EXT_DEVICE:
            parts.setdefault("extension", []).append(e)
            continue
        cc = e["valueCodeableConcept"]
        text = cc.get("text") or cc.get("coding", [{}])[0].get("code")
        if text:
            devices.append({"display": text})
    return parts, devices


def instructions(f: Field, facility: str) -> list[Json]:
    """RXE-7 投薬指示: every repetition (不均等投与 4錠~2錠~1錠, 緩徐に静注 ...)."""
    if not f:
        return []
    return [cc for cc in (dt.codeable(rep, facility) for rep in f.repetitions) if cc]


# --- order-level fields ----------------------------------------------------------------------------

_ORDER_STATUS = {"NW": "active", "XO": "active", "SC": "active", "OK": "active", "RE": "active",
                 "CA": "cancelled", "OC": "cancelled", "CR": "cancelled", "DC": "stopped",
                 "OD": "stopped", "HD": "on-hold", "OH": "on-hold"}


def request_status(orc: Segment) -> str:
    """ORC-1 order control (ORC-5 CM = completed wins): new/changed orders stay active."""
    if orc.get(5) == "CM":
        return "completed"
    return _ORDER_STATUS.get(orc.get(1), "active")


def encounter_class(msg: Message, orc: Segment) -> str:
    """I / O from ORC-29 (オーダタイプ, HL70482) or PV1-2."""
    return orc.get(29) or msg["PV1"].get(2)


def data_type_category(msg: Message | None, data_type: str) -> Json:
    """The SS-MIX2 data type as a category, as every order/report mapper adds it."""
    return dt.concept(data_type, DATA_TYPES[data_type].name_ja, term.SSMIX2_DATA_TYPE)


def categories(msg: Message, orc: Segment, rxe: Segment | None, facility: str,
               data_type: str = "") -> list[Json]:
    """In/out-patient (ORC-29 / PV1-2) and MERIT-9 / JHSI 処方区分 (RXE-21 repetitions).

    Every order of a kind repeats these: built once per field texts, copied per caller.
    """
    orc29 = orc[29]
    rxe21 = rxe[21] if rxe is not None else None
    if not orc29.standard_delimiters:
        return _categories(encounter_class(msg, orc), orc29, rxe21, facility, data_type)
    cats = _categories_cached(encounter_class(msg, orc), orc29.raw,
                              rxe21.raw if rxe21 is not None else None, facility, data_type)
    return [dt.copy_concept(c) for c in cats]


@memo(4096)
def _categories_cached(klass: str, orc29: str, rxe21: str | None, facility: str,
                       data_type: str) -> tuple[Json, ...]:
    """Never hand these dicts out: :func:`categories` copies them."""
    return tuple(_categories(klass, Field(orc29, STANDARD_DELIMITERS),
                             Field(rxe21, STANDARD_DELIMITERS) if rxe21 is not None else None,
                             facility, data_type))


def _categories(klass: str, orc29: Field, rxe21: Field | None, facility: str,
                data_type: str) -> list[Json]:
    cats: list[Json] = [data_type_category(None, data_type)] if data_type else []
    if klass in ("I", "O"):
        cats.append({"coding": [{"system": term.MEDICATION_REQUEST_CATEGORY,
                                 "code": "inpatient" if klass == "I" else "outpatient",
                                 "display": "Inpatient" if klass == "I" else "Outpatient"}]})
    if orc29:
        cc = dt.codeable(orc29, facility)
        if cc:
            cats.append(cc)
    if rxe21 is not None:
        for rep in rxe21.repetitions:
            code, text, system_name = rep.component(1), rep.component(2), rep.component(3)
            if not code and not text:
                continue
            if system_name.upper() == "MR9P" and code:
                c = {"system": term.MERIT9_CATEGORY, "code": code}
                if text:
                    c["display"] = text
                cats.append({"coding": [c], **({"text": text} if text else {})})
            else:
                cc = dt.codeable(rep, facility)
                if cc:
                    cats.append(cc)
    return cats


def department_extension(orc: Segment, facility: str, url: str = EXT_ORDER_DEPARTMENT) -> Json | None:
    cc = dt.codeable(orc[17], facility)
    return {"url": url, "valueCodeableConcept": cc} if cc else None


def authored_on(msg: Message, orc: Segment, rxe: Segment | None) -> str | None:
    """ORC-9 (transaction time of the order), else RXE-32, else MSH-7."""
    return (dt.datetime_(orc[9]) or (dt.datetime_(rxe[32]) if rxe is not None else None)
            or dt.datetime_(msg["MSH"][7]))


def request_parts(r: Json, msg: Message, ctx: MapContext, orc: Segment, rxe: Segment | None,
                  segments: list[Segment]) -> None:
    """The ORC-level elements every MedicationRequest (OMP-01, OMP-02) carries, added to ``r``
    in this order: authoredOn, requester (ORC-12, else RXE-13), recorder (ORC-10),
    groupIdentifier, the ORC-17 department extension and the NTE notes of ``segments``."""
    fac = ctx.facility
    authored = authored_on(msg, orc, rxe)
    if authored:
        r["authoredOn"] = authored
    requester = dt.practitioner(orc[12], fac) or (dt.practitioner(rxe[13], fac) if rxe is not None else None)
    if requester:
        r["requester"] = requester
    recorder = dt.practitioner(orc[10], fac)
    if recorder:
        r["recorder"] = recorder
    group_id = prescription_group(ctx, orc)
    if group_id:
        r["groupIdentifier"] = group_id
    dept = department_extension(orc, fac)
    if dept:
        r["extension"] = [dept]
    found = notes(segments)
    if found:
        r["note"] = found


def first_rxr_after(segments: list[Segment], start: int) -> Segment | None:
    for s in segments[start:]:
        if s.id == "RXR":
            return s
        if s.id == "ORC":
            break
    return None


def injection_type(rxe: Segment | None) -> tuple[str, str]:
    """(code, system name) of RXE-2 when it is a 注射種別 rather than a drug."""
    if rxe is None:
        return "", ""
    code, system_name = rxe[2].component(1), rxe[2].component(3)
    if system_name.upper() in INJECTION_TYPE_SYSTEMS:
        return code, system_name
    return "", ""


def medication_concept(f: Field, supplementary: Field | None, facility: str) -> Json | None:
    """Drug code (RXE-2/RXC-2/RXA-5) plus RXE-31 補足コード (YJ) codings, every triplet kept.

    Built once per (field texts, facility) and copied per caller.
    """
    if not f.standard_delimiters:
        return _medication_concept(f, supplementary, facility)
    return dt.copy_concept(_medication_concept_cached(
        f.raw, supplementary.raw if supplementary is not None else None, facility))


@memo(8192)
def _medication_concept_cached(raw: str, supplementary: str | None, facility: str) -> Json | None:
    """Never hand this dict out: :func:`medication_concept` copies it."""
    return _medication_concept(
        Field(raw, STANDARD_DELIMITERS),
        Field(supplementary, STANDARD_DELIMITERS) if supplementary is not None else None, facility)


def _medication_concept(f: Field, supplementary: Field | None, facility: str) -> Json | None:
    cc = dt.codeable(f, facility)
    if supplementary is not None and supplementary:
        for rep in supplementary.repetitions:
            extra = dt.codeable(rep, facility)
            if extra and extra.get("coding"):
                if cc is None:
                    cc = extra
                else:
                    have = {(c.get("system"), c.get("code")) for c in cc.get("coding", [])}
                    cc.setdefault("coding", []).extend(
                        c for c in extra["coding"] if (c.get("system"), c.get("code")) not in have)
    return cc


# Coding systems that name the drug itself: an RXC-7 repetition in one of these is the same
# concept (another coding of the drug); anything else (麻薬, 劇薬, text only) is a property.
DRUG_CODE_SYSTEMS = {"HOT", "HOT9", "HOT09", "HOT7", "HOT07", "HOT11", "HOT13", "YJ", "MYAK",
                     "GS1", "JAN"}
EXT_SUPPLEMENTARY = term.LOCAL_EXT + "ingredient-supplementary-code"


def component_item(rxc: Segment, facility: str) -> tuple[Json | None, list[Json]]:
    """RXC-2 drug (+ RXC-7 repetitions that are drug codes) and the RXC-7 properties.

    RXC-7 補足コード holds either more codes of the same drug (YJ) or a property of the
    component (麻薬, 劇薬, a text-only note): only the former are codings of the drug.
    """
    item = dt.codeable(rxc[2], facility)
    props: list[Json] = []
    for rep in rxc[7].repetitions:
        cc = dt.codeable(rep, facility)
        if not cc:
            continue
        if rep.component(1) and rep.component(3).upper() in DRUG_CODE_SYSTEMS:
            if item is None:
                item = cc
            else:
                have = {(c.get("system"), c.get("code")) for c in item.get("coding", [])}
                item.setdefault("coding", []).extend(
                    c for c in cc.get("coding", []) if (c.get("system"), c.get("code")) not in have)
        else:
            props.append({"url": EXT_SUPPLEMENTARY, "valueCodeableConcept": cc})
    return item, props


def per_time() -> Json:
    """Denominator ``1 回`` (MERIT-9 TIME) of an injection ingredient strength."""
    return {"value": 1, "unit": "回", "system": term.MERIT9_UNIT, "code": "TIME"}


def ingredient(item: Json, amount: Json | None, drug_no: int) -> Json:
    ing: Json = {"itemCodeableConcept": item,
                 "extension": [{"url": EXT_INGREDIENT_DRUG_NO, "valueInteger": drug_no}]}
    if amount:
        ing["strength"] = {"numerator": amount, "denominator": per_time()}
    return ing


def dosage_form(f: Field, facility: str) -> Json | None:
    """RXE-6 剤形 -> Medication.form: MR9P means the MERIT-9 *form* table here, not units."""
    cc = dt.codeable(f, facility)
    if cc and f.component(3).upper() == "MR9P":
        for c in cc["coding"]:
            if c.get("system") == term.MERIT9_UNIT:
                c["system"] = term.MERIT9_FORM
    return cc


def contained_medication(ctx: MapContext, ingredients: list[Json], form: Json | None = None,
                         code: Json | None = None) -> Json:
    med: Json = {"resourceType": "Medication", "id": "med",
                 "meta": {"profile": [term.PROFILE["Medication"]]}}
    if code:
        med["code"] = code
    if form:
        med["form"] = form
    if ingredients:
        med["ingredient"] = ingredients
    return med


def notes(segments: list[Segment]) -> list[Json]:
    """NTE-3 comments -> Annotation list."""
    out = []
    for s in segments:
        if s.id == "NTE":
            text = "\n".join(r.text for r in s[3].repetitions if r.text)
            if text:
                out.append({"text": text})
    return out


# --- administrations (RAS^O17: OMP-11, OMP-12) ------------------------------------------------------

def administration_status(rxas: list[Segment]) -> str:
    """RXA-21 D -> entered-in-error; RXA-20 CP completed, PA stopped, NA/RE not-done."""
    if any(r.get(21) == "D" for r in rxas):
        return "entered-in-error"
    codes = {r.get(20) for r in rxas}
    if codes & {"NA", "RE"} and not codes & {"CP", "PA"}:
        return "not-done"
    if "PA" in codes:
        return "stopped"
    return "completed"


def effective(rxa: Segment) -> Json:
    """RXA-3 / RXA-4: a dateTime, or a Period when the end differs from the start."""
    start, end = dt.datetime_(rxa[3]), dt.datetime_(rxa[4])
    if start and end and end != start:
        return {"effectivePeriod": {"start": start, "end": end}}
    if start or end:
        return {"effectiveDateTime": start or end}
    return {}


def rxa_note(rxa: Segment) -> list[Json]:
    text = rxa[9].component(2) or rxa[9].component(1)
    return [{"text": text}] if text else []


def administration_base(msg: Message, ctx: MapContext, orc: Segment, rxas: list[Segment],
                        resource_type: str, profile_key: str, pos: tuple[str, ...]) -> Json:
    """Fields every MedicationAdministration from RAS^O17 shares (status, subject, time ...)."""
    fac = ctx.facility
    first = rxas[0]
    r: Json = {
        "resourceType": resource_type,
        "id": rid(ctx, *pos),
        "meta": ctx.meta(term.PROFILE[profile_key]),
    }
    ext = []
    dept = department_extension(orc, fac, EXT_MA_DEPARTMENT)
    if dept:
        ext.append(dept)
    authored = dt.datetime_(orc[9])
    if authored:
        ext.append({"url": EXT_MA_AUTHORED_ON, "valueDateTime": authored})
    requester = dt.practitioner(orc[12], fac)
    if requester:
        ext.append({"url": EXT_MA_REQUESTER, "valueReference": requester})
    if ext:
        r["extension"] = ext
    r["status"] = administration_status(rxas)
    if r["status"] == "not-done":
        reason = dt.codeable(first[18], fac)
        if reason:
            r["statusReason"] = [reason]
    klass = encounter_class(msg, orc)
    if klass in ("I", "O"):
        code = "inpatient" if klass == "I" else "outpatient"
        r["category"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/medication-admin-category",
            "code": code, "display": code.capitalize()}]}
    r["subject"] = dt.patient_ref(ctx.patient_id)
    eff = effective(first)
    if len(rxas) > 1:  # one event over several RXA lines (a mix): it ends with the last end
        ends = [e for e in (dt.datetime_(x[4]) for x in rxas[1:]) if e]
        if ends and "effectivePeriod" in eff and max(ends) > eff["effectivePeriod"]["end"]:
            eff["effectivePeriod"]["end"] = max(ends)
        elif ends and "effectiveDateTime" in eff and max(ends) != eff["effectiveDateTime"]:
            eff = {"effectivePeriod": {"start": eff["effectiveDateTime"], "end": max(ends)}}
    r.update(eff or {"effectiveDateTime": dt.datetime_(msg["MSH"][7]) or ctx.last_updated})
    performers: list[Json] = []
    for x in rxas:  # every RXA line of the event may name who gave it
        actor = dt.practitioner(x[10], fac)
        if actor and all(p["actor"] != actor for p in performers):
            performers.append({"actor": actor})
    if performers:
        r["performer"] = performers
    order = orc.get(2).strip()
    if order:
        r["request"] = {"type": "MedicationRequest",
                        "identifier": {"system": term.RESOURCE_INSTANCE, "value": order}}
    notes_ = [n for rxa in rxas for n in rxa_note(rxa)]
    if notes_:
        r["note"] = notes_
    return r


def effective_start(r: Json) -> str | None:
    """When an administration happened: effectiveDateTime, else effectivePeriod.start (the
    fallback time of the Observations attached to it)."""
    when: str | None = r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start")
    return when


def obx_after(segments: list[Segment], last: Segment) -> list[Segment]:
    """The OBX segments that follow ``last`` (an RXA) up to the next RXA: the observations of
    that administration (RAS^O17 ``RXA+ RXR (OBX NTE*)*``)."""
    out: list[Segment] = []
    seen = False
    for s in segments:
        if s is last:
            seen = True
        elif seen and s.id == "RXA":
            break
        elif seen and s.id == "OBX":
            out.append(s)
    return out


def administration_groups(group: OrderGroup) -> list[tuple[list[Segment], Segment | None]]:
    """RXA lines of one ORC grouped into administration events (same RXA-2 counter and start),
    each with the RXR that follows its RXA lines."""
    events: list[tuple[list[Segment], Segment | None]] = []
    keys: list[tuple[str, str]] = []
    segs = group.segments
    for i, s in enumerate(segs):
        if s.id != "RXA":
            continue
        key = (s.get(2), s.get(3))
        rxr = None
        for t in segs[i + 1:]:
            if t.id == "RXR":
                rxr = t
                break
            if t.id not in ("RXA", "NTE", "OBX"):
                break
        if keys and keys[-1] == key:
            events[-1][0].append(s)
            if events[-1][1] is None:
                events[-1] = (events[-1][0], rxr)
        else:
            keys.append(key)
            events.append(([s], rxr))
    return events
