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

from .jsontypes import Json
from . import terminology as term
from .embedded import AllergenKey, allergen_key, dedupe_allergies

# On the AllergyIntolerance kept for an allergen: the files of the copies it stands for.
EXT_ALSO_RECORDED = term.LOCAL_EXT + "also-recorded-in"

# (opening data type, closing data type)
PAIRS = (("ADT-22", "ADT-52"), ("ADT-31", "ADT-32"))
# (plan, the event that carries it out): a plan that happened takes the event's status (an
# admission plan is in-progress while the patient is in, finished after the discharge), an
# unrealised plan stays planned, a cancelled one cancelled.  Paired by visit number, else time.
PLANS = (("ADT-21", "ADT-22"), ("ADT-51", "ADT-52"), ("ADT-41", "ADT-42"))
# The resource types :func:`assemble` may change or drop: only the whole chart settles them.
CHART_LEVEL = frozenset({"Encounter", "AllergyIntolerance"})
# The data types whose Encounters :func:`close_encounters` may change; others pass unchanged.
EVENT_TYPES = frozenset(t for pair in PAIRS + PLANS for t in pair)
# The segments an AllergyIntolerance is mapped from (ADT-61's IAM, AL1 in any message).
ALLERGY_SEGMENTS = ("AL1", "IAM")
_VISIT = "/visit-number"
# On an Encounter the patient-level view changed: the file (meta.source) of each event that
# changed it.  The changed Encounter is a new version (stored version + 1, lastUpdated of the
# newest such event), so read, vread and _history agree and no stored version changes content.
EXT_CHANGED_BY = term.LOCAL_EXT + "changed-by"


def _dtype(r: Json) -> str:
    parts = r.get("meta", {}).get("source", "").split("/")
    return parts[-2] if len(parts) >= 2 else ""


def _visit(r: Json) -> str:
    for ident in r.get("identifier", []):
        if ident.get("system", "").endswith(_VISIT):
            value: str = ident.get("value", "")
            return value
    return ""


def _start(r: Json) -> str:
    start: str = r.get("period", {}).get("start", "")
    return start


def _time(r: Json) -> str:
    """When the event happened: its end, start, or the file's time."""
    p = r.get("period", {})
    when: str = p.get("end") or p.get("start") or r.get("meta", {}).get("lastUpdated", "")
    return when


def _match(closing: Json, opens: list[Json]) -> Json | None:
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


def _position(encounters: list[Json], among: list[int], closing: Json) -> int | None:
    """The position (one of ``among``) of the open event ``closing`` pairs with (:func:`_match`)."""
    hit = _match(closing, [encounters[i] for i in among])
    return None if hit is None else next(i for i in among if encounters[i] is hit)


def close_encounters(encounters: list[Json]) -> dict[int, Json]:
    """Replacement Encounters (by position in ``encounters``) for closed and cancelled events."""
    out: dict[int, Json] = {}
    causes: dict[int, list[Json]] = {}
    by_type: dict[str, list[int]] = {}
    for i, e in enumerate(encounters):
        by_type.setdefault(_dtype(e), []).append(i)
    for open_t, close_t in PAIRS:
        _close_pair(encounters, by_type, open_t, close_t, out, causes)
    for plan_t, real_t in PLANS:
        _realise_plans(encounters, by_type.get(plan_t, []), by_type.get(real_t, []), out, causes)
    return {i: _next_version(encounters[i], e, causes.get(i, [])) for i, e in out.items()}


def _next_version(stored: Json, view: Json, causes: list[Json]) -> Json:
    """``view`` as the version after ``stored``: versionId + 1, lastUpdated of the newest
    cause, and the causes' files named (``changed-by``)."""
    meta = dict(stored.get("meta", {}))
    vid = str(meta.get("versionId", "1"))
    meta["versionId"] = str(int(vid) + 1) if vid.isdigit() else vid
    times = [str(c.get("meta", {}).get("lastUpdated", "")) for c in causes]
    newest = max(times + [str(meta.get("lastUpdated", ""))])
    if newest:
        meta["lastUpdated"] = newest
    out = dict(view)
    out["meta"] = meta
    sources = dict.fromkeys(str(c.get("meta", {}).get("source", "")) for c in causes)
    out["extension"] = list(view.get("extension", [])) + [
        {"url": EXT_CHANGED_BY, "valueString": src} for src in sources if src]
    return out


def _close_pair(encounters: list[Json], by_type: dict[str, list[int]], open_t: str,
                close_t: str, out: dict[int, Json], causes: dict[int, list[Json]]) -> None:
    """Cancel records withdraw the event they name; each closing event closes one open event."""
    def by_time(dtype: str) -> list[int]:
        return sorted(by_type.get(dtype, []), key=lambda i: _time(encounters[i]))

    opened = by_time(open_t)
    live = [i for i in opened if encounters[i].get("status") != "cancelled"]
    # a cancel event written as its own record withdraws the event it names
    for c in opened:
        if encounters[c].get("status") != "cancelled":
            continue
        i = _position(encounters, live, encounters[c])
        if i is not None:
            e = dict(out.get(i, encounters[i]))
            e["status"] = "cancelled"
            out[i] = e
            causes.setdefault(i, []).append(encounters[c])
            live.remove(i)
    done: set[int] = set()
    for c in by_time(close_t):
        end = encounters[c]
        if end.get("status") == "cancelled":  # a cancelled discharge closes nothing
            continue
        i = _position(encounters, [i for i in live if i not in done], end)
        if i is not None:
            done.add(i)
            out[i] = _closed(out.get(i, encounters[i]), end, close_t)
            causes.setdefault(i, []).append(end)


def _realise_plans(encounters: list[Json], plans: list[int], reals: list[int],
                   out: dict[int, Json], causes: dict[int, list[Json]]) -> None:
    """A planned event carried out (same visit number, else same start) takes the event's status."""
    reals = [i for i in reals if encounters[i].get("status") != "cancelled"]
    for p in plans:
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
            causes.setdefault(p, []).extend([encounters[hit], *causes.get(hit, [])])


def _closed(opening: Json, end: Json, close_t: str) -> Json:
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


def assemble(resources: list[Json]) -> tuple[list[int], dict[int, Json]]:
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
    dropped: dict[AllergenKey | None, list[str]] = {}
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
