"""Hospital-scale API benchmark (issue 17): the cost of a request must not grow with the hospital.

Runs the same measurements against synthetic hospitals of different sizes **in one run**,
interleaved (hospital A, B, A, B ...) so that the machine's load hits both alike, and reports
each figure beside a same-run baseline as a ratio:

* cold first page of ``$everything`` (``_count=50``) for normal patients of similar size (40–150
  files, the same band in every hospital): each patient once per fresh server process (its
  mapped files not cached), OS cache warm (the files were read just before); p50/p95, and the
  **flatness** ratio largest/smallest hospital;
* the heavy patient (``synth --heavy-patient``, 9000000001, ~3,000 files): first page cold, and
  all pages cold (a fresh process, following ``next``);
* time to first byte of a fresh worker: a server started, then its first ``$everything``;
* ``Patient?birthdate=`` and kana ``Patient?name=`` p50 (index built by ``fhir-gateway index``);
* Patient read throughput against a bare Flask + waitress ceiling (``bench_api.CEILING``, the
  same ``serving.serve``: 2 workers x 4 threads), alternated ``--rounds`` times (median ratio),
  and the ratio of the two servers' CPU time per request (steadier under load);
  ``--only read`` measures just this;
* PSS (and RSS) of the server's processes, peak under a mixed load and after it
  (``--only memory``: the searches and this, e.g. 500 beside 20,000 patients in minutes).

    .venv/bin/python bench/bench_hospital.py --sizes 500,2000 --work /tmp/bench-hospital
    .venv/bin/python bench/bench_hospital.py --hospital /data/h500 --hospital /data/h2000
    .venv/bin/python bench/bench_hospital.py --hospital /data/h500 --only read --rounds 5
    .venv/bin/python bench/bench_hospital.py --hospital /data/h500 --hospital /data/h20000 --only memory

``--sizes`` generates the hospitals with ``fhir-gateway synth --heavy-patient`` (seed 17) into
``--work`` unless they are there already, and builds their indexes; ``--hospital DIR`` takes a
folder with ``ssmix2/``, ``receipts/``, ``extended/`` made that way.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402
import requests  # noqa: E402

from bench_api import start_ceiling, tree_rss_mb, wrk  # noqa: E402
from conftest import make_token, process_tree, start_server  # noqa: E402

BIN = Path(sys.executable).parent
FACILITY = "1312345678"
HEAVY = "9000000001"
BAND = (40, 150)  # files of a "normal" patient compared across hospitals


class Hospital:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "ssmix2"
        self.config = base / "gateway.toml"
        self.data = base / "data"
        if not self.config.exists():
            self.config.write_text(
                f'data_dir = "{self.data}"\n\n[[facility]]\ncode = "{FACILITY}"\n'
                f'name = "bench"\nstorage = ["{self.root}"]\nextended = ["{base / "extended"}"]\n'
                f'receipts = ["{base / "receipts"}"]\n', encoding="utf-8")
        self.patients = sorted(p.name for p in self.root.glob("*/*/*") if p.is_dir())
        self.token = make_token(self.data)

    @property
    def name(self) -> str:
        return f"{len(self.patients)} patients"

    def files(self, pid: str) -> list[Path]:
        return [p for p in (self.root / pid[:3] / pid[3:6] / pid).rglob("*") if p.is_file()]

    def warm(self, pid: str) -> float:
        """Read the patient's bytes (OS cache warm); seconds taken (the ``cat`` baseline)."""
        t0 = time.perf_counter()
        for f in self.files(pid):
            f.read_bytes()
        return time.perf_counter() - t0


def make(work: Path, size: int) -> Path:
    base = work / f"h{size}"
    if not (base / "ssmix2").exists():
        subprocess.run([str(BIN / "fhir-gateway"), "synth", "--out", str(base / "ssmix2"),
                        "--patients", str(size), "--heavy-patient", "--seed", "17",
                        "--facility", FACILITY, "--receipts-out", str(base / "receipts"),
                        "--extended-out", str(base / "extended"), "--no-progress"], check=True)
    return base


def serve(h: Hospital, workers: int = 2, threads: int = 4):
    return start_server(["--config", str(h.config), "--threads", str(threads)],
                        token=h.token, workers=workers, timeout=120)


