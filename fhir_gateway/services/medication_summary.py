"""Last-known medication: what the patient was on at the chart's newest data date.

In a disaster the backup is behind by definition, so "current" cannot be judged against today:
a prescription that ran out yesterday in the backup may be the one the patient still takes.
This module judges every prescription and injection order against the **newest data date of the
chart** (the newest SS-MIX2 date folder, else the newest clinical date) and groups the orders
per Rp (order number + Rp number), ready to be re-issued.

Pure functions over FHIR R4 dicts (JP Core MedicationRequest / MedicationAdministration): no
I/O, so the viewer, the REST API and a later IPS ``$summary`` share one answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from .origin import origin

RP_SYSTEM = "Medication-RPGroupNumber"
LOOKBACK_DAYS = 30
# status words shown to a Japanese clinician (FHIR code -> plain Japanese)
STATUS_JA = {"running": "継続中", "ended": "終了", "stopped": "中止", "on-hold": "保留",
             "completed": "完了", "active": "有効", "cancelled": "取消",
             "entered-in-error": "誤登録", "draft": "下書き", "unknown": "不明"}


@dataclass
class Component:
    """One drug of an order (an injection has several: 1本, 1アンプル …)."""
    name: str
    code: str
    amount: str = ""


@dataclass
class MedLine:
    resource_id: str
    kind: str                      # "prescription" | "injection"
    components: list[Component]
    dose: str
    usage: str                     # timing / 用法 text
    route: str
    method: str
    rate: str
    days: int | None
    start: str                     # YYYY-MM-DD (or YYYY-MM-DD HH:MM for a time window)
    end: str
    state: str                     # running | ended | stopped
    fhir_status: str
    source: str = ""
    site: str = ""
    device: str = ""

    @property
    def drug(self) -> str:
        return " ＋ ".join(c.name for c in self.components)

    @property
    def state_ja(self) -> str:
        return STATUS_JA.get(self.state, self.state)


@dataclass
class RpGroup:
    order: str
    rp: str
    kind: str
    authored: str                  # YYYY-MM-DD
    department: str
    requester: str
    lines: list[MedLine] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return any(line.state == "running" for line in self.lines)

    @property
    def end(self) -> str:
        return max((line.end for line in self.lines if line.end), default="")


@dataclass
class MedicationSummary:
    as_of: str                     # the chart's newest data date, YYYY-MM-DD ('' when no data)
    since: str                     # start of the look-back window
    running: list[RpGroup]
    ended: list[RpGroup]


# --- small readers (the service layer does not import the viewer) ------------------------------

def concept_text(cc) -> str:
    """Human text of a CodeableConcept: its text, else the first display, else the first code
    (the one reader the viewer, this module and the summary documents share)."""
    if not isinstance(cc, dict):
        return ""
    if cc.get("text"):
        return str(cc["text"])
    for c in cc.get("coding") or []:
        if c.get("display"):
            return str(c["display"])
    return next((str(c["code"]) for c in cc.get("coding") or [] if c.get("code")), "")


def _code(cc) -> str:
    return next((str(c["code"]) for c in (cc or {}).get("coding") or [] if c.get("code")), "")


def _num(v) -> str:
    if v is None:
        return ""
    if isinstance(v, Decimal):
        return format(v.normalize() if v == v.to_integral() else v, "f")
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def quantity_text(q) -> str:
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    return f"{_num(q['value'])}{q.get('unit') or q.get('code') or ''}"


def ratio_text(r) -> str:
    """'100ml/時間' from a Ratio."""
    if not isinstance(r, dict):
        return ""
    num, den = quantity_text(r.get("numerator")), r.get("denominator") or {}
    if not num:
        return ""
    unit = den.get("unit") or den.get("code") or ""
    dval = _num(den.get("value"))
    return f"{num}/{'' if dval in ('', '1') else dval}{unit}"


def _contained(res: dict, ref) -> dict | None:
    target = (ref or {}).get("reference") or ""
    if target.startswith("#"):
        return next((c for c in res.get("contained") or [] if c.get("id") == target[1:]), None)
    return None


def components(res: dict) -> list[Component]:
    """Every drug of a MedicationRequest/Administration with its amount (injection mixes)."""
    out: list[Component] = []
    if res.get("medicationCodeableConcept"):
        cc = res["medicationCodeableConcept"]
        out.append(Component(concept_text(cc), _code(cc)))
    med = _contained(res, res.get("medicationReference"))
    if med is None and res.get("medicationReference") and not out:
        out.append(Component(res["medicationReference"].get("display") or "", ""))
    if med:
        for ing in med.get("ingredient") or []:
            cc = ing.get("itemCodeableConcept") or {}
            name = concept_text(cc) or (ing.get("itemReference") or {}).get("display", "")
            amount = quantity_text((ing.get("strength") or {}).get("numerator"))
            if name:
                out.append(Component(name, _code(cc), amount))
        if not out and med.get("code"):
            out.append(Component(concept_text(med["code"]), _code(med["code"])))
    return out


def _day(text: str) -> str:
    return (text or "")[:10]


def _dt(text: str) -> str:
    return text[:16].replace("T", " ") if text and "T" in text else (text or "")[:10]


def _parse(text: str) -> date | None:
    try:
        return date.fromisoformat((text or "")[:10])
    except ValueError:
        return None


def _stated_period(res: dict) -> tuple[str, str, int | None]:
    """(start, end, days) the JP Core extensions state (PeriodOfUse, UsageDuration): on the
    resource first, then on its dosage instructions; the first stated value wins."""
    start = end = ""
    days: int | None = None
    exts = list(res.get("extension") or [])
    for d in res.get("dosageInstruction") or []:
        exts += d.get("extension") or []
    for ext in exts:
        url = ext.get("url") or ""
        if "PeriodOfUse" in url and ext.get("valuePeriod"):
            start = start or ext["valuePeriod"].get("start", "")
            end = end or ext["valuePeriod"].get("end", "")
        if "UsageDuration" in url and (ext.get("valueDuration") or {}).get("value") is not None:
            days = days if days is not None else int(float(ext["valueDuration"]["value"]))
    return start, end, days


def _timing_bounds(res: dict, start: str, end: str, days: int | None) -> tuple[str, str, int | None]:
    """Fill what is still unknown from the dosage timings' boundsPeriod / boundsDuration."""
    for d in res.get("dosageInstruction") or []:
        rep = (d.get("timing") or {}).get("repeat") or {}
        bp = rep.get("boundsPeriod") or {}
        start, end = start or bp.get("start", ""), end or bp.get("end", "")
        bd = rep.get("boundsDuration") or {}
        if bd.get("value") is not None and days is None:
            days = int(float(bd["value"]))
    return start, end, days


