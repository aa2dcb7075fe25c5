"""The receipts part of a bulk export, per CPU-second, against the same patients' SS-MIX2 part
measured in the same run (the ratio is the figure to read on a shared machine).

    .venv/bin/python bench/bench_receipt_stream.py --hospital /tmp/perf17/h2000 [--from 300]
        [--patients 100] [--code DIR]

Both parts are what ``fhir_gateway.bulk.export.export_chunk`` runs, in this process, on
chunks of 16 patients, each resource turned into its NDJSON line:

* **receipts** — ``ClaimSource.stream_patients`` (index look-up, byte ranges read once per UKE
  file, receipts mapped, master names), the Claims and Coverages of the chunk's patients;
* **SS-MIX2** (the same-run baseline) — ``services.stream.patient_stream`` of each patient
  (read, decode, parse, map every file of the chart).

Best of ``--repeat`` runs of each (CPU time, OS cache warm after the first), with the garbage
collector set as in the export's mapping processes (start-up objects frozen, rare gen-0).  ``--code DIR``
imports the gateway from another checkout (an older commit), to compare code in one session.
The hospital is ``fhir-gateway synth`` output (``ssmix2/``, ``receipts/``, ``extended/``,
``data/``), as in ``bench/bench_export.py --hospital``.
"""

from __future__ import annotations

import gc

from inprocess import best, hospital_service, parse_args

CHUNK = 16


def main() -> None:
    args = parse_args(__doc__, start=300, patients=100, repeat=4)

    from fhir_gateway.services.stream import patient_stream
    from mappers.serialize import ndjson_line

    root = args.hospital
    svc, pids = hospital_service(args)
    try:  # as the export's mapping processes (an older checkout may not set it)
        from fhir_gateway.bulk.export import CHILD_GC_THRESHOLDS
        gc.freeze()
        gc.set_threshold(*CHILD_GC_THRESHOLDS)
    except ImportError:
        pass
    chunks = [pids[i:i + CHUNK] for i in range(0, len(pids), CHUNK)]

    def receipts() -> int:
        n = 0
        for chunk in chunks:
            for _, resources, _ in svc.claims.stream_patients(chunk):
                for r in resources:
                    ndjson_line(r)
                n += len(resources)
        return n

    def ssmix2() -> int:
        n = 0
        for chunk in chunks:
            for pid in chunk:
                for resources, _ in patient_stream(svc, pid):
                    for r in resources:
                        ndjson_line(r)
                    n += len(resources)
        return n

    n_ss, t_ss = best(ssmix2, args.repeat)
    n_rc, t_rc = best(receipts, args.repeat)
    print(f"code {args.code.resolve()}  patients {args.start}..{args.start + len(pids)} of "
          f"{root}")
    print(f"SS-MIX2 (same-run baseline) {n_ss:>8,} resources {t_ss:7.3f} CPU-s "
          f"{n_ss / t_ss:>9,.0f} per CPU-s")
    print(f"receipts                    {n_rc:>8,} resources {t_rc:7.3f} CPU-s "
          f"{n_rc / t_rc:>9,.0f} per CPU-s")
    print(f"receipts / SS-MIX2 per CPU-second: {(n_rc / t_rc) / (n_ss / t_ss):.2f}; receipts' "
          f"share of the CPU {t_rc / (t_rc + t_ss):.1%} for {n_rc / (n_rc + n_ss):.1%} of the "
          "resources")


if __name__ == "__main__":
    main()
