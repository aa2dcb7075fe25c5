"""Bundles: searchset and history, with match / include / outcome entries and paging links."""

from __future__ import annotations

import time
from itertools import groupby

from storage.reader import Problem

from .errors import problem_outcome


def base_url(facility: str) -> str:
    from flask import request
    return f"{request.host_url.rstrip('/')}/fhir/{facility}"


def outcome_entries(problems: list[Problem]) -> list[dict]:
    """One ``search.mode = outcome`` entry per broken file."""
    entries = []
    ordered = sorted(problems, key=lambda p: p.path)
    for _path, group in groupby(ordered, key=lambda p: p.path):
        entries.append({"resource": problem_outcome(list(group)),
                        "search": {"mode": "outcome"}})
    return entries


def notes_entry(notes: list[str]) -> dict:
    """The ``search.mode = outcome`` entry that says what the server did not do as asked
    (unknown parameters skipped under lenient handling, ``_count`` capped)."""
    return {"resource": {"resourceType": "OperationOutcome",
                         "issue": [{"severity": "warning", "code": "not-supported",
                                    "diagnostics": n} for n in notes]},
            "search": {"mode": "outcome"}}


def searchset(base: str, matches: list[dict], included: list[dict], problems: list[Problem],
              total: int | None, links: dict[str, str], summary_count: bool = False,
              notes: list[str] | None = None) -> dict:
    b: dict = {"resourceType": "Bundle", "type": "searchset",
               "meta": {"lastUpdated": time.strftime("%Y-%m-%dT%H:%M:%S+09:00",
                                                     time.gmtime(time.time() + 9 * 3600))}}
    if total is not None:
        b["total"] = total
    b["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    if summary_count:
        if notes:
            b["entry"] = [notes_entry(notes)]
        return b
    entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                "search": {"mode": "match"}} for r in matches]
    entries += [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                 "search": {"mode": "include"}} for r in included]
    entries += outcome_entries(problems)
    if notes:
        entries.append(notes_entry(notes))
    if entries:
        b["entry"] = entries
    return b


def history(base: str, versions: list[dict]) -> dict:
    entries = []
    for r in versions:
        url = f"{base}/{r['resourceType']}/{r['id']}"
        entries.append({"fullUrl": url, "resource": r,
                        "request": {"method": "PUT" if r["meta"].get("versionId") != "1"
                                    else "POST", "url": f"{r['resourceType']}/{r['id']}"},
                        "response": {"status": "200 OK",
                                     "etag": f'W/"{r["meta"].get("versionId", "1")}"'}})
    return {"resourceType": "Bundle", "type": "history", "total": len(entries),
            "link": [], "entry": entries}
