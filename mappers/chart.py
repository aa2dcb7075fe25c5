"""The patient-level view: what only a patient's whole set of resources can say.

A mapper sees one message.  Some facts need several: an admission (ADT-22) closes when its
discharge (ADT-52) arrives, a leave (ADT-31) ends with the return (ADT-32), a cancel event
(A11/A13/A53 ...) written as its own record withdraws the event it cancels, and the same
allergy arrives in ADT-61, ADT-00 and every order's AL1.  :func:`assemble` works these out over
the mapped resources of one patient.  Pure: it never changes the dicts it is given (they are
shared by the mapped-file cache); a changed resource is a copy.  The service layer calls it
when it gathers a patient's resources.

A plan (ADT-21 入院予定, ADT-51 退院予定, ADT-41 転科転棟予定) that was carried out takes the
status of the event that carried it out.

Pairing rule (admission ↔ discharge, leave ↔ return): the visit number (PV1-19, the
``visit-number`` identifier) when both carry one; else the admission time (PV1-44,
``period.start``) when both carry one; else the nearest earlier open event.
"""

from __future__ import annotations

from . import terminology as term
from .embedded import dedupe_allergies, allergen_key

# On the AllergyIntolerance kept for an allergen: the files of the copies it stands for.
EXT_ALSO_RECORDED = term.LOCAL_EXT + "also-recorded-in"

# (opening data type, closing data type)
PAIRS = (("ADT-22", "ADT-52"), ("ADT-31", "ADT-32"))
# (plan, the event that carries it out): a plan that happened takes the event's status (an
# admission plan is in-progress while the patient is in, finished after the discharge), an
# unrealised plan stays planned, a cancelled one cancelled.  Paired by visit number, else time.
PLANS = (("ADT-21", "ADT-22"), ("ADT-51", "ADT-52"), ("ADT-41", "ADT-42"))
_VISIT = "/visit-number"


def _dtype(r: dict) -> str:
    parts = r.get("meta", {}).get("source", "").split("/")
    return parts[-2] if len(parts) >= 2 else ""


def _visit(r: dict) -> str:
    for ident in r.get("identifier", []):
        if ident.get("system", "").endswith(_VISIT):
            return ident.get("value", "")
    return ""


def _start(r: dict) -> str:
    return r.get("period", {}).get("start", "")


def _time(r: dict) -> str:
    """When the event happened: its end, start, or the file's time."""
    p = r.get("period", {})
    return p.get("end") or p.get("start") or r.get("meta", {}).get("lastUpdated", "")


def _match(closing: dict, opens: list[dict]) -> dict | None:
    visit, start = _visit(closing), _start(closing)
    if visit:
        same = [o for o in opens if _visit(o) == visit]
        if same:
            return same[-1]
    if start:
        same = [o for o in opens if _start(o) == start and not (visit and _visit(o))]
        if same:
            return same[-1]
    when = _time(closing)
    earlier = [o for o in opens if not (visit and _visit(o)) and (not when or _time(o) <= when)]
    return earlier[-1] if earlier else None


def close_encounters(encounters: list[dict]) -> dict[int, dict]:
    """Replacement Encounters (by position in ``encounters``) for closed and cancelled events."""
    out: dict[int, dict] = {}
    by_type: dict[str, list[int]] = {}
    for i, e in enumerate(encounters):
        by_type.setdefault(_dtype(e), []).append(i)
    for open_t, close_t in PAIRS:
        opened = sorted(by_type.get(open_t, []), key=lambda i: _time(encounters[i]))
        closing = sorted(by_type.get(close_t, []), key=lambda i: _time(encounters[i]))
        cancels = [i for i in opened if encounters[i].get("status") == "cancelled"]
        live = [i for i in opened if encounters[i].get("status") != "cancelled"]
        # a cancel event written as its own record withdraws the event it names
        for c in cancels:
            hit = _match(encounters[c], [encounters[i] for i in live])
            if hit is not None:
                i = next(i for i in live if encounters[i] is hit)
                e = dict(out.get(i, encounters[i]))
                e["status"] = "cancelled"
                out[i] = e
                live.remove(i)
        done: set[int] = set()
        for c in closing:
            end = encounters[c]
            if end.get("status") == "cancelled":  # a cancelled discharge closes nothing
                continue
            candidates = [i for i in live if i not in done]
            hit = _match(end, [encounters[i] for i in candidates])
            if hit is None:
                continue
            i = next(i for i in candidates if encounters[i] is hit)
            done.add(i)
            out[i] = _closed(out.get(i, encounters[i]), end, close_t)
    for plan_t, real_t in PLANS:
        reals = [i for i in by_type.get(real_t, []) if encounters[i].get("status") != "cancelled"]
        for p in by_type.get(plan_t, []):
            plan = encounters[p]
            if plan.get("status") != "planned":
                continue
            visit, start = _visit(plan), _start(plan)
            hit = next((i for i in reals if visit and _visit(encounters[i]) == visit), None)
            if hit is None and start and not visit:
                hit = next((i for i in reals if _start(encounters[i]) == start), None)
            if hit is not None:
                e = dict(out.get(p, plan))
                e["status"] = out.get(hit, encounters[hit]).get("status", "finished")
                out[p] = e
    return out


def _closed(opening: dict, end: dict, close_t: str) -> dict:
    e = dict(opening)
    e["status"] = "finished"
    when = end.get("period", {}).get("end") or end.get("period", {}).get("start") \
        or end.get("meta", {}).get("lastUpdated")
    if when and close_t == "ADT-52":
        period = dict(e.get("period", {}))
        period["end"] = when
        e["period"] = period
    disposition = end.get("hospitalization", {}).get("dischargeDisposition")
    if disposition:
        hosp = dict(e.get("hospitalization", {}))
        hosp["dischargeDisposition"] = disposition
        e["hospitalization"] = hosp
    if close_t == "ADT-32" and when and e.get("location"):  # the leave ends with the return
        locs = []
        for loc in e["location"]:
            loc = dict(loc)
            loc["status"] = "completed"
            loc["period"] = {**loc.get("period", {}), "end": when}
            locs.append(loc)
        e["location"] = locs
    return e


def assemble(resources: list[dict]) -> tuple[list[int], dict[int, dict]]:
    """(positions to keep, replacements by position) for one patient's resources."""
    enc_pos = [i for i, r in enumerate(resources) if r.get("resourceType") == "Encounter"]
    replaced = {enc_pos[j]: e for j, e in
                close_encounters([resources[i] for i in enc_pos]).items()}
    allergies = [r for r in resources if r.get("resourceType") == "AllergyIntolerance"]
    if len(allergies) <= 1:
        return list(range(len(resources))), replaced
    kept = {id(r) for r in dedupe_allergies(allergies)}
    keep = [i for i, r in enumerate(resources)
            if r.get("resourceType") != "AllergyIntolerance" or id(r) in kept]
    # the kept resource names the files of the copies it replaces: nothing is lost silently
    dropped: dict[tuple, list[str]] = {}
    for r in allergies:
        if id(r) not in kept:
            dropped.setdefault(allergen_key(r), []).append(r.get("meta", {}).get("source", ""))
    for i in keep:
        r = resources[i]
        if r.get("resourceType") == "AllergyIntolerance" and allergen_key(r) in dropped:
            r = dict(r)
            r["extension"] = list(r.get("extension", [])) + [
                {"url": EXT_ALSO_RECORDED, "valueString": src}
                for src in dropped[allergen_key(r)] if src]
            replaced[i] = r
    return keep, replaced
