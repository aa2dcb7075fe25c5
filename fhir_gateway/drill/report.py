"""Assemble the drill report and write it as JSON (machine) and HTML (people, Japanese first)."""

from __future__ import annotations

import hashlib
from typing import IO

import orjson

from . import html as html_report
from .diff import diff, iter_digests
from .kinds import ERROR
from .run import CheckOptions, FacilityRun, header, summarize

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def finish(runs: list[FacilityRun], opts: CheckOptions, replicas: dict[str, dict],
           receipts: dict[str, dict]) -> dict:
    """Attach replica/receipt sections, previous-drill diffs and verdicts; return the report."""
    report = header()
    facilities = []
    for run in runs:
        rep = run.report
        rep.pop("_patient_ids", None)
        code = rep["code"]
        if code in replicas:
            rep["replicas"] = replicas[code]
            rep["problems"] += rep["replicas"].pop("problems")
        if code in receipts:
            rep["receipts"] = receipts[code]
            rep["problems"] += rep["receipts"].pop("problems")
        prev = _previous_facility(opts.previous, code)
        if prev is not None and run.spool is not None:
            rep["diff"] = diff(prev, run.spool, rep["counts"])
            rep["diff"]["previous_generated"] = opts.previous.get("generated")  # type: ignore[union-attr]
        rep["summary"] = summarize(rep["problems"])
        rep["verdict"] = "要対応" if rep["summary"]["errors"] else "正常"
        rep["healthy"] = not rep["summary"]["errors"]
        facilities.append(rep)
    report["healthy"] = all(f["healthy"] for f in facilities)
    report["verdict"] = "正常" if report["healthy"] else "要対応"
    report["exit_code"] = EXIT_OK if report["healthy"] else EXIT_PROBLEMS
    report["options"] = {"since": opts.since, "stale_days": opts.stale_days,
                         "structure": opts.structure, "mapping": opts.mapping}
    report["facilities"] = facilities
    return report


def _previous_facility(previous: dict | None, code: str) -> dict | None:
    if not previous:
        return None
    for f in previous.get("facilities", []):
        if f.get("code") == code:
            return f
    return None


def write_json(report: dict, runs: list[FacilityRun], out: IO[bytes]) -> str:
    """Stream the report; each facility's per-file digests come from its spool.  Returns the
    SHA-256 of the bytes written (evidence for the drill record)."""
    h = hashlib.sha256()

    def w(b: bytes) -> None:
        h.update(b)
        out.write(b)

    spools = {r.report["code"]: r.spool for r in runs}
    marker = "@@FILES@@"
    body = dict(report)
    body["facilities"] = [dict(f, digests=f"{marker}{f['code']}") for f in report["facilities"]]
    text = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    pos = 0
    while True:
        i = text.find(b'"' + marker.encode(), pos)
        if i < 0:
            w(text[pos:])
            break
        j = text.index(b'"', i + 1)
        code = text[i + 1 + len(marker):j].decode()
        w(text[pos:i] + b"[")
        spool = spools.get(code)
        first = True
        if spool is not None:
            for d in iter_digests(spool):
                w((b"" if first else b",") + orjson.dumps(d))
                first = False
        w(b"]")
        pos = j + 1
    w(b"\n")
    return h.hexdigest()


def write_html(report: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(html_report.render(report))


__all__ = ["finish", "write_json", "write_html", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "ERROR"]
