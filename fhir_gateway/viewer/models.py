"""View-models: FHIR dicts of one patient -> the rows and facts the templates show.

Nothing here reads files or maps HL7: the input is ``PatientData`` from the service layer (the
same resources the FHIR API serves), its per-file problems and its file list.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from storage.text import search_key

from ..services.origin import folder_of, origin, origin_of
from . import fhirview as fv

# (key, message-catalogue key) in display order
CATEGORIES = ["conditions", "allergies", "prescriptions", "injections", "administrations",
              "lab-orders", "lab-results", "vitals", "other"]

# resources that support others and are not listed on their own
_SUPPORT = {"Patient", "Practitioner", "PractitionerRole", "Organization", "Medication", "Location",
            "Specimen", "Provenance", "Coverage", "Claim", "OperationOutcome"}
NKA_CODES = {"716186003", "409137002", "428607008", "429625007", "NKA", "NKDA"}
_NKA_TEXT = re.compile(r"(アレルギー.*(なし|無し|無)|^なし$|^無し$|no known|NKA)", re.I)
MEMO_TAG = "viewer-memo"


class Term(str):
    """A code shown in a table cell; the template renders it as plain words (i18n.TERMS)."""
    key: str
    rest: str

    def __new__(cls, group: str, code: str, rest: str = "") -> "Term":
        obj = super().__new__(cls, f"{code} {rest}".strip())
        obj.key = f"{group}:{code}" if code else ""
        obj.rest = rest
        return obj


def is_memo(res: dict) -> bool:
    return any(t.get("code") == MEMO_TAG for t in (res.get("meta") or {}).get("tag") or [])


def is_lab(res: dict) -> bool:
    return "laboratory" in fv.category_codes(res) or origin(res).category == "lab-results"


def category_of(res: dict) -> str | None:
    """The viewer category of a resource, or None for supporting resources and memos."""
    rt = res.get("resourceType")
    if rt in _SUPPORT or is_memo(res):
        return None
    if rt == "Condition":
        return "conditions"
    if rt == "AllergyIntolerance":
        return "allergies"
    src = origin(res)
    dtype = src.data_type
    if rt == "Observation" and vital_kind(res):
        return "vitals"
    if rt == "Observation" and dtype == "ADT-00":
        return "other"
    if src.category == "lab-results" and rt not in ("Observation", "DiagnosticReport"):
        return None  # the order/specimen echoed in a result message
    if src.category is not None:
        return src.category
    if rt == "MedicationRequest":
        injection = any("Injection" in p for p in fv.profiles(res))
        return "injections" if injection else "prescriptions"
    if rt == "MedicationAdministration":
        return "administrations"
    if rt == "MedicationDispense":
        return "prescriptions"
    if rt == "ServiceRequest" and "laboratory" in fv.category_codes(res):
        return "lab-orders"
    if rt in ("Observation", "DiagnosticReport") and is_lab(res):
        return "lab-results"
    return "other"


# --- vitals ----------------------------------------------------------------------------------

# kind -> (LOINC codes, JLAC10 prefixes): BP, pulse, temperature, SpO2, RR, height, weight, BMI
VITALS: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "sys": ({"8480-6"}, ("9A751",)), "dia": ({"8462-4"}, ("9A761",)),
    "pulse": ({"8867-4"}, ("9P300",)), "temp": ({"8310-5", "8331-1"}, ("9P100",)),
    "spo2": ({"59408-5", "2708-6"}, ("9N301",)), "rr": ({"9279-1"}, ("9P200",)),
    "height": ({"8302-2", "3137-7"}, ("9N001",)), "weight": ({"29463-7", "3141-9"}, ("9N006",)),
    "bmi": ({"39156-5"}, ("9N011",)),
}


def vital_kind(obs: dict) -> str:
    """Which vital sign an Observation is ('' when none), by LOINC or JLAC10 code."""
    codes = fv.codes_of(obs.get("code"))
    for kind, (loinc, jlac) in VITALS.items():
        if any(c in loinc or c.startswith(jlac) for c in codes):
            return kind
    return ""


@dataclass
class VitalRow:
    when: str                                   # YYYY-MM-DD HH:MM
    values: dict[str, LabValue] = field(default_factory=dict)


def vitals(resources: list[dict]) -> tuple[list[VitalRow], dict[str, list[tuple[str, float]]]]:
    """(rows newest first, one per measurement time; series per kind oldest first) from every
    vital-sign Observation (OBX of ADT/OUL messages and extended-storage observation files).
    BMI is computed from weight and the latest height when not recorded."""
    by_time: dict[str, VitalRow] = {}
    series: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for r in resources:
        if r.get("resourceType") != "Observation":
            continue
        kind = vital_kind(r)
        if not kind:
            continue
        when = fv.when(r)
        key = fv.short_dt(when)
        v = lab_value(r)
        by_time.setdefault(key, VitalRow(key)).values[kind] = v
        if v.value is not None:
            series[kind].append((when, v.value))
    for k in series:
        series[k].sort()
    if not series.get("bmi") and series.get("weight") and series.get("height"):
        for when, w in series["weight"]:
            h = [hv for hw, hv in series["height"] if hw <= when] or [series["height"][0][1]]
            if h[-1] > 0:
                series["bmi"].append((when, round(w / (h[-1] / 100) ** 2, 1)))
    return sorted(by_time.values(), key=lambda x: x.when, reverse=True), dict(series)


# --- banner ----------------------------------------------------------------------------------

@dataclass
class Banner:
    patient_id: str
    kanji: str
    kana: str
    birthdate: str
    age: int | None
    gender: str              # FHIR code: male/female/other/unknown
    allergy_state: str       # "unknown" (no information) | "nka" (no known allergy) | "present"
    allergies: list[str] = field(default_factory=list)


def _allergy_active(a: dict) -> bool:
    ver = fv.codes_of(a.get("verificationStatus"))
    clin = fv.codes_of(a.get("clinicalStatus"))
    return not ({"entered-in-error", "refuted"} & set(ver)) and not ({"inactive", "resolved"} & set(clin))


def is_no_known_allergy(a: dict) -> bool:
    code = a.get("code") or {}
    return bool(set(fv.codes_of(code)) & NKA_CODES) or bool(_NKA_TEXT.search(fv.cc_text(code)))


def banner(patient: dict | None, resources: list[dict], patient_id: str, today: date) -> Banner:
    patient = patient or {}
    kanji, kana = fv.names(patient)
    allergies = [a for a in resources if a.get("resourceType") == "AllergyIntolerance"
                 and _allergy_active(a)]
    real = [a for a in allergies if not is_no_known_allergy(a)]
    if real:
        state = "present"
    elif allergies:
        state = "nka"
    else:
        state = "unknown"
    names = []
    for a in real:
        n = fv.cc_text(a.get("code")) or "?"
        sev = next((r.get("severity") for r in a.get("reaction") or [] if r.get("severity")), "")
        names.append(f"{n} ({sev})" if sev == "severe" else n)
    return Banner(patient_id, kanji, kana, patient.get("birthDate", ""),
                  fv.age(patient.get("birthDate", ""), today), patient.get("gender", "unknown"),
                  state, sorted(set(names)))


# --- data quality: period, freshness, problems -----------------------------------------------

def _file_facts(files) -> list[tuple[str, str, str]]:
    """(date folder, data type, 発生日時) for each file (StoredFile or relpath)."""
    out: list[tuple[str, str, str]] = []
    if not isinstance(files, (list, tuple)):
        return out  # the service may give only a count
    for f in files:
        name = getattr(f, "name", None)
        if name is not None and getattr(name, "data_type", None):
            if getattr(name, "flag", "1") == "0":
                continue
            out.append((name.date, name.data_type, name.timestamp))
            continue
        rel = getattr(f, "relpath", f if isinstance(f, str) else "")
        day, dtype = folder_of(str(rel))
        if dtype:
            parts = str(rel).rsplit("/", 1)[-1].split("_")
            out.append((day, dtype, parts[4] if len(parts) > 4 else ""))
    return out


def _ts_text(ts: str) -> str:
    if len(ts) >= 12 and ts[:12].isdigit():
        return f"{ts[:4]}-{ts[4:6]}-{ts[6:8]} {ts[8:10]}:{ts[10:12]}"
    return ts


@dataclass
class DataQuality:
    first: str
    last: str
    dates: list[str]                          # YYYY-MM-DD, newest first
    freshness: list[tuple[str, str, int]]     # (data type, newest 発生日時 text, files)
    problems: dict[str, list[dict]]           # data type -> [{kind, reason, path, severity}]


file_facts = _file_facts


def data_quality(resources: list[dict], problems, files) -> DataQuality:
    facts = _file_facts(files)
    dates = {d for d, _, _ in facts if len(d) == 8}
    if not facts:
        dates = {origin(r).date for r in resources if len(origin(r).date) == 8}
    newest: dict[str, str] = {}
    count: dict[str, int] = defaultdict(int)
    for _, dtype, ts in facts:
        count[dtype] += 1
        newest[dtype] = max(newest.get(dtype, ""), ts)
    if not facts:
        for r in resources:
            dtype = origin(r).data_type
            if dtype:
                count[dtype] += 1
                lu = (r.get("meta") or {}).get("lastUpdated") or ""
                newest[dtype] = max(newest.get(dtype, ""), lu.replace("-", "").replace(":", "").replace("T", ""))
    iso = sorted((f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in dates), reverse=True)
    probs: dict[str, list[dict]] = defaultdict(list)
    for p in problems or []:
        get = (lambda k, p=p: p.get(k, "")) if isinstance(p, dict) else (lambda k, p=p: getattr(p, k, "") or "")
        path = str(get("path"))
        dtype = folder_of(path)[1] or (path.split("/")[0] if path and "/" not in path else "?")
        probs[dtype].append({"kind": get("kind"), "reason": get("reason"), "path": path,
                             "severity": get("severity") or "error"})
    return DataQuality(iso[-1] if iso else "", iso[0] if iso else "", iso,
                       [(t, _ts_text(newest[t]), count[t]) for t in sorted(newest)], dict(probs))


# --- category rows -----------------------------------------------------------------------------

@dataclass
class Row:
    date: str                    # ISO date/time text used for sorting and the per-date view
    cells: list[str]
    status: str = ""             # css hint: active/past/error/abnormal
    source: str = ""             # meta.source for traceability
    resource_id: str = ""
    flag: str = ""
    res: dict | None = field(default=None, repr=False)


def _dosage(res: dict) -> tuple[str, str, str]:
    """(dose, usage/timing, route) of the first dosage instruction."""
    di = (res.get("dosageInstruction") or res.get("dosage") or [{}])
    d = di[0] if isinstance(di, list) and di else (di if isinstance(di, dict) else {})
    dose = ""
    for dr in d.get("doseAndRate") or []:
        dose = fv.quantity(dr.get("doseQuantity")) or dose
    dose = dose or fv.quantity(d.get("dose"))
    timing = fv.cc_text((d.get("timing") or {}).get("code")) or d.get("text") or ""
    route = fv.cc_text(d.get("route")) or fv.cc_text(d.get("method"))
    return dose, timing, route


def _period_of_use(extensions: list[dict]) -> tuple[str, str]:
    """(start, end) of the last JP Core period-of-use extension among ``extensions``."""
    start = end = ""
    for ext in extensions:
        if "PeriodOfUse" in (ext.get("url") or "") and ext.get("valuePeriod"):
            start = ext["valuePeriod"].get("start", "")
            end = ext["valuePeriod"].get("end", "")
    return start, end


def _dosage_period(d: dict) -> tuple[str, str, int | None]:
    """(start, end, days) one dosage instruction states: its period of use, else timing bounds."""
    start, end = _period_of_use(d.get("extension") or [])
    rep = (d.get("timing") or {}).get("repeat") or {}
    bp = rep.get("boundsPeriod") or {}
    bd = rep.get("boundsDuration") or {}
    days = int(fv.num(bd["value"]) or 0) if bd.get("value") is not None else None
    return start or bp.get("start", ""), end or bp.get("end", ""), days


def med_period(res: dict) -> tuple[str, str, int | None]:
    """(start, end, days) of a prescription: period-of-use extension, bounds, or authoredOn+days."""
    start, end = _period_of_use(res.get("extension") or [])
    days = None
    for d in res.get("dosageInstruction") or []:
        d_start, d_end, d_days = _dosage_period(d)
        start, end = start or d_start, end or d_end
        days = d_days if days is None else days
    esd = (res.get("dispenseRequest") or {}).get("expectedSupplyDuration") or {}
    if esd.get("value") is not None:
        days = int(fv.num(esd["value"]) or 0)
    start = start or res.get("authoredOn", "")
    if not end and start and days:
        s = fv.parse_day(start)
        if s:
            end = (s + timedelta(days=max(days - 1, 0))).isoformat()
    return fv.day(start), fv.day(end), days


def is_active_med(res: dict, today: date) -> bool:
    if set(fv.codes_of({"coding": [{"code": res.get("status")}]})) & {"cancelled", "entered-in-error",
                                                                      "stopped", "completed"}:
        return False
    _, end, _ = med_period(res)
    e = fv.parse_day(end)
    return bool(e and e >= today)


def _status_text(res: dict) -> str:
    s = res.get("status") or ""
    return Term("status", s) if isinstance(s, str) and s else ""


def rows_for(category: str, resources: list[dict], today: date) -> list[Row]:
    """Rows of one category, newest first."""
    rows: list[Row] = []
    build = _ROW_BUILDERS.get(category, _other_row)
    for r in resources:
        if category_of(r) != category:
            continue
        row = build(r, _RowBase.of(r), today)
        if row is not None:
            row.res = r
            rows.append(row)
    rows.sort(key=lambda x: x.date, reverse=True)
    if category == "allergies":
        rows = merge_allergies(rows)
    return rows


@dataclass(frozen=True)
class _RowBase:
    """What every row of a resource carries: its clinical time, meta.source and id."""
    when: str
    src: str
    rid: str
    rt: str

    @classmethod
    def of(cls, r: dict) -> _RowBase:
        return cls(fv.when(r), origin(r).path, str(r.get("id") or ""),
                   str(r.get("resourceType") or ""))


def _condition_row(r: dict, b: _RowBase, today: date) -> Row:
    ver = fv.codes_of(r.get("verificationStatus"))
    clin = (fv.codes_of(r.get("clinicalStatus")) or [fv.cc_text(r.get("clinicalStatus")) or ""])[0]
    suspected = "unconfirmed" in ver or "provisional" in ver
    outcome = ""
    for ext in r.get("extension") or []:
        if "Outcome" in (ext.get("url") or ""):
            outcome = fv.cc_text(ext.get("valueCodeableConcept"))
    return Row(b.when, [fv.day(b.when), fv.cc_text(r.get("code")) + (" (疑い)" if suspected else ""),
                        Term("clinical", clin), fv.day(r.get("abatementDateTime") or ""), outcome],
               "past" if r.get("abatementDateTime") or clin in ("resolved", "inactive") else "active",
               b.src, b.rid)


def _allergy_row(r: dict, b: _RowBase, today: date) -> Row:
    react = "; ".join(filter(None, [
        ", ".join(fv.cc_text(m) for m in rx.get("manifestation") or []) or rx.get("description", "")
        for rx in r.get("reaction") or []]))
    sev = next((rx.get("severity") for rx in r.get("reaction") or [] if rx.get("severity")), "")
    cats = list(r.get("category") or [])
    ver = (fv.codes_of(r.get("verificationStatus")) or [""])[0]
    return Row(b.when, [fv.day(b.when), fv.cc_text(r.get("code")),
                        Term("allergy-category", cats[0]) if cats else "", react,
                        Term("severity", sev) if sev else "",
                        Term("verification", ver) if ver else "", _allergy_source(r)],
               "active" if _allergy_active(r) else "past", b.src, b.rid)


def _prescription_row(r: dict, b: _RowBase, today: date) -> Row:
    dose, timing, route = _dosage(r)
    start, end, days = med_period(r)
    active = is_active_med(r, today) if b.rt == "MedicationRequest" else False
    return Row(b.when, [fv.day(b.when), " ＋ ".join(fv.medication_names(r)), dose,
                        timing, "" if days is None else str(days),
                        f"{start}〜{end}" if start or end else "", _status_text(r)],
               "active" if active else "past", b.src, b.rid)


def _injection_row(r: dict, b: _RowBase, today: date) -> Row:
    from ..services.medication_summary import med_line
    if b.rt != "MedicationRequest":
        return Row(b.when, [fv.day(b.when), " ＋ ".join(fv.medication_names(r)), "", "", "",
                            "", "", _status_text(r)], "past", b.src, b.rid)
    ln = med_line(r, today)
    how = " / ".join(x for x in (ln.route, ln.site, ln.method) if x)
    return Row(b.when, [fv.day(b.when), _components_text(ln.components), ln.dose, ln.rate,
                        f"{ln.start}〜{ln.end}" if ln.start else "", how, ln.device,
                        _status_text(r)],
               "active" if ln.state == "running" else "past", b.src, b.rid)


def _administration_row(r: dict, b: _RowBase, today: date) -> Row:
    from ..services.medication_summary import given
    gv = given(r)
    drug = _components_text(gv.components) or fv.cc_text(r.get("vaccineCode"))
    how = " / ".join(x for x in (gv.route, gv.site, gv.method) if x)
    return Row(b.when, [f"{gv.start}〜{gv.end}" if gv.end else gv.start or fv.short_dt(b.when),
                        drug, gv.dose, gv.rate, how, gv.device, gv.performer,
                        _status_text(r)], "", b.src, b.rid)


def _lab_order_row(r: dict, b: _RowBase, today: date) -> Row:
    return Row(b.when, [fv.day(b.when), fv.cc_text(r.get("code")) or b.rt, _status_text(r)], "",
               b.src, b.rid)


def _lab_result_row(r: dict, b: _RowBase, today: date) -> Row | None:
    if b.rt == "DiagnosticReport":
        return None  # its Observations are the rows
    v = lab_value(r)
    return Row(b.when, [fv.short_dt(b.when), fv.cc_text(r.get("code")), v.text, v.unit,
                        v.range_text, v.flag], "abnormal" if v.flag else "", b.src, b.rid, v.flag)


def _other_row(r: dict, b: _RowBase, today: date) -> Row:
    return Row(b.when, [fv.day(b.when), _kind_label(r), _summary_text(r)], "", b.src, b.rid)


_ROW_BUILDERS: dict[str, Callable[[dict, _RowBase, date], Row | None]] = {
    "conditions": _condition_row, "allergies": _allergy_row, "prescriptions": _prescription_row,
    "injections": _injection_row, "administrations": _administration_row,
    "lab-orders": _lab_order_row, "lab-results": _lab_result_row,
}


def _components_text(comps) -> str:
    """Every drug of a mix with its amount, one per line (1本, 1アンプル …)."""
    return "\n".join(f"{c.name} {c.amount}".strip() for c in comps)


_SEGMENT = {"ADT-00": "AL1", "ADT-61": "IAM"}


def _allergy_source(r: dict) -> str:
    """Where the allergy is recorded: its own file, then the files of the copies the patient-level
    view folded into it (``mappers.chart`` ``also-recorded-in``), e.g. "ADT-61 IAM (day)、ADT-00 AL1"."""
    dtype = origin(r).data_type
    seg = _SEGMENT.get(dtype, "")
    day = fv.day(fv.when(r))
    own = " ".join(x for x in (dtype or r.get("resourceType", ""), seg, f"({day})" if day else "") if x)
    others = []
    for ext in r.get("extension") or []:
        if str(ext.get("url", "")).endswith("also-recorded-in") and ext.get("valueString"):
            other = origin_of(str(ext["valueString"])).data_type
            label = " ".join(x for x in (other, _SEGMENT.get(other, "")) if x)
            if label and label not in others and label != " ".join(x for x in (dtype, seg) if x):
                others.append(label)
    return "、".join([own, *others])


def allergen_key(r: dict) -> str:
    """Same allergen across AL1 (ADT-00) and IAM (ADT-61): the code, else the normalised text."""
    codes = fv.codes_of(r.get("code"))
    return "code|" + codes[0] if codes else "text|" + search_key(fv.cc_text(r.get("code")))


def merge_allergies(rows: list[Row]) -> list[Row]:
    """One row per allergen: the newest record's facts, every source listed (newest first)."""
    merged: dict[str, Row] = {}
    order: list[str] = []
    for row in sorted(rows, key=lambda x: x.date, reverse=True):
        key = allergen_key(row.res or {}) if row.res else row.cells[1]
        if key not in merged:
            merged[key] = replace(row, cells=list(row.cells))
            order.append(key)
        else:
            kept = merged[key]
            if row.cells[6] and row.cells[6] not in kept.cells[6]:
                kept.cells[6] = f"{kept.cells[6]}、{row.cells[6]}"
            for i in (2, 3, 4):  # fill what the newest record left empty
                kept.cells[i] = kept.cells[i] or row.cells[i]
    return [merged[k] for k in order]


