"""``fhir-gateway masters import DIR``: the 基本マスター CSV files into the data directory, so
receipt codes get names (API, viewer, keyword search).  See fhir_gateway/masters.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "masters", help="import the 支払基金 基本マスター (names for receipt codes)",
        description="Read the official 基本マスター CSV files (医薬品 y, 診療行為 s, 特定器材 t, "
                    "傷病名 b, 修飾語 z; CP932) into {data_dir}/masters.sqlite3.")
    sub = p.add_subparsers(dest="masters_cmd", required=True)
    imp = sub.add_parser("import", help="import every master CSV of a folder")
    imp.add_argument("dir", type=Path, help="folder with the master CSV files")
    g = imp.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", type=Path, help="gateway.toml (its data_dir)")
    g.add_argument("--data-dir", type=Path, help="data directory")
    imp.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    from fhir_gateway.masters import KIND_NAMES, MasterError, import_dir
    if args.config is not None:
        from fhir_gateway.config import load
        data_dir = Path(load(args.config).data_dir)
    else:
        data_dir = args.data_dir
    try:
        res = import_dir(args.dir, data_dir)
    except (MasterError, OSError) as exc:
        print(f"masters: {exc}", file=sys.stderr)
        return 2
    for kind, n in sorted(res.kinds.items()):
        print(f"{KIND_NAMES[kind]} ({kind}): {n} codes")
    for line in res.skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"written: {data_dir / 'masters.sqlite3'}  (restart `serve` or wait: it reloads on change)")
    return 0
