"""``fhir-gateway check``: the disaster drill.  Exit 0 = no errors (warnings allowed),
1 = errors found (the report is complete either way), 2 = usage error."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import orjson

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check", help="drill: check that SS-MIX2 storage (and its replicas, receipts) is readable",
        description="Check every file of SS-MIX2 storage: names, folders, decoding, HL7 structure, "
                    "mapping, version chains, counts, freshness; compare replicas; check receipts. "
                    "Exit 0 = no errors, 1 = errors found, 2 = usage error.")
    p.add_argument("--storage", action="append", default=[], metavar="PATH",
                   help="storage root; repeat for mirrors (primary first)")
    p.add_argument("--facility", metavar="CODE", help="facility code (selects one from --config)")
    p.add_argument("--receipts", action="append", default=[], metavar="PATH", help="UKE folder")
    p.add_argument("--extended", action="append", default=[], metavar="PATH",
                   help="extended storage root (recorded in the report)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (all or one facility)")
    p.add_argument("--data-dir", metavar="DIR", help="where the replica hash cache lives "
                   "(default: data_dir of the config, else ~/.cache/fhir-gateway)")
    p.add_argument("--json", action="store_true", help="print the JSON report to stdout")
    p.add_argument("--html", metavar="FILE", help="write the HTML report (Japanese first)")
    p.add_argument("--output", metavar="FILE", help="write the JSON report to a file")
    p.add_argument("--since", metavar="DATE", help="per-file checks only for files dated on or "
                   "after DATE (YYYY-MM-DD or YYYYMMDD); counts and chains stay complete")
    p.add_argument("--previous", metavar="REPORT", help="previous JSON report to compare with")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="processes (default: all cores)")
    p.add_argument("--dask", metavar="tcp://HOST:PORT",
                   help="run the per-patient checks on this Dask scheduler's workers (every "
                        "worker must see the storage at the same path); same report")
    p.add_argument("--dask-local", type=int, default=0, metavar="N",
                   help="start a local Dask cluster of N worker processes for this run")
    p.add_argument("--stale-days", type=int, default=14, metavar="N",
                   help="a data type whose newest file is more than N days behind is stale (14)")
    p.add_argument("--no-structure", action="store_true", help="skip HL7 structure/required-field checks")
    p.add_argument("--no-mapping", action="store_true", help="skip the FHIR mapping check")
    p.set_defaults(func=run)


def _usage(msg: str) -> int:
    print(f"fhir-gateway check: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _is_date(digits: str) -> bool:
    from datetime import datetime
    try:
        datetime.strptime(digits, "%Y%m%d")
    except ValueError:
        return False
    return True


def _is_report(doc) -> bool:
    """The shape ``--previous`` relies on (a report of ``check --json``/``--output``)."""
    facs = doc.get("facilities") if isinstance(doc, dict) else None
    return isinstance(facs, list) and all(
        isinstance(f, dict) and isinstance(f.get("digests", []), list)
        and isinstance(f.get("counts", {}), dict) for f in facs)


def run(args: argparse.Namespace) -> int:
    from fhir_gateway.config import ConfigError, from_args, load

    from fhir_gateway.drill import CheckOptions, drill
    from fhir_gateway.drill.manifest import default_cache_dir
    from fhir_gateway.drill.report import write_html, write_json

    since = None
    if args.since:
        digits = args.since.replace("-", "")
        if not re.fullmatch(r"\d{8}", digits) or not _is_date(digits):
            return _usage(f"--since {args.since!r} is not a date (YYYY-MM-DD)")
        since = digits
    if args.workers < 0:
        return _usage("--workers must be 0 (all cores) or more")
    try:
        if args.config:
            cfg = load(args.config)
            if args.storage:
                return _usage("use either --config or --storage, not both")
            if args.facility:
                fac = cfg.facility(args.facility)
                if fac is None:
                    return _usage(f"facility {args.facility} is not in {args.config}")
                facilities = [fac]
            else:
                facilities = list(cfg.facilities.values())
            data_dir: Path | None = Path(args.data_dir) if args.data_dir else cfg.data_dir
        elif args.storage:
            from fhir_gateway.facility_codes import facility_for
            code = facility_for(args.storage, args.receipts, args.facility)
            cfg = from_args(args.storage, code, args.receipts, args.extended, args.data_dir)
            facilities = list(cfg.facilities.values())
            data_dir = Path(args.data_dir) if args.data_dir else None
        else:
            return _usage("give --storage PATH (repeat for mirrors) or --config FILE")
    except ConfigError as exc:
        return _usage(str(exc))
    previous = None
    if args.previous:
        try:
            previous = orjson.loads(Path(args.previous).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            return _usage(f"cannot read previous report {args.previous}: {exc}")
        if not _is_report(previous):
            return _usage(f"{args.previous} is not a report of fhir-gateway check "
                          "(no facilities with their digests)")
    opts = CheckOptions(workers=args.workers, since=since, stale_days=args.stale_days,
                        structure=not args.no_structure, mapping=not args.no_mapping,
                        previous=previous, cache_dir=default_cache_dir(data_dir),
                        progress=sys.stderr.isatty())
    executor = None
    if args.dask or args.dask_local:
        if args.dask and args.dask_local:
            return _usage("use either --dask or --dask-local")
        if args.dask_local < 0:
            return _usage("--dask-local must be 1 or more")
        try:
            from fhir_gateway.scale.dask_drill import DaskExecutor
            executor = opts.executor = DaskExecutor(args.dask, args.dask_local)
        except (RuntimeError, OSError, TimeoutError) as exc:
            print(f"fhir-gateway check: cannot use the Dask cluster: {exc}", file=sys.stderr)
            return 2
    try:
        report, runs = drill(facilities, opts)
    finally:
        if executor is not None:
            executor.close()
    if args.json:
        out = sys.stdout.buffer
        digest = write_json(report, runs, out)
        out.flush()
        if sys.stderr.isatty():
            print(f"report SHA-256 {digest}", file=sys.stderr)
    if args.output:
        with open(args.output, "wb") as fh:
            write_json(report, runs, fh)
    if args.html:
        write_html(report, args.html)
    if not args.json:
        _print_summary(report)
    for r in runs:
        if r.spool is not None:
            r.spool.close()
    return int(report["exit_code"])


def _print_summary(report: dict) -> None:
    for f in report["facilities"]:
        s = f["summary"]
        print(f"{f['code']} {f['name']}: {f['verdict']} — {f['patients']} patients, {f['files']} "
              f"files, {s['errors']} errors, {s['warnings']} warnings")
        for kind, n in s["by_kind"].items():
            print(f"  {kind}: {n}")