def _kind_label(r: dict) -> str:
    rt = r.get("resourceType", "")
    dtype = origin(r).data_type
    t = fv.cc_text(r.get("type")) if isinstance(r.get("type"), dict) else ""
    if rt == "Encounter":
        t = (r.get("class") or {}).get("display") or (r.get("class") or {}).get("code", "")
    return Term("rtype", rt, " ".join(x for x in (f"[{dtype}]" if dtype else "", t) if x))


def _summary_text(r: dict) -> str:
    rt = r.get("resourceType")
    if rt == "Observation":
        v = lab_value(r)
        return f"{fv.cc_text(r.get('code'))}: {v.text} {v.unit}".strip()
    if rt == "Encounter":
        per = r.get("period") or {}
        return f"{fv.short_dt(per.get('start', ''))}〜{fv.short_dt(per.get('end', ''))} {r.get('status', '')}"
    if rt == "DocumentReference":
        texts = []
        for c in r.get("content") or []:
            a = c.get("attachment") or {}
            texts.append(a.get("title") or "")
            texts.append(_attachment_text(a))
        return " ".join(t for t in texts if t)[:2000] or r.get("description", "")
    if rt == "Composition":
        return " / ".join(s.get("title", "") for s in r.get("section") or [])
    text = (r.get("text") or {}).get("div") or ""
    plain = re.sub(r"<[^>]+>", " ", text)
    return (fv.cc_text(r.get("code")) + " " + plain).strip()[:500]