def get(sess: requests.Session, url: str, h: Hospital) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = sess.get(url, headers={"Authorization": f"Bearer {h.token}"}, timeout=600)
    dt = time.perf_counter() - t0
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return dt, orjson.loads(r.content)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def cold_pages(h: Hospital, pids: list[str]) -> tuple[list[float], float]:
    """First $everything page of each patient in a fresh server (each patient once);
    also the fresh worker's time to first byte (its first request)."""
    for pid in pids:
        h.warm(pid)
    srv = serve(h)
    try:
        sess = requests.Session()
        ttfb = []
        for pid in pids[:2]:  # one per worker (fresh connections go round the workers)
            r = requests.get(f"{srv.base}/Patient/{pid}/$everything", stream=True,
                             headers={"Authorization": f"Bearer {h.token}"}, timeout=600)
            ttfb.append(r.elapsed.total_seconds())
            r.close()
        out = []
        for pid in pids[2:]:
            out.append(get(sess, f"{srv.base}/Patient/{pid}/$everything", h)[0])
        return out, max(ttfb)
    finally:
        srv.stop()


def heavy(h: Hospital) -> tuple[float, float, int, int]:
    """(first page cold, all pages cold, pages, resources): two fresh servers."""
    h.warm(HEAVY)
    srv = serve(h)
    try:
        first, _ = get(requests.Session(), f"{srv.base}/Patient/{HEAVY}/$everything", h)
    finally:
        srv.stop()
    srv = serve(h)
    try:
        sess = requests.Session()
        url = f"{srv.base}/Patient/{HEAVY}/$everything?_count=200"
        t0 = time.perf_counter()
        pages = n = 0
        while url:
            _, b = get(sess, url, h)
            pages += 1
            n += sum(1 for e in b.get("entry", []) if e["search"]["mode"] == "match")
            url = next((lk["url"] for lk in b["link"] if lk["relation"] == "next"), None)
        return first, time.perf_counter() - t0, pages, n
    finally:
        srv.stop()


def search_urls(h: Hospital, srv, rng: random.Random, n: int = 40) -> dict[str, list[str]]:
    """Birth-date and kana-name searches built from real patients of ``h``."""
    sess = requests.Session()
    sample = rng.sample(h.patients, min(n, len(h.patients)))
    pats = [get(sess, f"{srv.base}/Patient/{p}", h)[1] for p in sample]
    births = [p["birthDate"] for p in pats if p.get("birthDate")]
    kana = []
    for p in pats:
        for nm in p.get("name", []):
            if any(e.get("valueCode") == "SYL" for e in nm.get("extension", [])) and nm.get("family"):
                kana.append(nm["family"][:3])
    get(sess, f"{srv.base}/Patient?name=ヤ", h)  # the searcher opened once
    return {"birthdate": [f"{srv.base}/Patient?birthdate={b}" for b in births],
            "kana": [f"{srv.base}/Patient?name={k}" for k in kana]}


def searches(hs: list[Hospital], servers: list, rng: random.Random) -> list[dict]:
    """p50 inputs per hospital, the hospitals' queries interleaved one by one."""
    urls = [search_urls(h, srv, rng) for h, srv in zip(hs, servers)]
    out: list[dict] = [{"birthdate": [], "kana": [], "hits": []} for _ in hs]
    sess = requests.Session()
    for kind in ("birthdate", "kana"):
        for i in range(max(len(u[kind]) for u in urls)):
            for j, h in enumerate(hs):
                if i < len(urls[j][kind]):
                    dt, b = get(sess, urls[j][kind][i], h)
                    out[j][kind].append(dt)
                    if kind == "kana":
                        out[j]["hits"].append(b.get("total", 0))
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a server process and its workers so far."""
    ticks = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def read_ratio(h: Hospital, srv, ceil: subprocess.Popen, ceil_port: int, seconds: int,
               rounds: int = 3) -> tuple[float, float, float, float]:
    """(median throughput ratio, our req/s, the ceiling's req/s, median ratio of the servers'
    CPU per request: ceiling / ours).  The CPU ratio is the steadier figure on a loaded machine:
    it does not depend on how much of the CPU the benchmark got, only on what a request costs."""
    pid = h.patients[len(h.patients) // 2]
    url = f"{srv.base}/Patient/{pid}"
    ratios, ours, ceil_rps, cpu_ratios = [], [], [], []
    for _ in range(rounds):
        t0 = tree_cpu(ceil.pid)
        c = wrk(f"http://127.0.0.1:{ceil_port}/fhir/x/Patient/1", seconds, None)
        t1 = tree_cpu(ceil.pid)
        o0 = tree_cpu(srv.proc.pid)
        r = wrk(url, seconds, h.token)
        o1 = tree_cpu(srv.proc.pid)
        ratios.append(r["rps"] / c["rps"])
        ours.append(r["rps"])
        ceil_rps.append(c["rps"])
        ceil_cpu = (t1 - t0) / (c["rps"] * seconds)  # CPU seconds per request
        our_cpu = (o1 - o0) / (r["rps"] * seconds)
        cpu_ratios.append(ceil_cpu / our_cpu if our_cpu > 0 else float("nan"))
    return (statistics.median(ratios), statistics.median(ours), statistics.median(ceil_rps),
            statistics.median(cpu_ratios))


def only_read(hs: list[Hospital], args) -> int:
    """``--only read``: the Patient read ratio alone, each hospital's server beside the ceiling."""
    print(f"# Patient read only: {len(hs)} hospitals, {os.cpu_count()} CPUs, load average at "
          f"start {os.getloadavg()[0]:.1f}")
    ceil, cport = start_ceiling()
    servers = [serve(h) for h in hs]
    try:
        for h, srv in zip(hs, servers):
            ratio, ours, ceil_rps, cpu = read_ratio(h, srv, ceil, cport, args.seconds,
                                                    args.rounds)
            print(f"{h.name}: Patient read {ours:.0f} req/s vs ceiling {ceil_rps:.0f} req/s: "
                  f"ratio {ratio:.2f}; server CPU per request, ceiling / ours {cpu:.2f} "
                  f"(medians of {args.rounds} alternations)")
    finally:
        stop(servers, ceil)
    print(f"# load average at end {os.getloadavg()[0]:.1f}")
    return 0



