"""The export stream's own work (listing, reading, extended storage) against the whole stream
of the same patients measured in the same run (the share is the figure to read on a shared
machine).

    .venv/bin/python bench/bench_stream_parts.py --hospital /tmp/perf17/h2000 [--from 0]
        [--patients 200] [--code DIR]

What ``fhir_gateway.services.stream.patient_stream`` runs for each patient, in this process,
OS cache warm (every file of the patients read once first), garbage collector set as in the
export's mapping processes:

* **whole stream** (the same-run baseline): list, read, decode, parse and map every current
  file, the chart-level steps, the extended storage's documents and vital signs;
* **without mapping**: the same with ``map_message`` answering nothing - listing the ~100
  folders of a chart, reading each file (``storage.reader.ReadAhead``: announced to the kernel
  only when not cached), decoding and parsing it, plus the extended storage;
* **extended storage** alone: ``ExtendedSource.for_patient`` (listing content folders, reading
  and hashing their files, DocumentReferences and vital-sign Observations).

Best of ``--repeat`` runs of each (CPU time).  ``--code DIR`` imports the gateway from another
checkout (an older commit), to compare code in one session.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from inprocess import best, hospital_service, parse_args



def _warm(root: Path, pids: list[str]) -> None:
    for pid in pids:
        for top in ("ssmix2", "extended"):
            for dirpath, _, names in os.walk(root / top / pid[:3] / pid[3:6] / pid):
                for name in names:
                    with open(os.path.join(dirpath, name), "rb") as fh:
                        fh.read()


def main() -> None:
    args = parse_args(__doc__, start=0, patients=200, repeat=5)

    import fhir_gateway.services.readmap as readmap
    from fhir_gateway.services.stream import patient_stream

    root = args.hospital
    svc, pids = hospital_service(args)
    _warm(root, pids)
    try:  # as the export's mapping processes (an older checkout may not set it)
        from fhir_gateway.bulk.export import CHILD_GC_THRESHOLDS
        gc.freeze()
        gc.set_threshold(*CHILD_GC_THRESHOLDS)
    except ImportError:
        pass

    def stream() -> int:
        n = 0
        for pid in pids:
            for resources, _ in patient_stream(svc, pid):
                n += len(resources)
        return n

    def unmapped() -> int:
        real = readmap.map_message
        readmap.map_message = lambda message, ctx: []
        try:
            return stream()
        finally:
            readmap.map_message = real

    def extended() -> int:
        return sum(len(svc.extended.for_patient(pid, None, keep=False).resources)
                   for pid in pids)

    n_all, t_all = best(stream, args.repeat)
    _, t_un = best(unmapped, args.repeat)
    n_ext, t_ext = best(extended, args.repeat)
    per = 1e3 / len(pids)
    print(f"code {args.code.resolve()}  patients {args.start}..{args.start + len(pids)} of {root}")
    print(f"whole stream (baseline)     {n_all:>8,} resources {t_all:7.3f} CPU-s "
          f"{t_all * per:6.2f} ms/patient  {n_all / t_all:>9,.0f} per CPU-s")
    print(f"without mapping             {'':>18} {t_un:7.3f} CPU-s {t_un * per:6.2f} ms/patient  "
          f"{t_un / t_all:.1%} of the stream")
    print(f"  extended storage alone    {n_ext:>8,} resources {t_ext:7.3f} CPU-s "
          f"{t_ext * per:6.2f} ms/patient  {t_ext / t_all:.1%} of the stream")
    print(f"  listing + reading (+decode/parse) {'':>10} {t_un - t_ext:7.3f} CPU-s "
          f"{(t_un - t_ext) * per:6.2f} ms/patient  {(t_un - t_ext) / t_all:.1%} of the stream")


if __name__ == "__main__":
    main()