def _attachment_text(a: dict) -> str:
    import base64
    if a.get("data") and str(a.get("contentType", "")).startswith("text/"):
        try:
            return base64.b64decode(a["data"]).decode("utf-8", "replace")
        except ValueError:
            return ""
    return ""


# --- labs ------------------------------------------------------------------------------------

@dataclass
class LabValue:
    value: float | None
    text: str
    unit: str
    low: float | None
    high: float | None
    range_text: str
    flag: str          # H, L, HH, LL, A or ""


_FLAGS = {"H", "L", "HH", "LL", "A", "AA", "HU", "LU", ">", "<"}


def _lab_result(obs: dict) -> tuple[float | None, str]:
    """(numeric value or None, the result as written) of whichever value[x] the Observation has."""
    q = obs.get("valueQuantity") or {}
    if q:
        text = fv.fmt_num(q.get("value"))
        return fv.num(q.get("value")), (q["comparator"] + text if q.get("comparator") else text)
    if obs.get("valueString") is not None:
        text = str(obs["valueString"])
        return fv.num(text), text
    if obs.get("valueCodeableConcept"):
        return None, fv.cc_text(obs["valueCodeableConcept"])
    if obs.get("valueInteger") is not None:
        return float(obs["valueInteger"]), str(obs["valueInteger"])
    return None, fv.cc_text(obs.get("dataAbsentReason")) or ""


