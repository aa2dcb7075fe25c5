"""Disaster drills: prove that a backup of SS-MIX2 storage is complete and readable.

``fhir-gateway check`` (``fhir_gateway/commands/check.py``) drives :func:`drill`; the modules are
small on purpose: ``scan`` walks the tree, ``worker`` checks patients in worker processes,
``chains`` checks condition flags, ``run`` merges results and computes freshness, ``manifest``
compares replicas, ``receipts`` checks UKE files, ``diff`` compares with the previous drill,
``report``/``html`` write the evidence.  See docs/drills.md.
"""

from __future__ import annotations

from fhir_gateway.config import Facility

from .manifest import compare, default_cache_dir
from .receipts import check_receipts
from .report import finish
from .run import CheckOptions, FacilityRun, check_storage


def drill(facilities: list[Facility], opts: CheckOptions) -> tuple[dict, list[FacilityRun]]:
    """Check every facility; return the report (without per-file digests) and the runs, whose
    spools :func:`report.write_json` streams into the JSON output."""
    runs: list[FacilityRun] = []
    replicas: dict[str, dict] = {}
    receipts: dict[str, dict] = {}
    cache_dir = opts.cache_dir or default_cache_dir()
    for fac in facilities:
        run = check_storage(fac, opts)
        runs.append(run)
        if len(fac.storage) > 1:
            replicas[fac.code] = compare(list(fac.storage), cache_dir)
        if fac.receipts:
            receipts[fac.code] = check_receipts(list(fac.receipts), run.report["_patient_ids"])
    return finish(runs, opts, replicas, receipts), runs


__all__ = ["drill", "CheckOptions"]