def stop(servers, ceil=None) -> None:
    """Stop the gateway servers and the ceiling app (if any) of a run."""
    for srv in servers:
        srv.stop()
    if ceil is not None:
        ceil.terminate()
        ceil.wait()

def only_memory(hs: list[Hospital], args) -> int:
    """``--only memory``: the searches (interleaved) and the PSS under the mixed load, per
    hospital — the figures that grew with the hospital (issue 17, 20,000 patients)."""
    print(f"# searches and memory only: {len(hs)} hospitals, load average at start "
          f"{os.getloadavg()[0]:.1f}")
    rng = random.Random(17)
    servers = [serve(h) for h in hs]
    try:
        found = searches(hs, servers, rng)
        for h, srv, s in zip(hs, servers, found):
            peak, after, rss = mixed_load_pss(h, srv, args.load_seconds, rng)
            print(f"{h.name}: Patient?birthdate= p50 {1000 * pct(s['birthdate'], .5):.1f} ms; "
                  f"Patient?name=<kana> p50 {1000 * pct(s['kana'], .5):.1f} ms (median "
                  f"{statistics.median(s['hits']):.0f} matches); mixed load ({args.load_seconds} s, "
                  f"4 clients): PSS peak {peak:.0f} MB, after {after:.0f} MB (RSS peak {rss:.0f} MB)")
    finally:
        stop(servers)
    if len(hs) >= 2:
        a, b = found[0], found[-1]
        print(f"kana p50 x{pct(b['kana'], .5) / pct(a['kana'], .5):.2f}, birthdate p50 "
              f"x{pct(b['birthdate'], .5) / pct(a['birthdate'], .5):.2f} ({hs[-1].name} / {hs[0].name})")
    print(f"# load average at end {os.getloadavg()[0]:.1f}")
    return 0