def _lab_range(rr: dict) -> tuple[float | None, float | None, str]:
    """(low, high, text) of a reference range; the text is the source's, else "low–high"."""
    low = fv.num((rr.get("low") or {}).get("value"))
    high = fv.num((rr.get("high") or {}).get("value"))
    if rr.get("text"):
        return low, high, rr["text"]
    if low is None and high is None:
        return low, high, ""
    return low, high, (f"{fv.fmt_num((rr.get('low') or {}).get('value')) if low is not None else ''}–"
                       f"{fv.fmt_num((rr.get('high') or {}).get('value')) if high is not None else ''}")


def _lab_flag(obs: dict, value: float | None, low: float | None, high: float | None) -> str:
    """The source's abnormal flag (last one wins), else H/L from the reference range."""
    flag = ""
    for interp in obs.get("interpretation") or []:
        for c in fv.codes_of(interp):
            if c.upper() in _FLAGS:
                flag = c.upper()
    if flag or value is None:
        return flag
    if high is not None and value > high:
        return "H"
    if low is not None and value < low:
        return "L"
    return ""


def lab_value(obs: dict) -> LabValue:
    q = obs.get("valueQuantity") or {}
    value, text = _lab_result(obs)
    unit = q.get("unit") or q.get("code") or ""
    rr = (obs.get("referenceRange") or [{}])[0]
    low, high, rtext = _lab_range(rr)
    if not unit:
        unit = (rr.get("low") or {}).get("unit") or (rr.get("high") or {}).get("unit") or ""
    return LabValue(value, text, unit, low, high, rtext, _lab_flag(obs, value, low, high))


