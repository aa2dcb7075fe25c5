"""Parse + map + JSON of SS-MIX2 messages, against a tokenize-only baseline from the same run.

Messages: the OMP-01/02/11/12 and OML-01/11 files of a small synthetic hospital
(``fhir_gateway.synth``, generated into a temporary folder), or hand-written messages modelled
on the guideline samples when the generator is not available.  Everything is held in memory,
so disk speed is not measured.  Decoding ISO-2022-JP belongs to the storage layer and is
reported on its own line (``storage.reader.read_bytes``: decode + tokenize + defect checks).

* baseline: ``storage.hl7.parse`` of the decoded text + splitting every field of every segment
  (the least any mapper must do)
* full: ``storage.hl7.parse`` + ``mappers.map_message`` + ``mappers.serialize.dumps``

One core (a single process, no threads).  Usage::

    .venv/bin/python bench/bench_mappers.py [--patients 40] [--rounds 5] [--types OMP-01,OML-11]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mappers import MapContext, map_message  # noqa: E402
from mappers.serialize import dumps  # noqa: E402
from storage.encoding import decode, encode_iso2022jp  # noqa: E402
from storage.hl7 import parse  # noqa: E402
from storage.names import FileName, parse_name  # noqa: E402
from storage.reader import read_bytes  # noqa: E402

TYPES = ("OMP-01", "OMP-02", "OMP-11", "OMP-12", "OML-01", "OML-11")
FACILITY = "1312345678"

_HEAD = ("MSH|^~\\&|HIS|SEND|GW|RCV|20111220103059||{mt}|1|P|2.5||||||~ISO IR87||ISO2022-1994\r"
         "PID|0001||{pid}^^^^PI||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19700405|M\r"
         "PV1|0001|O|01^^^^^C\r")
_FALLBACK = {
    "OMP-01": "RDE^O11^RDE_O11", "OML-11": "OUL^R22^OUL_R22",
}


def _handwritten(n: int) -> list[tuple[bytes, FileName]]:
    """Guideline-like OMP-01 and OML-11 messages (used when the generator is unavailable)."""
    out = []
    for i in range(n):
        pid = f"{1000000 + i}"
        if i % 2:
            body = _HEAD.format(mt="RDE^O11^RDE_O11", pid=pid) + "".join(
                f"ORC|NW|{i:015d}||{rp}|||||20110701103045|||110^医師^一郎^^^^^^^L^^^^^I|||||01^内科^99XY1\r"
                f"RXE||108665201^ダーゼン錠（５mg)^HOT9|1||TAB^錠^MR9P|||||15|TAB^錠^MR9P||||||||"
                f"3^TAB&錠&MR9P||OHP^外来処方^MR9P~OHI^院内処方^MR9P\r"
                f"TQ1|1||1013044400000000&内服・経口・１日３回朝昼夕食後&JAMISDP01|||5^d|2011070100\r"
                f"RXR|PO^口^HL70162\r" for rp in (1, 1, 2))
            dtype = "OMP-01"
        else:
            body = _HEAD.format(mt="OUL^R22^OUL_R22", pid=pid) + (
                "SPM|1|1||023^血清^JC10|||||||||||||201112191500\r"
                f"OBR|1|{i:015d}||E001^生化学^99O03|||20111219||||||||||||||20111220103059\r"
                f"ORC|SC|{i:015d}|||CM||||20111220103059\r") + "".join(
                f"OBX|{k}|NM|3A010000002327101^総蛋白^JC10||{6 + k / 10}|g/dl^g/dl^99XYZ|6.70-8.3||||F\r"
                for k in range(1, 13))
            dtype = "OML-11"
        name = FileName(pid, "20111220", dtype, f"{i:015d}", "20111220103059000", "01", "1")
        out.append((encode_iso2022jp(body), name))
    return out


def _synthetic(patients: int, types: tuple[str, ...]) -> list[tuple[bytes, FileName]] | None:
    try:
        from fhir_gateway.synth import Options, generate
    except ImportError:
        return None
    tmp = tempfile.mkdtemp(prefix="bench-mappers-")
    generate(Options(out=Path(tmp), patients=patients, years=3, progress=False))
    out = []
    for f in sorted(Path(tmp).rglob("*")):
        if not f.is_file():
            continue
        try:
            name = parse_name(f.name)
        except ValueError:
            continue
        if name.data_type in types:
            out.append((f.read_bytes(), name))
    return out


def baseline(messages: list[tuple[str, FileName]]) -> int:
    fields = 0
    for text, _name in messages:
        msg = parse(text)
        for seg in msg:
            fields += len(seg.fields)
    return fields


def full(messages: list[tuple[str, FileName]]) -> tuple[int, int, int]:
    resources = size = errors = 0
    for text, name in messages:
        try:
            out = map_message(parse(text), MapContext(FACILITY, name.name, name))
        except ValueError:
            errors += 1
            continue
        resources += len(out)
        size += len(dumps(out))
    return resources, size, errors


def reading(stored: list[tuple[bytes, FileName]]) -> int:
    return sum(read_bytes(data, name.name, name).ok for data, name in stored)


def interleaved(fns: list, args: list, rounds: int) -> list[tuple[float, float]]:
    """Best (wall, CPU) seconds of each ``fn(arg)``, the functions alternating every round.

    Alternating means a burst of load from other processes on a shared machine hits the
    baseline and the full run alike, instead of one whole series.  CPU time (this process
    only) is printed too: it is much less sensitive to other processes than wall time.
    """
    wall = [float("inf")] * len(fns)
    cpu = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, (fn, arg) in enumerate(zip(fns, args)):
            c0, t0 = time.process_time(), time.perf_counter()
            fn(arg)
            wall[i] = min(wall[i], time.perf_counter() - t0)
            cpu[i] = min(cpu[i], time.process_time() - c0)
    return list(zip(wall, cpu))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--types", default=",".join(TYPES))
    args = ap.parse_args(argv)
    types = tuple(t for t in args.types.split(",") if t)
    messages = _synthetic(args.patients, types)
    source = f"fhir_gateway.synth ({args.patients} patients)"
    if not messages:
        messages, source = _handwritten(2000), "hand-written guideline-like messages"
    stored = messages
    total_bytes = sum(len(d) for d, _ in stored)
    messages = [(decode(d).text, name) for d, name in stored]
    print(f"python {platform.python_version()} on {platform.machine()}; messages: {len(messages)} "
          f"from {source}, {total_bytes / len(messages):.0f} bytes each on average; "
          f"best of {args.rounds} interleaved rounds")
    resources, size, errors = full(messages)  # warm-up, and the counts
    n = len(messages)
    (b_wall, b_cpu), (f_wall, f_cpu), (r_wall, r_cpu) = interleaved(
        [baseline, full, reading], [messages, messages, stored], args.rounds)
    print(f"{'':24s} {'msg/s (wall)':>13s} {'msg/s (CPU)':>12s}")
    print(f"tokenize-only baseline : {n / b_wall:13,.0f} {n / b_cpu:12,.0f}")
    print(f"parse + map + JSON     : {n / f_wall:13,.0f} {n / f_cpu:12,.0f}  "
          f"({f_wall / b_wall:.1f}x the baseline's time; {resources / n:.1f} resources "
          f"= {resources / f_wall:,.0f} resources/s, {size / n / 1024:.1f} KiB JSON per message; "
          f"{errors} unmappable)")
    print(f"(storage) read_bytes   : {n / r_wall:13,.0f} {n / r_cpu:12,.0f}  "
          f"decode + tokenize + defect checks")
    by_type: dict[str, list] = {}
    for m in messages:
        by_type.setdefault(m[1].data_type, []).append(m)
    print("per data type (parse + map + JSON, beside its own tokenize-only baseline):")
    for dtype in sorted(by_type):
        subset = by_type[dtype]
        per = full(subset)[0] / len(subset)
        (bw, _bc), (fw, fc) = interleaved([baseline, full], [subset, subset], args.rounds)
        print(f"  {dtype:7s} {len(subset):6d} messages  {len(subset) / fw:10,.0f} msg/s "
              f"(CPU {len(subset) / fc:8,.0f})  {per:5.1f} resources/msg = "
              f"{per * len(subset) / fw:9,.0f} resources/s   baseline {len(subset) / bw:9,.0f} msg/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
