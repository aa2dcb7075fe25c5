"""``fhir-gateway index``: build or refresh the cross-patient Patient index.

Exit 0 = done, 1 = skipped (storage unreadable), 2 = usage error.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "index", help="build or refresh the Patient search index (incremental by default)",
        description="Index every patient's demographics (current ADT-00) for cross-patient "
                    "Patient search.  By default only patients whose folders changed since the "
                    "last run are re-read (directory mtimes); --rebuild re-reads everything. "
                    "The index lives in DATA_DIR/index/FACILITY; a running server sees the "
                    "result at once.  With receipts folders, the receipt index "
                    "(DATA_DIR/receipts/FACILITY.sqlite3) is refreshed too (files whose size "
                    "or mtime changed).")
    p.add_argument("--config", metavar="FILE", help="TOML config (every facility, or --facility)")
    p.add_argument("--storage", action="append", default=[], metavar="PATH",
                   help="storage root; repeat for mirrors (primary first)")
    p.add_argument("--facility", metavar="CODE",
                   help="facility code (with --storage; selects one facility from --config)")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default: the config's, else ./data)")
    p.add_argument("--rebuild", action="store_true", help="re-read every patient")
    p.add_argument("--backend", choices=("whoosh", "postgresql"),
                   help="index backend (default: the config's [index] backend).  "
                        "--backend postgresql with an embedded index present copies it into "
                        "PostgreSQL (no storage re-read), then refreshes incrementally")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a TTY")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fhir_gateway.config import ConfigError, from_args, load
    from fhir_gateway.index.backends import open_index
    from fhir_gateway.index.receipts import ReceiptIndex

    try:
        if args.config:
            if args.storage:
                raise ConfigError("use either --config or --storage")
            cfg = load(args.config)
            if args.data_dir:
                cfg.data_dir = Path(args.data_dir).resolve()
        elif args.storage:
            from fhir_gateway.facility_codes import facility_for
            cfg = from_args(args.storage, facility_for(args.storage, [], args.facility),
                            data_dir=args.data_dir)
        else:
            raise ConfigError("give --config FILE or --storage PATH")
    except ConfigError as exc:
        print(f"fhir-gateway index: {exc}", file=sys.stderr)
        return 2
    codes = list(cfg.facilities)
    if args.config and args.facility:
        if args.facility not in cfg.facilities:
            print(f"fhir-gateway index: facility {args.facility} is not in {args.config}",
                  file=sys.stderr)
            return 2
        codes = [args.facility]
    progress = not args.no_progress and sys.stderr.isatty()
    backend = args.backend or cfg.index.backend
    if backend == "postgresql" and not cfg.index.dsn:
        print("fhir-gateway index: --backend postgresql needs [index] dsn in --config "
              "(or FHIR_GATEWAY_DSN)", file=sys.stderr)
        return 2
    status = 0
    for code in codes:
        try:
            idx = open_index(cfg, code, backend)
            if backend == "postgresql" and args.backend and not args.rebuild:
                from fhir_gateway.scale.migrate import migrate_embedded
                moved = migrate_embedded(cfg, code, idx)
                if moved is not None:
                    print(f"{code}: copied {moved} patients from the embedded index")
            stats = idx.build(progress) if args.rebuild else idx.refresh(progress)
        except Exception as exc:  # database down, schema too old: one line, not a traceback
            if type(exc).__module__.split(".")[0] not in ("psycopg", "fhir_gateway"):
                raise
            print(f"fhir-gateway index: {code}: {exc}", file=sys.stderr)
            return 1
        print(f"{code}: {stats.line()}")
        if stats.skipped:
            status = 1
        idx.close()
        receipts = cfg.facilities[code].receipts
        if receipts:
            rix = ReceiptIndex(cfg.data_dir, code, receipts)
            rstats = rix.refresh(full=args.rebuild)
            print(f"{code}: {rstats.line()}")
            rix.close()
    return status