@dataclass
class LabPoint:
    when: str
    value: float | None
    text: str
    flag: str
    source: str
    delta: str = ""      # change from the previous numeric result, e.g. "+12 (+10%)"


@dataclass
class LabTest:
    key: str
    name: str
    unit: str
    range_text: str
    low: float | None
    high: float | None
    group: str
    points: list[LabPoint] = field(default_factory=list)
    by_day: dict[str, LabPoint] = field(default_factory=dict)

    @property
    def numeric(self) -> list[LabPoint]:
        return [p for p in self.points if p.value is not None]


@dataclass
class LabTable:
    dates: list[str]          # YYYY-MM-DD, newest first (the newest result is the first column)
    tests: list[LabTest]


def lab_key(obs: dict) -> str:
    for c in (obs.get("code") or {}).get("coding") or []:
        if c.get("code"):
            return f"{c.get('system', '')}|{c['code']}"
    return "text|" + fv.cc_text(obs.get("code"))


def lab_table(resources: list[dict]) -> LabTable:
    groups: dict[str, str] = {}
    for r in resources:
        if r.get("resourceType") == "DiagnosticReport":
            for ref in r.get("result") or []:
                rid = str(ref.get("reference") or "").rsplit("/", 1)[-1]
                groups[rid] = fv.cc_text(r.get("code"))
    tests: dict[str, LabTest] = {}
    dates: set[str] = set()
    for r in resources:
        if r.get("resourceType") != "Observation" or category_of(r) != "lab-results":
            continue
        v = lab_value(r)
        when = fv.when(r)
        key = lab_key(r)
        t = tests.get(key)
        if t is None:
            t = tests[key] = LabTest(key, fv.cc_text(r.get("code")) or key, v.unit, v.range_text,
                                     v.low, v.high, groups.get(str(r.get("id")), ""))
        t.unit = t.unit or v.unit
        t.range_text = t.range_text or v.range_text
        t.low = t.low if t.low is not None else v.low
        t.high = t.high if t.high is not None else v.high
        p = LabPoint(when, v.value, v.text, v.flag, origin(r).path)
        t.points.append(p)
        d = fv.day(when)
        if d:
            dates.add(d)
            prev = t.by_day.get(d)
            if prev is None or prev.when <= when:
                t.by_day[d] = p
    for t in tests.values():
        _set_deltas(t)
    ordered = sorted(tests.values(), key=lambda t: (t.group, t.name))
    return LabTable(sorted(dates, reverse=True), ordered)


