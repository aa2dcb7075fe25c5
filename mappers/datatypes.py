"""HL7 v2 data types -> FHIR data types, written once for every mapper.

CWE -> CodeableConcept, XPN -> HumanName, XAD -> Address, XTN -> ContactPoint, CQ/NM+unit ->
Quantity, TS -> dateTime, XCN -> Reference display + identifier.  Mappers call these with fields
from the tokenizer (``storage.hl7.Field``) so a mapper reads like the field table.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Callable, Mapping, overload

from storage.hl7 import STANDARD_DELIMITERS, Field, Segment
from storage.memo import invalidate, memo
from storage.structure import rejoin_units
from .fhirtime import fhir_date, fhir_datetime

from . import terminology as term
from .context import ResourceContext
from .jsontypes import Json


def coding(code: str, display: str = "", system_name: str = "", facility: str = "") -> Json | None:
    """One Coding; None when there is neither code nor display."""
    if not code and not display:
        return None
    c: Json = {}
    system = term.system_for(system_name, facility) if system_name else None
    if system:
        c["system"] = system
    if code:
        c["code"] = code
    if display:
        c["display"] = display
    return c


def codeable(field: Field, facility: str = "", text: str | None = None) -> Json | None:
    """CWE/CE/CNE -> CodeableConcept with a Coding per triplet (1-3 and 4-6), text = first name.

    The same codes recur in every message (units, JLAC10 items, department codes), so the
    result is built once per (field text, facility, text) and every caller gets its own copy:
    mappers add to these dicts, and a shared one would leak between resources.
    """
    if not field:
        return None
    if not field.standard_delimiters:
        return _codeable(field.components(), facility, text)
    return copy_concept(_codeable_cached(field.raw, facility, text))


@memo(16384)
def _codeable_cached(raw: str, facility: str, text: str | None) -> Json | None:
    """Never hand this dict out: callers get :func:`copy_concept` of it."""
    return _codeable(Field(raw, STANDARD_DELIMITERS).components(), facility, text)


@overload
def copy_concept(cc: Json) -> Json: ...
@overload
def copy_concept(cc: None) -> None: ...
@overload
def copy_concept(cc: Json | None) -> Json | None: ...
def copy_concept(cc: Json | None) -> Json | None:
    """A fresh CodeableConcept (its codings too); the leaf values are immutable strings."""
    if cc is None:
        return None
    out = cc.copy()
    codings = out.get("coding")
    if codings is not None:
        out["coding"] = [c.copy() for c in codings]
    return out


def _codeable(comps: list[str], facility: str, text: str | None) -> Json | None:
    comps = comps + [""] * 9
    codings = []
    for i in (0, 3):
        c = coding(comps[i], comps[i + 1], comps[i + 2], facility)
        if c and c.get("code"):
            codings.append(c)
    cc: Json = {}
    if codings:
        cc["coding"] = codings
    label = text if text is not None else (comps[8] or comps[1] or comps[4])
    if not label and not codings:
        label = comps[0]
    if label:
        cc["text"] = label
    return cc or None


def concept(code: str, display: str, system: str) -> Json:
    """A CodeableConcept from a known system URI (not a v2 coding-system name)."""
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return {"coding": [c], **({"text": display} if display else {})}


_ONE_SPACE = re.compile(r"([^ \u3000]+)[ \u3000]+([^ \u3000]+)")


def human_names(field: Field) -> list[Json]:
    """XPN (repeating) -> HumanName list; XPN.8 I/P -> iso21090 IDE (kanji) / SYL (kana)."""
    names = []
    for rep in field.repetitions:
        family, given, middle = rep.component(1), rep.component(2), rep.component(3)
        if not (family or given):
            continue
        if not (given or middle):  # 姓　名 in XPN.1 alone (a vendor variation): split once
            both = _ONE_SPACE.fullmatch(family.strip())
            if both:
                family, given = both.group(1), both.group(2)
        n: Json = {"use": "usual" if rep.component(7) in ("L", "") else "official"}
        if family:
            n["family"] = family
        givens = [g for g in (given, middle) if g]
        if givens:
            n["given"] = givens
        n["text"] = " ".join(x for x in (family, " ".join(givens)) if x)
        rep_code = {"I": "IDE", "P": "SYL", "A": "ABC"}.get(rep.component(8))
        if rep_code:
            n["extension"] = [{"url": term.NAME_REPRESENTATION, "valueCode": rep_code}]
        names.append(n)
    return names


def address(field: Field) -> list[Json]:
    """XAD -> Address.  XAD.8 is the free-text address SS-MIX2 writers fill."""
    out = []
    for rep in field.repetitions:
        street, other, city, state, postal, country, atype, full = (
            rep.component(i) for i in range(1, 9)
        )
        a: Json = {}
        text = full or "".join(x for x in (state, city, street, other) if x)
        if text:
            a["text"] = text
        lines = [x for x in (street, other) if x]
        if lines:
            a["line"] = lines
        if city:
            a["city"] = city
        if state:
            a["state"] = state
        if postal:
            a["postalCode"] = postal
        if country:
            a["country"] = country
        use = {"H": "home", "B": "work", "O": "work", "C": "temp"}.get(atype)
        if use:
            a["use"] = use
        if a:
            out.append(a)
    return out


def contact_points(field: Field, default_use: str | None = None) -> list[Json]:
    """XTN -> ContactPoint.  XTN.2 PRN/WPN/ORN/EMR; XTN.3 PH/FX/CP/Internet; number in XTN.12 or 1."""
    out = []
    for rep in field.repetitions:
        value = rep.component(12) or rep.component(1) or rep.component(4)
        if not value:
            continue
        equip = rep.component(3)
        system = {"PH": "phone", "FX": "fax", "CP": "phone", "Internet": "email", "X.400": "email",
                  "BP": "pager"}.get(equip, "phone" if not rep.component(4) else "email")
        use = {"PRN": "home", "WPN": "work", "ORN": "home", "EMR": None, "PRS": "mobile"}.get(
            rep.component(2), default_use)
        if equip == "CP":
            use = "mobile"
        cp: Json = {"system": system, "value": value}
        if use:
            cp["use"] = use
        out.append(cp)
    return out


# --- quantities ------------------------------------------------------------------------------

# Common SS-MIX2 / ISO+ unit spellings -> UCUM.  Anything else keeps its text only.  Read-only
# (UCUM_UNITS); add spellings with add_ucum_units(), which empties the caches that read it.
_UCUM: dict[str, str] = {
    "cm": "cm", "mm": "mm", "m": "m", "kg": "kg", "g": "g", "mg": "mg", "ug": "ug", "μg": "ug",
    "ng": "ng", "pg": "pg", "l": "L", "L": "L", "ml": "mL", "mL": "mL", "dl": "dL", "dL": "dL",
    "%": "%", "mg/dl": "mg/dL", "mg/dL": "mg/dL", "g/dl": "g/dL", "g/dL": "g/dL", "u/l": "U/L",
    "U/L": "U/L", "iu/l": "[IU]/L", "IU/L": "[IU]/L", "mmol/l": "mmol/L", "mmol/L": "mmol/L",
    "meq/l": "meq/L", "mEq/L": "meq/L", "ng/ml": "ng/mL", "ng/mL": "ng/mL", "pg/ml": "pg/mL",
    "pg/mL": "pg/mL", "ug/dl": "ug/dL", "μg/dL": "ug/dL", "mmhg": "mm[Hg]", "mm(hg)": "mm[Hg]",
    "mmHg": "mm[Hg]", "cel": "Cel", "℃": "Cel", "/min": "/min", "回/分": "/min", "bpm": "/min",
    "fl": "fL", "fL": "fL", "10^4/ul": "10*4/uL", "10^4/μL": "10*4/uL", "10^3/ul": "10*3/uL",
    "10^3/μL": "10*3/uL", "/ul": "/uL", "/μL": "/uL", "10^6/ul": "10*6/uL", "10^6/μL": "10*6/uL",
    "ml/min/1.73m2": "mL/min/{1.73_m2}", "mL/min/1.73m2": "mL/min/{1.73_m2}",
    "錠": "{tbl}", "tab": "{tbl}", "cap": "{cap}", "カプセル": "{cap}", "包": "{pack}",
    "本": "{bottle}", "v": "{vial}", "a": "{amp}", "s": "s", "秒": "s", "min": "min", "分": "min",
    "h": "h", "時間": "h", "d": "d", "日": "d", "ml/h": "mL/h", "mL/h": "mL/h",
    # lab spellings seen in SS-MIX2 OBX-6 (compared after NFKC + lower-casing, see ucum())
    "*10^4/ul": "10*4/uL", "x10^4/ul": "10*4/uL", "10*4/ul": "10*4/uL", "*10^3/ul": "10*3/uL",
    "x10^3/ul": "10*3/uL", "10*3/ul": "10*3/uL", "*10^6/ul": "10*6/uL", "x10^6/ul": "10*6/uL",
    "10^2/ul": "10*2/uL", "*10^2/ul": "10*2/uL", "μl": "uL", "ul": "uL",
    "mg/l": "mg/L", "g/l": "g/L", "umol/l": "umol/L", "μmol/l": "umol/L", "nmol/l": "nmol/L",
    "pmol/l": "pmol/L", "mu/l": "m[IU]/L", "miu/l": "m[IU]/L", "uu/ml": "u[IU]/mL",
    "μu/ml": "u[IU]/mL", "μiu/ml": "u[IU]/mL", "uiu/ml": "u[IU]/mL", "iu/ml": "[IU]/mL",
    "u/ml": "U/mL", "mosm/kg": "mosm/kg", "mg/g": "mg/g", "g/day": "g/d", "mg/day": "mg/d",
    "sec": "s", "mm/h": "mm/h", "mm/hr": "mm/h", "ml/hr": "mL/h", "%hb": "%", "ratio": "{ratio}",
    "titer": "{titer}", "倍": "{titer}", "index": "{index}", "coi": "{COI}", "s/co": "{s_co_ratio}",
}
_UCUM.update({f"{x}10^{n}/{u}": f"10*{n}/uL" for x in ("×", "x", "*", "")
              for n in (2, 3, 4, 6) for u in ("μL", "μl", "uL", "ul")})
UCUM_UNITS: Mapping[str, str] = MappingProxyType(_UCUM)


def add_ucum_units(units: Mapping[str, str]) -> None:
    """Add (or change) written unit spellings -> UCUM; every cache that read the table is
    emptied (storage.memo ``reads="ucum"``), so the next mapping uses the new table."""
    _UCUM.update(units)
    invalidate("ucum")


_COMPARATOR = re.compile(r"^\s*(<=|>=|<|>|≦|≧|＜|＞|≤|≥)\s*([-+]?\d+(?:\.\d+)?)\s*$")
_NUMBER = re.compile(r"^\s*[-+]?\d+(?:\.\d+)?\s*$")


def decimal_value(text: str | None) -> Decimal | None:
    """A decimal from HL7 NM text, keeping written precision (72.50 stays 72.50)."""
    text = (text or "").strip().replace(",", "")
    if not text or not _NUMBER.match(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def ucum(unit: str) -> str | None:
    """UCUM code for a written unit; full-width and case variants (ｍｇ／ｄＬ, ＊10＾4/μL) match too."""
    if not unit:
        return None
    found = _UCUM.get(unit)
    if found:
        return found
    return _folded_units().get(unicodedata.normalize("NFKC", unit).strip().lower())


@memo(1, reads="ucum")
def _folded_units() -> dict[str, str]:
    """NFKC + lower-case spelling -> UCUM (the first spelling of a fold wins)."""
    folded: dict[str, str] = {}
    for k, v in _UCUM.items():
        folded.setdefault(unicodedata.normalize("NFKC", k).lower(), v)
    return folded


def quantity(value: str, unit_field: Field | None = None, unit_text: str = "") -> Json | None:
    """NM (or an ST like '> 100') + unit -> Quantity; None when the value is not numeric.

    The written unit is kept in ``unit``; ``system``/``code`` are UCUM only when we know the
    conversion, so no unit is ever guessed.
    """
    parsed = _number(value) if type(value) is str else _parse_number(value)
    if parsed is None:
        return None
    code = ""
    if unit_field is not None and unit_field:
        code, unit_text = unit_parts(unit_field)
    return _with_unit(parsed, unit_items(code, unit_text))


def unit_parts(f: Field) -> tuple[str, str]:
    """(code, text) of a unit CWE (OBX-6 ...), an unescaped ``^`` inside the unit repaired."""
    comps = f.components()
    if len(comps) > 1 and "10" in comps[0]:
        comps = rejoin_units(comps)
    if len(comps) > 6:  # more than CE allows and no known split: the written text, never a part
        return "", f.text
    code = comps[0]
    text = comps[1] if len(comps) > 1 and comps[1] else code
    return code, text


def unit_items(code: str, unit_text: str = "") -> tuple[tuple[str, str], ...]:
    """The unit half of a Quantity (``unit``, UCUM ``system``/``code``) as items to add.

    A mapper that reads the same unit field for many values (OBX-6 of one test item) computes
    this once and builds each Quantity with :func:`quantity_with`.
    """
    unit_text = unit_text or code
    return _unit_items(code, unit_text) if (code or unit_text) else ()


def quantity_with(value: str, units: tuple[tuple[str, str], ...]) -> Json | None:
    """:func:`quantity` with the unit half from :func:`unit_items` already known."""
    parsed = _number(value) if type(value) is str else _parse_number(value)
    return None if parsed is None else _with_unit(parsed, units)


def _with_unit(parsed: tuple[str | None, Decimal], units: tuple[tuple[str, str], ...]) -> Json:
    comparator, number = parsed
    q: Json = {"value": number}
    if comparator:
        q["comparator"] = comparator
    if units:
        q.update(units)
    return q


@memo(4096, reads="ucum")
def _unit_items(code: str, unit_text: str) -> tuple[tuple[str, str], ...]:
    """Unit text, and UCUM when ucum(code) or ucum(unit_text) knows it."""
    items: tuple[tuple[str, str], ...] = (("unit", unit_text),) if unit_text else ()
    u = ucum(code) or ucum(unit_text)
    if u:
        items += (("system", term.UCUM), ("code", u))
    return items


def _parse_number(value: str | None) -> tuple[str | None, Decimal] | None:
    """(comparator, number) of an NM or '> 100'-style text; None when not numeric."""
    comparator = None
    m = _COMPARATOR.match(value or "")
    if m:
        comparator = {"≦": "<=", "≤": "<=", "≧": ">=", "≥": ">=", "＜": "<", "＞": ">"}.get(
            m.group(1), m.group(1))
        value = m.group(2)
    number = decimal_value(value)
    return None if number is None else (comparator, number)


# Cached by the text (Decimal is immutable, and equal texts give equal written precision).
_number = memo(16384)(_parse_number)


def datetime_(field_or_text: Field | str) -> str | None:
    return fhir_datetime(field_or_text.component(1) if isinstance(field_or_text, Field) else field_or_text)


def date_(field_or_text: Field | str) -> str | None:
    return fhir_date(field_or_text.component(1) if isinstance(field_or_text, Field) else field_or_text)


def practitioner(field: Field, facility: str = "") -> Json | None:
    """XCN (ordering/attending doctor) -> a Reference with identifier and display (no resource).

    The same doctors sign every order: built once per (field text, facility), copied per caller.
    """
    if not field:
        return None
    if not field.standard_delimiters:
        return _practitioner(field, facility)
    ref = _practitioner_cached(field.raw, facility)
    if ref is None:
        return None
    out = ref.copy()
    if "identifier" in out:
        out["identifier"] = out["identifier"].copy()
    return out


@memo(4096)
def _practitioner_cached(raw: str, facility: str) -> Json | None:
    """Never hand this dict out: :func:`practitioner` copies it."""
    return _practitioner(Field(raw, STANDARD_DELIMITERS), facility)


def _practitioner(field: Field, facility: str) -> Json | None:
    staff_id = field.component(1)
    family, given = field.component(2), field.component(3)
    ref: Json = {"type": "Practitioner"}
    display = " ".join(x for x in (family, given) if x)
    if display:
        ref["display"] = display
    if staff_id:
        ref["identifier"] = {"system": term.PRACTITIONER_ID_OID + facility, "value": staff_id}
    return ref if len(ref) > 1 else None


def department(code: str, name: str = "") -> Json | None:
    """SS-MIX2 統一診療科コード -> CodeableConcept."""
    if not code or code == "-":
        return None
    return concept(code, name, term.DEPARTMENT)


def patient_ref(patient_id: str) -> Json:
    return {"reference": f"Patient/{patient_id}"}


# --- added for ADT / PPR / OMD / OMG mappers (shared; H4 may reuse) -----------------------------

add_ucum_units({"msec": "ms", "ms": "ms", "mv": "mV", "mV": "mV", "degree": "deg",
                   "deg": "deg", "°": "deg", "kg/m2": "kg/m2", "bpm": "/min"})


def period(start: Field | str | None, end: Field | str | None = None) -> Json | None:
    """Two TS values -> Period (either side may be missing); None when both are empty."""
    p: Json = {}
    s = datetime_(start) if start is not None else None
    e = datetime_(end) if end is not None else None
    if s:
        p["start"] = s
    if e:
        p["end"] = e
    return p or None


def xcn_display(field: Field) -> str:
    """XCN family + given as one display string ('' when absent)."""
    return " ".join(x for x in (field.component(2), field.component(3)) if x) if field else ""


def location_text(field: Field) -> str:
    """PL (point of care ^ room ^ bed ^ facility ^ status ^ type) -> a readable location text.

    Inpatient locations (PL.6 = N) read as 病棟 32 / 病室 302 / ベッド 1; clinics (PL.6 = C) as
    the department code.
    """
    if not field:
        return ""
    care, room, bed = field.component(1), field.component(2), field.component(3)
    kind = field.component(6)
    if kind == "C" and not (room or bed):
        return f"診療科 {care}" if care else ""
    parts = []
    for label, value in (("病棟", care), ("病室", room), ("ベッド", bed)):
        if value:
            parts.append(f"{label} {value}")
    return " / ".join(parts)


def identifier(system: str, value: str, type_code: str = "") -> Json | None:
    if not value:
        return None
    ident: Json = {"system": system, "value": value}
    if type_code:
        ident["type"] = {"coding": [{"system": term.IDENTIFIER_TYPE, "code": type_code}]}
    return ident


def obx_value(obx: Segment, facility: str = "") -> Json:
    """OBX-2/5/6 -> {"value[x]": ...} (one key) or {} when there is no value.

    NM (and ST like '> 100') -> valueQuantity, CWE/CE/CNE -> valueCodeableConcept,
    TS/DT/DTM -> valueDateTime, everything else (ST/TX/FT/XCN/ZRD...) -> valueString with the
    readable text.  Unknown value types never lose the value.
    """
    vtype = obx.get(2)
    field = obx[5]
    if not field:
        return {}
    convert = _OBX_VALUE.get(vtype)
    value = convert(obx, field, facility) if convert is not None else None
    return value if value is not None else _string_value(obx, field, vtype)


def _quantity_value(obx: Segment, field: Field, facility: str) -> Json | None:
    q = quantity(field.text.replace("^", ""), obx[6])
    return {"valueQuantity": q} if q is not None else None


def _coded_value(obx: Segment, field: Field, facility: str) -> Json | None:
    cc = codeable(field, facility)
    return {"valueCodeableConcept": cc} if cc else None


def _datetime_value(obx: Segment, field: Field, facility: str) -> Json | None:
    when = datetime_(field)
    return {"valueDateTime": when} if when else None


def _xcn_value(obx: Segment, field: Field, facility: str) -> Json:
    """A person: the name and (id)."""
    text = " ".join(x for x in (xcn_display(field), f"({field.component(1)})"
                                if field.component(1) else "") if x)
    return {"valueString": text} if text else {}


def _zrd_value(obx: Segment, field: Field, facility: str) -> Json:
    """使用物品: code^name^system^quantity^unit -> 'name quantity unit (system code)'."""
    code, name, system = field.component(1), field.component(2), field.component(3)
    qty = field.component(4)
    unit = field.subcomponents(5)
    unit_text = unit[1] if len(unit) > 1 and unit[1] else (unit[0] if unit else "")
    coded = f"({system} {code})" if code and system else (f"({code})" if code and name else "")
    text = " ".join(x for x in (name or code, qty, unit_text, coded) if x)
    return {"valueString": text} if text else {}


def _string_value(obx: Segment, field: Field, vtype: str) -> Json:
    """Every repetition's readable text; a non-numeric NM/SN/ST keeps its unit (OBX-6)."""
    reps = [r.joined(" ").strip() for r in field.repetitions]  # an escaped \S\ stays "^"
    text = "\n".join(r for r in reps if r)
    if text and obx[6] and vtype in ("NM", "SN", "ST"):
        text = f"{text} {unit_parts(obx[6])[1]}"
    return {"valueString": text} if text else {}


