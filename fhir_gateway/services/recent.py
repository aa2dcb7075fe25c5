"""The recent part of a chart: what a summary shows, without mapping the rest (issue 11 item 10).

In a disaster every chart is cold.  A summary needs the patient-level folder ``-`` (Patient,
problems, allergies), the newest days (recent labs, the last-known medication) and, for
prescriptions, a longer look-back (a 90-day prescription written two months before the last
data date still runs).  SS-MIX2 folder names carry the day, so these are chosen from the
listing and mapped day by day (:class:`.everything.Chart`); nothing else is read.  The full
file list (a listing, no reading) comes along for the data-period and freshness facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from storage.names import NO_DATE
from storage.reader import Problem

from .listing import patient_records

RECENT_DAYS = 30        # labs, injections, documents … of the newest month with data
MEDICATION_DAYS = 120   # prescriptions: long prescriptions still run at the last data date
MEDICATION_TYPES = {"MedicationRequest", "MedicationDispense"}
SMALL_CHART = 60        # files: a chart this small is mapped whole (every read problem shown)


@dataclass
class RecentChart:
    resources: list[dict]
    problems: list[Problem] = field(default_factory=list)
    files: list = field(default_factory=list)   # StoredFile of every current record (listing)
    newest_day: str = ""                         # YYYYMMDD of the newest date folder
    days_mapped: int = 0
    days_total: int = 0


def _cut(newest: str, days: int) -> str:
    d = date(int(newest[:4]), int(newest[4:6]), int(newest[6:]))
    return (d - timedelta(days=days)).strftime("%Y%m%d")


def recent_chart(svc, pid: str, recent_days: int = RECENT_DAYS,
                 medication_days: int = MEDICATION_DAYS) -> RecentChart:
    """The ``-`` folder and the days within ``recent_days`` of the newest data day (all types),
    plus prescriptions within ``medication_days``; receipts and memos are left to their tabs."""
    from .everything import Chart

    def run(storage) -> RecentChart:
        chart = Chart(svc, storage, pid, None, None, None, None)
        records, _ = patient_records(storage, svc.dirs, pid)
        files = [rec.current for rec in records.values() if rec.current is not None]
        # the newest day of stored data (receipts are billed later, memos written now: not data days)
        dated = sorted((d for d in chart.ss_days | chart.ext_days if len(d) == 8 and d.isdigit()),
                       reverse=True)
        newest = dated[0] if dated else ""
        out = RecentChart([], list(chart.extra_problems), newest_day=newest,
                          days_total=len(chart.days))
        if len(files) <= SMALL_CHART:
            recent = set(dated)
        else:
            recent = {d for d in dated if newest and d >= _cut(newest, recent_days)}
        wanted = [d for d in chart.days if d == NO_DATE or d in recent
                  or (len(files) <= SMALL_CHART and d not in chart.receipts)]
        seen: set[tuple[str, str]] = set()
        for d in wanted:
            rs, probs = chart.day(d)
            if d in chart.receipts:  # receipts belong to their tab: drop them here
                rs = tuple(r for r in rs if r.get("resourceType") not in ("Claim", "Coverage"))
            out.resources.extend(rs)
            out.problems.extend(probs)
            seen.update((r.get("resourceType", ""), r.get("id", "")) for r in rs)
        out.days_mapped = len(wanted)
        if newest:
            meds = Chart(svc, storage, pid, MEDICATION_TYPES, None, None, None)
            cut = _cut(newest, medication_days)
            for d in meds.ss_days:
                if len(d) == 8 and d.isdigit() and cut <= d and d not in recent:
                    rs, probs = meds.day(d)
                    out.resources.extend(r for r in rs if (r.get("resourceType", ""), r.get("id", ""))
                                         not in seen and r.get("resourceType") in MEDICATION_TYPES)
                    out.problems.extend(probs)
                    out.days_mapped += 1
        out.files = files
        if len(files) <= SMALL_CHART:
            out.days_mapped = out.days_total  # whole (receipts are their tab's)
        return out

    return svc._with_storage(run)


def newest_data_day(svc, pid: str) -> str:
    """The newest date folder of the standardized and extended storage (listings only)."""
    def run(storage) -> str:
        days = set()
        pdir = storage.patient_dir(pid)
        if pdir is not None:
            days.update(svc.dirs.list(str(pdir))[0])
        for ext in getattr(svc.extended, "roots", ()) if svc.extended else ():
            try:
                days.update(ext.dates(pid))
            except Exception:
                continue
        return max((d for d in days if len(d) == 8 and d.isdigit()), default="")
    return svc._with_storage(run)


def patient_level(svc, pid: str) -> list[dict]:
    """The resources of the patient-level folder ``-`` only (ADT-00 Patient, ADT-61 and ADT-00
    allergies, PPR-01 problems): what the banner of every page needs, without the dated folders
    (AL1 repeated in orders are snapshots of these records)."""
    from .everything import Chart

    def run(storage) -> list[dict]:
        chart = Chart(svc, storage, pid, {"Patient", "AllergyIntolerance"}, None, None, None)
        rs, _ = chart.day(NO_DATE)
        return list(rs)
    return svc._with_storage(run)
