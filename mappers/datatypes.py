"""HL7 v2 data types -> FHIR data types, written once for every mapper.

CWE -> CodeableConcept, XPN -> HumanName, XAD -> Address, XTN -> ContactPoint, CQ/NM+unit ->
Quantity, TS -> dateTime, XCN -> Reference display + identifier.  Mappers call these with fields
from the tokenizer (``storage.hl7.Field``) so a mapper reads like the field table.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

from storage.hl7 import Field
from storage.timestamps import fhir_date, fhir_datetime

from . import terminology as term


def coding(code: str, display: str = "", system_name: str = "", facility: str = "") -> dict | None:
    """One Coding; None when there is neither code nor display."""
    if not code and not display:
        return None
    c: dict = {}
    system = term.system_for(system_name, facility) if system_name else None
    if system:
        c["system"] = system
    if code:
        c["code"] = code
    if display:
        c["display"] = display
    return c


def codeable(field: Field, facility: str = "", text: str | None = None) -> dict | None:
    """CWE/CE/CNE -> CodeableConcept with a Coding per triplet (1-3 and 4-6), text = first name."""
    if not field:
        return None
    comps = field.components() + [""] * 9
    codings = []
    for i in (0, 3):
        c = coding(comps[i], comps[i + 1], comps[i + 2], facility)
        if c and c.get("code"):
            codings.append(c)
    cc: dict = {}
    if codings:
        cc["coding"] = codings
    label = text if text is not None else (comps[8] or comps[1] or comps[4])
    if not label and not codings:
        label = comps[0]
    if label:
        cc["text"] = label
    return cc or None


def concept(code: str, display: str, system: str) -> dict:
    """A CodeableConcept from a known system URI (not a v2 coding-system name)."""
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return {"coding": [c], **({"text": display} if display else {})}


def human_names(field: Field) -> list[dict]:
    """XPN (repeating) -> HumanName list; XPN.8 I/P -> iso21090 IDE (kanji) / SYL (kana)."""
    names = []
    for rep in field.repetitions:
        family, given, middle = rep.component(1), rep.component(2), rep.component(3)
        if not (family or given):
            continue
        n: dict = {"use": "usual" if rep.component(7) in ("L", "") else "official"}
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


def address(field: Field) -> list[dict]:
    """XAD -> Address.  XAD.8 is the free-text address SS-MIX2 writers fill."""
    out = []
    for rep in field.repetitions:
        street, other, city, state, postal, country, atype, full = (
            rep.component(i) for i in range(1, 9)
        )
        a: dict = {}
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


def contact_points(field: Field, default_use: str | None = None) -> list[dict]:
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
        cp: dict = {"system": system, "value": value}
        if use:
            cp["use"] = use
        out.append(cp)
    return out


# --- quantities ------------------------------------------------------------------------------

# Common SS-MIX2 / ISO+ unit spellings -> UCUM.  Anything else keeps its text only.
UCUM_UNITS: dict[str, str] = {
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
    "10^2/ul": "10*2/uL", "*10^2/ul": "10*2/uL", "μl": "uL", "ul": "uL", "fl": "fL",
    "mg/l": "mg/L", "g/l": "g/L", "umol/l": "umol/L", "μmol/l": "umol/L", "nmol/l": "nmol/L",
    "pmol/l": "pmol/L", "mu/l": "m[IU]/L", "miu/l": "m[IU]/L", "uu/ml": "u[IU]/mL",
    "μu/ml": "u[IU]/mL", "μiu/ml": "u[IU]/mL", "uiu/ml": "u[IU]/mL", "iu/ml": "[IU]/mL",
    "u/ml": "U/mL", "mosm/kg": "mosm/kg", "mg/g": "mg/g", "g/day": "g/d", "mg/day": "mg/d",
    "sec": "s", "mm/h": "mm/h", "mm/hr": "mm/h", "ml/hr": "mL/h", "%hb": "%", "ratio": "{ratio}",
    "titer": "{titer}", "倍": "{titer}", "index": "{index}", "coi": "{COI}", "s/co": "{s_co_ratio}",
}
_UCUM_FOLDED: dict[str, str] = {}  # filled lazily: NFKC + lower-case spelling -> UCUM

_COMPARATOR = re.compile(r"^\s*(<=|>=|<|>|≦|≧|＜|＞|≤|≥)\s*([-+]?\d+(?:\.\d+)?)\s*$")
_NUMBER = re.compile(r"^\s*[-+]?\d+(?:\.\d+)?\s*$")


def decimal_value(text: str) -> Decimal | None:
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
    found = UCUM_UNITS.get(unit)
    if found:
        return found
    if len(_UCUM_FOLDED) < len(UCUM_UNITS):
        for k, v in UCUM_UNITS.items():
            _UCUM_FOLDED.setdefault(unicodedata.normalize("NFKC", k).lower(), v)
    return _UCUM_FOLDED.get(unicodedata.normalize("NFKC", unit).strip().lower())


def quantity(value: str, unit_field: Field | None = None, unit_text: str = "") -> dict | None:
    """NM (or an ST like '> 100') + unit -> Quantity; None when the value is not numeric.

    The written unit is kept in ``unit``; ``system``/``code`` are UCUM only when we know the
    conversion, so no unit is ever guessed.
    """
    comparator = None
    m = _COMPARATOR.match(value or "")
    if m:
        comparator = {"≦": "<=", "≤": "<=", "≧": ">=", "≥": ">=", "＜": "<", "＞": ">"}.get(
            m.group(1), m.group(1))
        value = m.group(2)
    number = decimal_value(value)
    if number is None:
        return None
    q: dict = {"value": number}
    if comparator:
        q["comparator"] = comparator
    code = ""
    if unit_field is not None and unit_field:
        code = unit_field.component(1)
        unit_text = unit_field.component(2) or code
    unit_text = unit_text or code
    if unit_text:
        q["unit"] = unit_text
    u = ucum(code) or ucum(unit_text)
    if u:
        q["system"] = term.UCUM
        q["code"] = u
    return q


def datetime_(field_or_text: Field | str) -> str | None:
    return fhir_datetime(field_or_text.component(1) if isinstance(field_or_text, Field) else field_or_text)


def date_(field_or_text: Field | str) -> str | None:
    return fhir_date(field_or_text.component(1) if isinstance(field_or_text, Field) else field_or_text)


def practitioner(field: Field, facility: str = "") -> dict | None:
    """XCN (ordering/attending doctor) -> a Reference with identifier and display (no resource)."""
    if not field:
        return None
    staff_id = field.component(1)
    family, given = field.component(2), field.component(3)
    ref: dict = {"type": "Practitioner"}
    display = " ".join(x for x in (family, given) if x)
    if display:
        ref["display"] = display
    if staff_id:
        ref["identifier"] = {"system": term.PRACTITIONER_ID_OID + facility, "value": staff_id}
    return ref if len(ref) > 1 else None


def department(code: str, name: str = "") -> dict | None:
    """SS-MIX2 統一診療科コード -> CodeableConcept."""
    if not code or code == "-":
        return None
    return concept(code, name, term.DEPARTMENT)


def patient_ref(patient_id: str) -> dict:
    return {"reference": f"Patient/{patient_id}"}