# OBX-2 value type -> its value[x]; None from a converter falls back to valueString.
_OBX_VALUE: dict[str, Callable[[Segment, Field, str], Json | None]] = {
    **dict.fromkeys(("NM", "SN", "ST"), _quantity_value),
    **dict.fromkeys(("CWE", "CE", "CNE", "CF"), _coded_value),
    **dict.fromkeys(("TS", "DT", "DTM"), _datetime_value),
    "XCN": _xcn_value,
    "ZRD": _zrd_value,
}


def obx_observation(obx: Segment, ctx: ResourceContext, rid: str, category: list[Json], profile: str | None,
                    effective: str | None = None) -> Json:
    """One OBX -> an Observation dict (code OBX-3, value OBX-2/5/6, status OBX-11,
    effective OBX-14 else ``effective``, interpretation OBX-8, reference range OBX-7 as text)."""
    obs: Json = {"resourceType": "Observation", "id": rid, "meta": ctx.meta(profile),
                 "status": term.OBSERVATION_STATUS.get(obx.get(11), "final"),
                 "category": category}
    code = codeable(obx[3], ctx.facility)
    obs["code"] = code or {"text": "(項目コードなし)"}
    obs["subject"] = patient_ref(ctx.patient_id)
    eff = datetime_(obx[14]) or effective
    if eff:
        obs["effectiveDateTime"] = eff
    obs.update(obx_value(obx, ctx.facility))
    if obx.get(7):
        obs["referenceRange"] = [{"text": obx[7].text}]
    if obx.get(8):
        flag = obx.get(8)
        obs["interpretation"] = [{"coding": [{"system": term.INTERPRETATION, "code": flag}]}]
    return obs
