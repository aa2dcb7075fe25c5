"""What the content ledger costs: audit mode against plain mapping (same run), and the request
path of this tree against another git revision (alternating subprocesses, same machine).

* ``audit``: ``mappers.audit.audit_message`` vs ``mappers.map_message`` over the same parsed
  messages of a small synthetic hospital, interleaved rounds, CPU time: what the drill pays.
* ``--against REV``: runs ``bench/bench_mappers.py`` of this tree and of ``REV`` (exported with
  ``git archive`` into a temporary folder) alternately ``--pairs`` times and compares the
  "parse + map + JSON" CPU rate, each divided by its own tokenize-only baseline from the same
  run: the request path's cost, which the ledger must not raise.

Usage::

    .venv/bin/python bench/bench_audit.py [--patients 30] [--rounds 5] [--against REV --pairs 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_mappers import FACILITY, TYPES, _synthetic  # noqa: E402
from mappers import MapContext, map_message  # noqa: E402
from mappers.audit import audit_message  # noqa: E402
from storage.encoding import decode  # noqa: E402
from storage.hl7 import parse  # noqa: E402

_LINE = re.compile(r"^(tokenize-only baseline|parse \+ map \+ JSON)\s*:\s*([\d,]+)\s+([\d,]+)", re.M)


def audit_cost(patients: int, rounds: int) -> None:
    stored = _synthetic(patients, TYPES + ("ADT-00", "ADT-22", "ADT-52", "PPR-01", "OMG-01",
                                           "OMG-11", "OMG-13", "OMD"))
    if not stored:
        print("fhir_gateway.synth unavailable")
        return
    msgs = [(parse(decode(d).text), n) for d, n in stored]
    ctxs = [MapContext(FACILITY, n.name, n) for _m, n in msgs]

    def plain() -> None:
        for (m, _n), c in zip(msgs, ctxs):
            map_message(m, c)

    def audit() -> None:
        for (m, _n), c in zip(msgs, ctxs):
            audit_message(m, c)

    best = {"plain": float("inf"), "audit": float("inf")}
    for _ in range(rounds):
        for name, fn in (("plain", plain), ("audit", audit)):
            t = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t)
    n = len(msgs)
    print(f"audit mode, {n} messages of {patients} synthetic patients, best of {rounds} (CPU):")
    print(f"  map_message   {n / best['plain']:9,.0f} msg/s")
    print(f"  audit_message {n / best['audit']:9,.0f} msg/s  ({best['audit'] / best['plain']:.2f}x "
          "the plain mapping's time; paid by `fhir-gateway check` only)")


def _run_bench(tree: Path, patients: int, rounds: int) -> float:
    out = subprocess.run([sys.executable, str(tree / "bench" / "bench_mappers.py"), "--patients",
                          str(patients), "--rounds", str(rounds)], capture_output=True, text=True,
                         cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                         check=True).stdout
    rates = {m.group(1): float(m.group(3).replace(",", "")) for m in _LINE.finditer(out)}
    return rates["parse + map + JSON"] / rates["tokenize-only baseline"]


def against(rev: str, pairs: int, patients: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-rev-") as tmp:
        other = Path(tmp)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(other)], input=archive, check=True)
        mine, theirs = [], []
        for _ in range(pairs):
            theirs.append(_run_bench(other, patients, rounds))
            mine.append(_run_bench(ROOT, patients, rounds))
    a, b = statistics.median(mine), statistics.median(theirs)
    print(f"request path (bench_mappers.py, map CPU rate / its tokenize-only CPU rate, median of "
          f"{pairs} alternating runs): this tree {a:.4f}, {rev} {b:.4f} -> "
          f"{(b / a - 1) * 100:+.1f} % time per message")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--against", help="git revision to compare the request path with")
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args(argv)
    audit_cost(args.patients, args.rounds)
    if args.against:
        against(args.against, args.pairs, args.patients, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
