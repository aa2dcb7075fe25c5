"""Read + decode + tokenize of ~1 KB SS-MIX2 messages from a tree, against a raw baseline.

Baseline (same run, same files): ``open().read()`` + ``bytes.decode("iso2022_jp")`` +
``str.split`` into segments and fields.  Ours: ``storage.reader.read_file`` (lenient decode,
framing, defect checks, tokenize) and touching every field of every segment.  Ours reads with
``os.open``/``os.read`` (the product's real read path); for transparency the run also prints
the segment baseline read the same way ("os.read baseline").

    taskset -c 0 .venv/bin/python bench/bench_storage.py [--files 3000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.encoding import encode_iso2022jp  # noqa: E402
from storage.layout import Storage  # noqa: E402
from storage.names import FileName  # noqa: E402
from storage.reader import read_file  # noqa: E402

BODY = (
    "MSH|^~\\&|HIS123|SEND|GW|RCV|{ts}||OUL^R22^OUL_R22|{ts}|P|2.5||||||~ISO IR87||ISO 2022-1994|"
    "SS-MIX2_1.20^SS-MIX2^1.2.392.200250.2.1.100.1.2.120^ISO\r"
    "PID|0001||{pid}^^^^PI||山田^花子^^^^^L^I~ヤマダ^ハナコ^^^^^L^P||19610807|F\r"
    "PV1|0001|O|||||||||||||||||||||||||||||||||||||||||20111219\r"
    "SPM|1|||023^血清^JC10|||||||||||||20111219120000\r"
    "OBR|1|{order}||G01^生化学^99O03|||20111219120000\r"
    "ORC|SC|{order}|||CM||||20111219120000|||110^医師^一郎^^^^^^^L^^^^^I|||||01^内科^99Z01\r"
    "OBX|1|NM|3B035000002327201^ＡＳＴ^JC10^3B035^AST^99O03||{v1}|U/L^U/L^ISO+|13-33|N|||F|||20111219\r"
    "OBX|2|NM|3B045000002327201^ＡＬＴ^JC10^3B045^ALT^99O03||{v2}|U/L^U/L^ISO+|6-30|H|||F|||20111219\r"
    "OBX|3|NM|3D010000001926101^グルコース^JC10^3D010^GLU^99O03||{v3}|mg/dL^mg/dL^ISO+|70-109|N|||F\r"
    "OBX|4|NM|3D046000001906202^ＨｂＡ１ｃ^JC10^3D046^HbA1c^99O03||6.1|%^%^ISO+|4.6-6.2|N|||F\r"
)


def make_tree(root: Path, n: int) -> list:
    for i in range(n):
        pid = f"{1000000000 + i // 10}"
        ts = f"2011121912{i % 60:02d}00000"
        name = FileName(pid, "20111219", "OML-11", f"{i:015d}", ts, "01", "1")
        d = root / pid[:3] / pid[3:6] / pid / "20111219" / "OML-11"
        d.mkdir(parents=True, exist_ok=True)
        text = BODY.format(ts=ts[:14], pid=pid, order=f"{i:015d}", v1=20 + i % 9, v2=31 + i % 7, v3=95)
        (d / name.name).write_bytes(encode_iso2022jp(text) + b"\x1c")
    st = Storage(root)
    return [f for pid in st.patient_ids() for f in st.files(pid)]


def baseline_segments(st: Storage, files: list) -> int:
    segments = 0
    for f in files:
        with open(st.abspath(f.relpath), "rb") as fh:
            segments += len(fh.read().decode("iso2022_jp").split("\r"))
    return segments


def baseline_segments_osread(st: Storage, files: list) -> int:
    segments = 0
    for f in files:
        fd = os.open(st.abspath(f.relpath), os.O_RDONLY)
        try:
            data = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        segments += len(data.decode("iso2022_jp").split("\r"))
    return segments


def ours_segments(st: Storage, files: list) -> int:
    return sum(len(read_file(st, f).message) for f in files)


def baseline_fields(st: Storage, files: list) -> int:
    fields = 0
    for f in files:
        with open(st.abspath(f.relpath), "rb") as fh:
            text = fh.read().decode("iso2022_jp")
        for seg in text.split("\r"):
            fields += len(seg.split("|"))
    return fields


def ours_fields(st: Storage, files: list) -> int:
    fields = 0
    for f in files:
        for seg in read_file(st, f).message:
            fields += len(seg.fields)
    return fields


def best_rates(fns: dict, st, files, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best wall-clock and best CPU-time rate per function.

    Rounds interleave the functions so machine noise hits all alike; CPU time (process time) is
    the steadier figure on a shared machine, wall time includes waiting for the core.
    """
    wall = dict.fromkeys(fns, 0.0)
    cpu = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for label, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn(st, files)
            c1, t1 = time.process_time(), time.perf_counter()
            wall[label] = max(wall[label], len(files) / (t1 - t0))
            cpu[label] = max(cpu[label], len(files) / max(c1 - c0, 1e-9))
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_tree(Path(tmp), args.files)
        st = Storage(tmp)
        size = sum(os.path.getsize(st.resolve(f.relpath)) for f in files) / len(files)
        assert ours_fields(st, files) == baseline_fields(st, files)  # same work, warm page cache
        wall, cpu = best_rates({"baseline segments": baseline_segments, "ours segments": ours_segments,
                            "baseline fields": baseline_fields, "ours fields": ours_fields,
                            "os.read baseline": baseline_segments_osread},
                           st, files, args.rounds)
    print(f"files: {len(files)}  mean size: {size:.0f} bytes  (one process, best of {args.rounds})")
    for clock, rates in (("wall", wall), ("cpu", cpu)):
        for level in ("segments", "fields"):
            base, mine = rates[f"baseline {level}"], rates[f"ours {level}"]
            print(f"{clock:4} split into {level:8}: baseline read+decode+str.split {base:7.0f} msg/s | "
                  f"storage.reader {mine:7.0f} msg/s = {mine / base:4.0%}  "
                  f"[>=30000: {'OK' if mine >= 30000 else 'MISSED'}, "
                  f">=80%: {'OK' if mine >= 0.8 * base else 'MISSED'}]")
        base = rates["os.read baseline"]
        print(f"{clock:4} (info) segments baseline read with os.read instead of open(): {base:7.0f} "
              f"msg/s; storage.reader = {rates['ours segments'] / base:4.0%} of it")


if __name__ == "__main__":
    main()
