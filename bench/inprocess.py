"""Shared set-up of the in-process hospital benches (bench_receipt_stream, bench_stream_parts):
their command line and the facility service over a hospital made by ``fhir-gateway synth``.

``--code DIR`` puts another checkout first on ``sys.path`` before anything of the gateway is
imported, so one session can compare two versions of the code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
import time
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]


def parse_args(doc: str | None, start: int, patients: int, repeat: int) -> argparse.Namespace:
    """The benches' options (their defaults differ), with ``--code`` already on ``sys.path``."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--hospital", type=Path, required=True)
    ap.add_argument("--from", dest="start", type=int, default=start, help="first patient (index)")
    ap.add_argument("--patients", type=int, default=patients)
    ap.add_argument("--repeat", type=int, default=repeat)
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout to import the gateway from")
    ap.add_argument("--facility", default="1312345678")
    args = ap.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    return args


def hospital_service(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The facility service over ``--hospital`` and the patients ``--from``/``--patients``."""
    from fhir_gateway.config import Facility
    from fhir_gateway.services import FacilityService, MappedCache

    root = args.hospital
    fac = Facility(code=args.facility, name="bench", storage=(root / "ssmix2",),
                   extended=(root / "extended",), receipts=(root / "receipts",))
    svc = FacilityService(fac, MappedCache(32 << 20), root / "data")
    return svc, svc.patient_ids()[args.start:args.start + args.patients]


def best(fn: Callable[[], int], repeat: int) -> tuple[int, float]:
    """(what ``fn`` returns, its least CPU time over ``repeat`` runs)."""
    out = (0, float("inf"))
    for _ in range(repeat):
        c0 = time.process_time()
        n = fn()
        out = (n, min(out[1], time.process_time() - c0))
    return out