def _period(res: dict) -> tuple[str, str, int | None, bool]:
    """(start, end, days, timed): period of use; ``timed`` when it is a same-day time window."""
    start, end, days = _timing_bounds(res, *_stated_period(res))
    esd = (res.get("dispenseRequest") or {}).get("expectedSupplyDuration") or {}
    if esd.get("value") is not None:
        days = int(float(esd["value"]))
    timed = "T" in start and "T" in end and start[:10] == end[:10]
    start = start or res.get("authoredOn", "")
    if not end and start and days:
        s = _parse(start)
        if s:
            end = (s + timedelta(days=max(days - 1, 0))).isoformat()
    if not end and start:
        end = start  # a one-off order (an injection without a window): that day
    return start, end, days, timed


def _rp(res: dict) -> str:
    return next((str(i.get("value")) for i in res.get("identifier") or []
                 if RP_SYSTEM in str(i.get("system") or "")), "")


def _department(res: dict) -> str:
    for ext in res.get("extension") or []:
        if "Department" in (ext.get("url") or ""):
            return concept_text(ext.get("valueCodeableConcept"))
    return ""


def is_injection(res: dict) -> bool:
    prof = " ".join(str(p) for p in (res.get("meta") or {}).get("profile") or [])
    return "Injection" in prof or origin(res).data_type in ("OMP-02", "OMP-12")


