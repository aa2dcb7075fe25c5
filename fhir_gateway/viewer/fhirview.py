"""Small readers over FHIR R4 dicts (JP Core shapes): text of a CodeableConcept, the date that
matters for a resource, where it came from.  The viewer renders only from these dicts — the same
resources the FHIR API serves — so there is one mapping, not two."""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal

from ..services.medication_summary import concept_text as cc_text  # noqa: F401 - re-exported
from ..services.origin import origin

EN_REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"


def cc_texts(cc: dict | None) -> list[str]:
    """Every text a CodeableConcept carries (for searching: text, displays, codes)."""
    if not isinstance(cc, dict):
        return []
    out = [cc.get("text") or ""]
    for c in cc.get("coding") or []:
        out += [c.get("display") or "", c.get("code") or ""]
    return [str(x) for x in out if x]


def codes_of(cc: dict | None) -> list[str]:
    return [str(c.get("code")) for c in (cc or {}).get("coding") or [] if c.get("code")]


def num(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        f = float(value) if isinstance(value, (int, float, Decimal)) else float(str(value))
    except (TypeError, ValueError, OverflowError):
        return None
    # a value a float cannot hold (400 digits, "nan") is no number to compute with: shown as text
    return f if math.isfinite(f) else None


def fmt_num(value) -> str:
    """Numbers as the source wrote them (Decimal keeps '72.50'); floats without noise."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def quantity(q: dict | None) -> str:
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    unit = q.get("unit") or q.get("code") or ""
    return f"{fmt_num(q['value'])} {unit}".strip()


def source_date(res: dict) -> str:
    """The 診療日 folder as YYYY-MM-DD ('' for '-' or unknown), as the service layer knows it."""
    return origin(res).day


def _first(*values) -> str:
    for v in values:
        if v:
            return str(v)
    return ""


def when(res: dict) -> str:
    """The clinically relevant date/time of a resource (ISO text, may be empty)."""
    rt = res.get("resourceType")
    eff = res.get("effectivePeriod") or {}
    per = res.get("period") or {}
    if rt == "Condition":
        return _first(res.get("onsetDateTime"), res.get("recordedDate"), source_date(res))
    if rt == "AllergyIntolerance":
        return _first(res.get("recordedDate"), res.get("onsetDateTime"), source_date(res))
    if rt in ("MedicationRequest", "ServiceRequest"):
        return _first(res.get("authoredOn"), res.get("occurrenceDateTime"), source_date(res))
    if rt in ("MedicationAdministration", "Observation", "DiagnosticReport", "Procedure",
              "Immunization"):
        return _first(res.get("effectiveDateTime"), eff.get("start"), res.get("performedDateTime"),
                      res.get("occurrenceDateTime"), res.get("issued"), source_date(res))
    if rt == "MedicationDispense":
        return _first(res.get("whenHandedOver"), res.get("whenPrepared"), source_date(res))
    if rt == "Encounter":
        return _first(per.get("start"), source_date(res))
    if rt in ("DocumentReference", "Composition"):
        return _first(res.get("date"), source_date(res))
    if rt == "Claim":
        return _first((res.get("billablePeriod") or {}).get("start"), res.get("created"))
    return _first(source_date(res), (res.get("meta") or {}).get("lastUpdated"))


def day(text: str) -> str:
    return (text or "")[:10]


def short_dt(text: str) -> str:
    """'2024-04-01T09:30:00+09:00' -> '2024-04-01 09:30'."""
    if not text:
        return ""
    return text[:16].replace("T", " ") if "T" in text else text[:10]


def parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat((text or "")[:10])
    except ValueError:
        return None


def parse_dt(text: str) -> datetime | None:
    """Any FHIR date/dateTime as a naive local datetime (for chart spacing)."""
    if not text:
        return None
    t = text[:19]
    for fmt, n in (("%Y-%m-%dT%H:%M:%S", 19), ("%Y-%m-%dT%H:%M", 16), ("%Y-%m-%d", 10),
                   ("%Y-%m", 7), ("%Y", 4)):
        try:
            return datetime.strptime(t[:n], fmt)
        except ValueError:
            continue
    return None


def age(birth: str, today: date) -> int | None:
    b = parse_day(birth)
    if not b:
        return None
    return today.year - b.year - ((today.month, today.day) < (b.month, b.day))


def names(patient: dict) -> tuple[str, str]:
    """(kanji, kana) names of a JP Core Patient, by the iso21090-EN-representation extension."""
    kanji = kana = ""
    for n in patient.get("name") or []:
        rep = next((e.get("valueCode") for e in n.get("extension") or []
                    if e.get("url") == EN_REPRESENTATION), "")
        text = n.get("text") or " ".join(
            [n.get("family") or ""] + list(n.get("given") or [])).strip()
        if rep == "SYL" and not kana:
            kana = text
        elif rep in ("IDE", "") and not kanji:
            kanji = text
        elif rep == "ABC" and not kanji:
            kanji = text
    return kanji, kana


def contained(res: dict, ref: dict | None) -> dict | None:
    target = (ref or {}).get("reference") or ""
    if target.startswith("#"):
        return next((c for c in res.get("contained") or [] if c.get("id") == target[1:]), None)
    return None


def medication_names(res: dict) -> list[str]:
    """Drug names of a MedicationRequest/Administration/Dispense (ingredients of a contained
    JP_Medication for injections)."""
    out = []
    if res.get("medicationCodeableConcept"):
        out.append(cc_text(res["medicationCodeableConcept"]))
    med = contained(res, res.get("medicationReference"))
    if med is None and res.get("medicationReference"):
        out.append(res["medicationReference"].get("display") or "")
    if med:
        ings = [cc_text(i.get("itemCodeableConcept")) or
                (i.get("itemReference") or {}).get("display", "") for i in med.get("ingredient") or []]
        ings = [i for i in ings if i]
        if ings:
            out += ings
        elif med.get("code"):
            out.append(cc_text(med["code"]))
    return [x for x in out if x]


def medication_search_texts(res: dict) -> list[str]:
    texts = list(medication_names(res))
    texts += cc_texts(res.get("medicationCodeableConcept"))
    med = contained(res, res.get("medicationReference"))
    if med:
        texts += cc_texts(med.get("code"))
        for i in med.get("ingredient") or []:
            texts += cc_texts(i.get("itemCodeableConcept"))
    return texts


def profiles(res: dict) -> list[str]:
    return [str(p) for p in (res.get("meta") or {}).get("profile") or []]


def category_codes(res: dict) -> list[str]:
    out = []
    cats = res.get("category")
    if isinstance(cats, dict):
        cats = [cats]
    for c in cats or []:
        out += codes_of(c)
    return out