def mixed_load_pss(h: Hospital, srv, seconds: int, rng: random.Random) -> tuple[float, float, float]:
    """(peak PSS, PSS after, peak RSS) in MB while 4 clients mix reads, searches and charts."""
    stop = threading.Event()
    peak = [0.0, 0.0]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_mb(srv.proc.pid, "Pss", "smaps_rollup"))
            peak[1] = max(peak[1], tree_rss_mb(srv.proc.pid))
            time.sleep(0.3)

    def client(seed: int) -> None:
        r = random.Random(seed)
        sess = requests.Session()
        while not stop.is_set():
            pid = r.choice(h.patients)
            kind = r.random()
            if kind < 0.4:
                url = f"{srv.base}/Patient/{pid}"
            elif kind < 0.8:
                url = f"{srv.base}/Patient/{pid}/$everything"
            elif kind < 0.9:
                url = f"{srv.base}/Patient/{HEAVY}/$everything?_count=200"
            else:
                url = f"{srv.base}/Patient?gender=female&_count=20"
            try:
                sess.get(url, headers={"Authorization": f"Bearer {h.token}"}, timeout=120)
            except requests.RequestException:
                pass

    threads = [threading.Thread(target=sample, daemon=True)] + [
        threading.Thread(target=client, args=(rng.random(),), daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(130)
    return peak[0], tree_rss_mb(srv.proc.pid, "Pss", "smaps_rollup"), peak[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="500,2000", help="hospitals to generate (patients)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-hospital"))
    ap.add_argument("--hospital", type=Path, action="append", help="an existing hospital folder")
    ap.add_argument("--patients", type=int, default=30, help="normal patients per hospital")
    ap.add_argument("--seconds", type=int, default=5, help="wrk run length")
    ap.add_argument("--load-seconds", type=int, default=30, help="mixed load for PSS")
    ap.add_argument("--only", choices=["read", "memory"],
                    help="only the Patient read ratio, or only the searches and PSS (quick)")
    ap.add_argument("--rounds", type=int, default=3, help="read/ceiling alternations")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("bench_hospital: wrk is missing (scripts/system-deps.sh installs it)", file=sys.stderr)
        return 2
    bases = args.hospital or [make(args.work, int(s)) for s in args.sizes.split(",")]
    if args.only == "read":
        return only_read([Hospital(b) for b in bases], args)
    hs = []
    for b in bases:
        h = Hospital(b)
        subprocess.run([str(BIN / "fhir-gateway"), "index", "--config", str(h.config),
                        "--no-progress"], check=True, capture_output=True)
        hs.append(h)
    if args.only == "memory":
        return only_memory(hs, args)
    print(f"# {len(hs)} hospitals, {os.cpu_count()} CPUs, load average at start "
          f"{os.getloadavg()[0]:.1f}")
    rng = random.Random(17)
    normal: dict[str, list[str]] = {}
    for h in hs:
        band = [p for p in h.patients if p != HEAVY and BAND[0] <= len(h.files(p)) <= BAND[1]]
        normal[h.name] = rng.sample(band, min(args.patients + 2, len(band)))
        print(f"{h.name}: {len(band)} patients with {BAND[0]}-{BAND[1]} files; "
              f"{sum(1 for _ in h.root.rglob('*'))} entries")

    res: dict[str, dict] = {h.name: {"cold": [], "ttfb": []} for h in hs}
    for rnd in range(2):  # interleaved: A, B, A, B
        for h in hs:
            pids = normal[h.name][rnd::2] if len(normal[h.name]) > 4 else normal[h.name]
            cold, ttfb = cold_pages(h, pids)
            res[h.name]["cold"] += cold
            res[h.name]["ttfb"].append(ttfb)
    for h in hs:
        first, whole, pages, n = heavy(h)
        res[h.name]["heavy"] = (first, whole, pages, n)
    ceil, cport = start_ceiling()
    servers = [serve(h) for h in hs]
    try:
        for h, found in zip(hs, searches(hs, servers, rng)):
            res[h.name]["search"] = found
        for h, srv in zip(hs, servers):
            res[h.name]["read"] = read_ratio(h, srv, ceil, cport, args.seconds, args.rounds)
        for h, srv in zip(hs, servers):
            res[h.name]["pss"] = mixed_load_pss(h, srv, args.load_seconds, rng)
    finally:
        stop(servers, ceil)

    print(f"# load average at end {os.getloadavg()[0]:.1f}")
    for h in hs:
        r = res[h.name]
        cold = r["cold"]
        first, whole, pages, n = r["heavy"]
        s = r["search"]
        ratio, ours, ceil_rps, cpu = r["read"]
        pss_peak, pss_after, rss_peak = r["pss"]
        print(f"\n## {h.name}")
        print(f"cold $everything first page, {len(cold)} patients of {BAND[0]}-{BAND[1]} files: "
              f"p50 {1000 * pct(cold, .5):.0f} ms, p95 {1000 * pct(cold, .95):.0f} ms")
        print(f"fresh worker time to first byte ($everything): max {1000 * max(r['ttfb']):.0f} ms")
        print(f"heavy patient cold: first page {1000 * first:.0f} ms; all {pages} pages "
              f"(_count=200, {n} resources) {whole:.1f} s")
        print(f"Patient?birthdate= p50 {1000 * pct(s['birthdate'], .5):.1f} ms "
              f"({len(s['birthdate'])}); Patient?name=<kana> p50 {1000 * pct(s['kana'], .5):.1f} ms "
              f"({len(s['kana'])}, median {statistics.median(s['hits']):.0f} matches)")
        print(f"Patient read {ours:.0f} req/s vs ceiling {ceil_rps:.0f} req/s: ratio {ratio:.2f}; "
              f"server CPU per request, ceiling / ours {cpu:.2f} (medians of {args.rounds} "
              "alternations)")
        print(f"mixed load ({args.load_seconds} s, 4 clients): PSS peak {pss_peak:.0f} MB, after "
              f"{pss_after:.0f} MB (RSS peak {rss_peak:.0f} MB), 2 workers")
    if len(hs) >= 2:
        a, b = res[hs[0].name], res[hs[-1].name]
        print(f"\n## flatness ({hs[-1].name} / {hs[0].name}, same run)")
        print(f"cold first page p50 x{pct(b['cold'], .5) / pct(a['cold'], .5):.2f}, "
              f"p95 x{pct(b['cold'], .95) / pct(a['cold'], .95):.2f}; "
              f"birthdate p50 x{pct(b['search']['birthdate'], .5) / pct(a['search']['birthdate'], .5):.2f}; "
              f"kana p50 x{pct(b['search']['kana'], .5) / pct(a['search']['kana'], .5):.2f}; "
              f"heavy first page x{b['heavy'][0] / a['heavy'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
