"""``fhir-gateway synth``: generate the synthetic hospital (demo, tests, benchmarks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth", help="generate a synthetic SS-MIX2 hospital (storage, extended storage, receipts)",
        description="Write a deterministic synthetic hospital: SS-MIX2 standardized storage in --out, "
                    "extended storage and monthly UKE receipts beside it.")
    p.add_argument("--out", required=True, type=Path,
                   help="standardized-storage root to create (DIR/<id[0:3]>/<id[3:6]>/<id>/...)")
    p.add_argument("--patients", required=True, type=int, help="number of patients")
    p.add_argument("--seed", type=int, default=1, help="random seed (same seed, same bytes)")
    p.add_argument("--years", type=int, default=10, help="years of history (default 10)")
    p.add_argument("--facility", default="1310000017", help="10-digit 医療機関コード")
    p.add_argument("--messy", type=float, default=0.0, metavar="RATE",
                   help="inject real-world defects into this fraction of files (writes a manifest)")
    p.add_argument("--manifest", type=Path, default=None,
                   help="defect manifest path (default DIR-messy.json)")
    p.add_argument("--receipts-out", type=Path, default=None, help="UKE folder (default DIR-receipts)")
    p.add_argument("--extended-out", type=Path, default=None,
                   help="extended-storage root (default DIR-extended)")
    p.add_argument("--masters-out", type=Path, default=None,
                   help="基本マスター CSV files for the billed codes (default DIR-masters)")
    p.add_argument("--heavy-patient", action="store_true",
                   help="add patient 9000000001 with ~3,000 files over 10 years (benchmarks)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a TTY")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fhir_gateway.synth import Options, generate

    # a hospital of 0 patients is a typo, not a demo (the heavy patient alone is one)
    least = 0 if args.heavy_patient else 1
    if args.patients < least or args.years < 1 or not 0 <= args.messy <= 1 or args.workers < 0:
        print(f"synth: --patients >= {least}, --years >= 1, 0 <= --messy <= 1 and --workers >= 0 "
              "are required", file=sys.stderr)
        return 2
    if not args.facility.isdigit() or len(args.facility) != 10:
        print("synth: --facility must be a 10-digit 医療機関コード", file=sys.stderr)
        return 2
    out = args.out
    if out.exists() and not out.is_dir():
        print(f"synth: {out} is not a folder", file=sys.stderr)
        return 2
    if args.manifest is not None and args.manifest.is_dir():
        print(f"synth: --manifest {args.manifest} is a folder; give a file name", file=sys.stderr)
        return 2
    if out.exists() and any(out.iterdir()):
        print(f"synth: {out} is not empty; remove it first (the generator never mixes runs)",
              file=sys.stderr)
        return 2
    summary = generate(Options(
        out=out, patients=args.patients, seed=args.seed, years=args.years, facility=args.facility,
        messy=args.messy, receipts_out=args.receipts_out, extended_out=args.extended_out,
        manifest=args.manifest, heavy_patient=args.heavy_patient, workers=args.workers,
        progress=False if args.no_progress else None))
    for line in summary.lines():
        print(line)
    from fhir_gateway.synth.masters import write_masters
    masters = args.masters_out or out.with_name(out.name + "-masters")
    written = write_masters(masters)
    print(f"name masters: {masters}  ({len(written)} files; `fhir-gateway masters import {masters}`)")
    return 0