def _set_deltas(t: LabTest) -> None:
    """Sort a test's results by time and give each numeric one its change from the previous."""
    t.points.sort(key=lambda p: p.when)
    before: float | None = None
    for p in t.points:
        if p.value is not None:
            if before is not None:
                d = p.value - before
                pct = f" ({d / before * 100:+.0f}%)" if before else ""
                p.delta = f"{d:+.6g}{pct}"
            before = p.value


@dataclass
class LabPage:
    """One page of the cumulative table: ``dates`` newest first, starting ``start`` dates back."""
    dates: list[str]
    start: int
    total: int
    size: int

    @property
    def older(self) -> int | None:
        return self.start + self.size if self.start + self.size < self.total else None

    @property
    def newer(self) -> int | None:
        return max(0, self.start - self.size) if self.start > 0 else None

    def omitted_in_print(self, fit: int) -> int:
        """Dates of the whole chart not on paper when this page prints its ``fit`` newest."""
        return self.total - min(fit, len(self.dates))


def lab_page(table: LabTable, start: int = 0, size: int = 10) -> LabPage:
    start = max(0, min(start, max(0, len(table.dates) - 1)))
    return LabPage(table.dates[start:start + size], start, len(table.dates), size)


# --- drug search, receipts, per-date ----------------------------------------------------------