def med_line(res: dict, as_of: date | None) -> MedLine:
    """One MedicationRequest as a line, its state judged at ``as_of``."""
    di = (res.get("dosageInstruction") or [{}])[0]
    dose = rate = ""
    for dr in di.get("doseAndRate") or []:
        dose = quantity_text(dr.get("doseQuantity")) or dose
        rate = ratio_text(dr.get("rateRatio")) or quantity_text(dr.get("rateQuantity")) or rate
    usage = concept_text((di.get("timing") or {}).get("code")) or di.get("text") or ""
    start, end, days, timed = _period(res)
    status = str(res.get("status") or "")
    e = _parse(end)
    if status in ("stopped", "cancelled", "entered-in-error"):
        state = "stopped"
    elif e is not None and as_of is not None and e >= as_of:
        state = "running"
    else:
        state = "ended"
    if timed:
        start, end = _dt(start), _dt(end)[11:] or _dt(end)
    else:
        start, end = _day(start), _day(end)
    kind = "injection" if is_injection(res) else "prescription"
    return MedLine(str(res.get("id") or ""), kind, components(res), dose, usage,
                   concept_text(di.get("route")), concept_text(di.get("method")), rate, days, start, end,
                   state, status, str((res.get("meta") or {}).get("source") or ""),
                   concept_text(di.get("site")), _device(di))


def _device(dosage: dict) -> str:
    """投薬装置 (RXR-3): a local extension on R4 Dosage."""
    return "、".join(concept_text(e.get("valueCodeableConcept")) for e in dosage.get("extension") or []
                    if str(e.get("url") or "").endswith("dosage-administration-device"))


@dataclass
class Given:
    """One MedicationAdministration: what was given, when, how and by whom."""
    resource_id: str
    components: list[Component]
    start: str
    end: str
    dose: str
    rate: str
    route: str
    site: str
    method: str
    device: str
    performer: str
    status: str
    source: str = ""

    @property
    def drug(self) -> str:
        return " ＋ ".join(c.name for c in self.components)


def given(res: dict) -> Given:
    d = dict(res.get("dosage") or {})
    if res.get("resourceType") == "Immunization":  # a vaccination: the same facts, other fields
        d = {"dose": res.get("doseQuantity"), "route": res.get("route"), "site": res.get("site")}
    per = res.get("effectivePeriod") or {}
    start = res.get("effectiveDateTime") or per.get("start") or res.get("occurrenceDateTime") or ""
    end = per.get("end") or ""
    if end and end[:10] == start[:10]:
        end = _dt(end)[11:]
    else:
        end = _dt(end)
    performer = "、".join(filter(None, [(p.get("actor") or {}).get("display", "")
                                       for p in res.get("performer") or []]))
    device = "、".join(filter(None, [x.get("display") or "" for x in res.get("device") or []]))
    comps = components(res)
    if not comps and res.get("vaccineCode"):
        comps = [Component(concept_text(res["vaccineCode"]), _code(res["vaccineCode"]))]
    return Given(str(res.get("id") or ""), comps, _dt(start), end,
                 quantity_text(d.get("dose")),
                 ratio_text(d.get("rateRatio")) or quantity_text(d.get("rateQuantity")),
                 concept_text(d.get("route")), concept_text(d.get("site")), concept_text(d.get("method")),
                 device or _device(d), performer, str(res.get("status") or ""),
                 str((res.get("meta") or {}).get("source") or ""))


