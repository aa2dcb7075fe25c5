"""A one-patient ``_sort`` search of the heavy chart, in process: CPU and traced memory of the
first page (the chart's sort order is built) and of later pages (only their days are mapped),
against the same search without ``_sort`` (day-paged) in the same run.

Usage::

    .venv/bin/python bench/bench_sorted.py --hospital /tmp/perf17/h2000 [--patient 9000000001]

``--hospital`` is a ``fhir-gateway synth --heavy-patient`` output (``ssmix2/``, ``extended/``,
``receipts/``) served as facility 1312345678 with its data directory ``data/``.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_of(fn):
    """(result, CPU seconds) of ``fn()``."""
    c0 = time.process_time()
    out = fn()
    return out, time.process_time() - c0


def peak_of(fn) -> float:
    """Traced peak MB of ``fn()`` (tracing slows it: its CPU is measured untraced, apart)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return peak


def main(argv: list[str] | None = None) -> int:
    from conformance import registry
    from fhir_gateway.api.providers import ResourceProvider
    from fhir_gateway.config import Facility
    from fhir_gateway.services import FacilityService, MappedCache
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hospital", required=True)
    ap.add_argument("--patient", default="9000000001")
    ap.add_argument("--type", default="Observation")
    ap.add_argument("--cache-mb", type=int, default=16)
    args = ap.parse_args(argv)
    root = Path(args.hospital)
    fac = Facility(code="1312345678", name="bench", storage=(root / "ssmix2",),
                   extended=(root / "extended",), receipts=(root / "receipts",))
    svc = FacilityService(fac, MappedCache(args.cache_mb << 20), root / "data")
    traced = FacilityService(fac, MappedCache(args.cache_mb << 20), root / "data")
    prov = ResourceProvider(registry().get(args.type))
    svc.patient_exists(args.patient)
    traced.patient_exists(args.patient)
    sorted_q = registry().parse(args.type, [("patient", args.patient), ("_sort", "-date"),
                                            ("_count", "50")])
    for offset in (0, 50, 5000):
        (page, total, _), cpu = cpu_of(lambda o=offset: prov.lazy_page(svc, sorted_q, o))
        peak = peak_of(lambda o=offset: prov.lazy_page(traced, sorted_q, o))
        print(f"_sort=-date offset {offset}: {len(page)} of {total}; {cpu * 1000:.0f} ms CPU, "
              f"traced peak {peak:.1f} MB (allocated during the call: the mapped-file cache, at most {args.cache_mb} MB, included)")
    plain = registry().parse(args.type, [("patient", args.patient), ("_count", "50")])
    day, cpu = cpu_of(lambda: svc.patient_search_page(args.type, plain, None))
    peak = peak_of(lambda: traced.patient_search_page(args.type, plain, None))
    print(f"no _sort (day-paged) first page: {len(day.resources) if day else 0}; "
          f"{cpu * 1000:.0f} ms CPU, traced peak {peak:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