def drug_search(resources, query: str, today: date) -> list[Row] | None:
    """Prescriptions and injections whose drug names contain the query after normalisation;
    None when the query is shorter than 3 characters (after normalisation)."""
    key = search_key(query or "")
    if len(key) < 3:
        return None
    view = PatientView.of(resources, today)
    hits: list[Row] = []
    for cat in ("prescriptions", "injections", "administrations"):
        for row in view.rows(cat):
            if any(key in search_key(t) for t in fv.medication_search_texts(row.res or {})):
                hits.append(replace(row, cells=[cat] + row.cells))
    hits.sort(key=lambda r: r.date, reverse=True)
    return hits


# 診療識別 (UKE SI/IY/TO column 2) in words
RECEIPT_CATEGORIES = {
    "11": "初診", "12": "再診", "13": "医学管理", "14": "在宅", "21": "内服", "22": "屯服",
    "23": "外用", "24": "調剤", "25": "処方", "26": "麻毒", "27": "調基", "28": "その他投薬",
    "31": "皮下筋肉内注射", "32": "静脈内注射", "33": "その他注射", "40": "処置", "50": "手術",
    "54": "麻酔", "60": "検査・病理", "70": "画像診断", "80": "その他", "90": "入院基本料",
    "92": "特定入院料", "97": "食事療養",
}


@dataclass
class ReceiptMonth:
    month: str
    claims: list[dict]


def _claim_items(r: dict) -> list[dict]:
    """Each billed item of a Claim in words: 診療識別, name, quantity, points."""
    items = []
    for it in r.get("item") or []:
        cat = fv.cc_text(it.get("category"))
        items.append({"category": f"{RECEIPT_CATEGORIES[cat]} ({cat})" if cat in RECEIPT_CATEGORIES else cat,
                      "name": fv.cc_text(it.get("productOrService")),
                      "quantity": fv.quantity(it.get("quantity")),
                      "net": fv.fmt_num((it.get("net") or {}).get("value"))})
    return items


def _claim_diagnoses(r: dict) -> list[str]:
    return [fv.cc_text(d.get("diagnosisCodeableConcept")) or
            (d.get("diagnosisReference") or {}).get("display", "")
            for d in r.get("diagnosis") or []]