def last_data_date(resources, file_dates=()) -> str:
    """The chart's newest data date: the newest date folder (from the file list when given, else
    from the resources' ``meta.source``), else the newest clinical date of a medication."""
    best = max((d for d in file_dates if d), default="")
    if len(best) == 8 and best.isdigit():
        best = f"{best[:4]}-{best[4:6]}-{best[6:]}"
    for r in resources:
        d = origin(r).day
        if d > best:
            best = d
    if not best:
        for r in resources:
            if r.get("resourceType") in ("MedicationRequest", "MedicationAdministration"):
                d = _day(r.get("authoredOn") or r.get("effectiveDateTime") or "")
                best = max(best, d)
    return best


def medication_summary(resources, as_of: str | None = None,
                       lookback_days: int = LOOKBACK_DAYS) -> MedicationSummary:
    """Prescriptions and injection orders running at ``as_of`` (default: the chart's newest data
    date) and those that ended within ``lookback_days`` before it, grouped per Rp, newest first.
    Cancelled and entered-in-error orders are left out (they were never given)."""
    as_of = as_of or last_data_date(resources)
    ref = _parse(as_of)
    since = (ref - timedelta(days=lookback_days)).isoformat() if ref else ""
    groups: dict[tuple, RpGroup] = {}
    for r in resources:
        if r.get("resourceType") != "MedicationRequest":
            continue
        if r.get("status") in ("cancelled", "entered-in-error", "draft"):
            continue
        line = med_line(r, ref)
        if ref is not None:
            s = _parse(line.start)
            e = _parse(line.end) or s
            if s is not None and s > ref:
                continue  # after the newest data date: cannot happen unless clocks are off
            if e is not None and e.isoformat() < since:
                continue
        order = str((r.get("groupIdentifier") or {}).get("value") or r.get("id") or "")
        key = (order, _rp(r), line.kind)
        g = groups.get(key)
        if g is None:
            g = groups[key] = RpGroup(order, _rp(r), line.kind, _day(r.get("authoredOn") or line.start),
                                      _department(r), (r.get("requester") or {}).get("display", ""))
        g.lines.append(line)
    for g in groups.values():
        g.lines.sort(key=lambda x: x.resource_id)
    ordered = sorted(groups.values(), key=lambda g: (g.authored, g.order, g.rp.zfill(4)),
                     reverse=True)
    running = [g for g in ordered if g.running]
    return MedicationSummary(as_of, since, running, _ended_only(ordered, running))


def _ended_only(ordered: list[RpGroup], running: list[RpGroup]) -> list[RpGroup]:
    """Ended orders whose drug is not running again (a refill supersedes the old order), each
    drug once (its newest order): the list of what was stopped or ran out."""
    seen = {_drug_key(ln) for g in running for ln in g.lines}
    out: list[RpGroup] = []
    for g in ordered:
        if g.running:
            continue
        keep = []
        for ln in g.lines:
            k = _drug_key(ln)
            if k not in seen:
                seen.add(k)
                keep.append(ln)
        if keep:
            out.append(RpGroup(g.order, g.rp, g.kind, g.authored, g.department, g.requester, keep))
    return out


def _drug_key(line: MedLine) -> tuple:
    return tuple(sorted(c.code or c.name for c in line.components))


def as_dict(summary: MedicationSummary) -> dict:
    """JSON shape for the API (and a later IPS ``$summary``)."""
    def grp(g: RpGroup) -> dict:
        return {"order": g.order, "rp": g.rp, "kind": g.kind, "authored": g.authored,
                "department": g.department, "requester": g.requester,
                "lines": [{"id": ln.resource_id, "drug": ln.drug,
                           "components": [c.__dict__ for c in ln.components], "dose": ln.dose,
                           "usage": ln.usage, "route": ln.route, "rate": ln.rate,
                           "days": ln.days, "start": ln.start, "end": ln.end, "state": ln.state}
                          for ln in g.lines]}
    return {"asOf": summary.as_of, "since": summary.since,
            "running": [grp(g) for g in summary.running],
            "ended": [grp(g) for g in summary.ended]}