def _claim_entry(r: dict, key: str) -> dict | None:
    """One Claim as the receipts page lists it, None when the search ``key`` matches nothing in it;
    with a key only the matching items are listed (all when only a diagnosis matched)."""
    items = _claim_items(r)
    diags = _claim_diagnoses(r)
    texts = [i["name"] for i in items] + [i["category"] for i in items] + diags
    if key and not any(key in search_key(t) for t in texts if t):
        return None
    if key:
        items = [i for i in items if key in search_key(i["name"]) or key in search_key(i["category"])] or items
    ctype = (fv.codes_of(r.get("type")) or [fv.cc_text(r.get("type"))])[0]
    return {"id": r.get("id"), "type": Term("claim-type", ctype) if ctype else "",
            "diagnoses": [d for d in diags if d], "items": items,
            "total": fv.fmt_num((r.get("total") or {}).get("value")),
            "source": origin(r).path}


def receipts(resources: list[dict], query: str = "") -> list[ReceiptMonth]:
    key = search_key(query or "")
    months: dict[str, list[dict]] = defaultdict(list)
    for r in resources:
        if r.get("resourceType") != "Claim":
            continue
        entry = _claim_entry(r, key)
        if entry is not None:
            months[fv.when(r)[:7] or "?"].append(entry)
    return [ReceiptMonth(m, months[m]) for m in sorted(months, reverse=True)]


def on_date(resources, day_iso: str, today: date) -> dict[str, list[Row]]:
    """Everything of one 診療日 by category (by the date folder, else the resource's own date)."""
    view = PatientView.of(resources, today)
    out: dict[str, list[Row]] = {}
    for cat in CATEGORIES:
        picked = [row for row in view.rows(cat)
                  if row.res is not None
                  and (origin(row.res).day or fv.day(fv.when(row.res))) == day_iso]
        if picked:
            out[cat] = picked
    return out


class PatientView:
    """One patient's resources sorted into categories once, with rows built on demand and kept
    (the viewer caches a view for a few seconds, so moving between tabs does not redo work)."""

    def __init__(self, resources: list[dict], today: date, last_data_date: str | None = None) -> None:
        self.resources = resources
        self.today = today
        self.by_cat: dict[str, list[dict]] = {c: [] for c in CATEGORIES}
        for r in resources:
            c = category_of(r)
            if c:
                self.by_cat[c].append(r)
        self._rows: dict[str, list[Row]] = {}
        self._meds = None
        from ..services.medication_summary import last_data_date as _last
        self.last_data_date = last_data_date or _last(resources)
        # "running" is judged at the chart's newest data date: the backup is behind today
        self.ref = fv.parse_day(self.last_data_date) or today

    @classmethod
    def of(cls, resources, today: date) -> "PatientView":
        return resources if isinstance(resources, PatientView) else cls(resources, today)

    def rows(self, cat: str) -> list[Row]:
        rows = self._rows.get(cat)
        if rows is None:
            rows = self._rows[cat] = rows_for(cat, self.by_cat[cat], self.ref)
        return rows

    def counts(self) -> dict[str, int]:
        return {c: sum(1 for r in rs if not (c == "lab-results"
                                               and r.get("resourceType") == "DiagnosticReport"))
                for c, rs in self.by_cat.items()}

    def active_rows(self, cat: str) -> list[Row]:
        """Active prescriptions/conditions only (the summary), without building past rows."""
        if cat in self._rows:
            return [r for r in self._rows[cat] if r.status == "active"]
        if cat in ("prescriptions", "injections"):
            live = [r for r in self.by_cat[cat] if r.get("resourceType") == "MedicationRequest"
                    and is_active_med(r, self.ref)]
            return [r for r in rows_for(cat, live, self.ref) if r.status == "active"]
        return [r for r in self.rows(cat) if r.status == "active"]

    def med_summary(self):
        """Last-known medication at the chart's newest data date (service layer, cached)."""
        if self._meds is None:
            from ..services.medication_summary import medication_summary
            self._meds = medication_summary(self.by_cat["prescriptions"] + self.by_cat["injections"],
                                            as_of=self.last_data_date or None)
        return self._meds

    def latest_labs(self) -> tuple[str, list[Row]]:
        """The most recent lab day and its results, without building every lab row."""
        obs = [r for r in self.by_cat["lab-results"] if r.get("resourceType") == "Observation"]
        if not obs:
            return "", []
        last = max(fv.day(fv.when(r)) for r in obs)
        return last, rows_for("lab-results", [r for r in obs if fv.day(fv.when(r)) == last],
                              self.today)


def category_counts(resources: list[dict]) -> dict[str, int]:
    counts = dict.fromkeys(CATEGORIES, 0)
    for r in resources:
        c = category_of(r)
        if c and not (c == "lab-results" and r.get("resourceType") == "DiagnosticReport"):
            counts[c] += 1
    return counts


def today_jst() -> date:
    from datetime import timezone
    return datetime.now(timezone(timedelta(hours=9))).date()
