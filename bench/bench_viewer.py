"""Viewer: patient opened -> summary rendered, for the heavy generator patient, in Chromium.

Generates a hospital with ``fhir-gateway synth --heavy-patient`` (patient 9000000001, ~3,000
files over 10 years), starts ``fhir-gateway serve`` with the viewer's own patient cache off
(FHIR_GATEWAY_VIEWER_CACHE_SECONDS=0, so every open walks the folders and rebuilds the rows; the
service's mapped-file cache stays on, as in production), logs in through the real forms and then:

* cold open: the very first open of the heavy patient (every file decoded and mapped);
* warm opens: N opens in headless Chromium, timed from navigation start to the ``load`` event
  (HTML + CSS + JS + layout of the whole summary), reporting p50/p95/max;
* the same N opens as bare HTTP GETs (server time + transfer) and, as a baseline measured in the
  same run, ``Patient/{id}/$everything`` of the same patient through the FHIR API (same service
  layer, JSON instead of HTML) and the login page (the floor of a templated page);
* tab switches (lab table, prescriptions) with the viewer cache on, for scale.

    .venv/bin/python bench/bench_viewer.py [--opens 30] [--patients 20] [--keep DIR]

Target (issue 6): warm summary p95 < 1 s.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import requests  # noqa: E402

from conftest import BIN, make_token, start_server  # noqa: E402

FAC = "1310000017"
HEAVY = "9000000001"
PW = "correct horse battery staple"
PASSPHRASE = "bench-passphrase"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


def fmt(xs: list[float]) -> str:
    return (f"p50 {statistics.median(xs) * 1000:.0f} ms  p95 {pct(xs, 95) * 1000:.0f} ms  "
            f"max {max(xs) * 1000:.0f} ms  (n={len(xs)})")


def login(url: str) -> requests.Session:
    s = requests.Session()
    tok = lambda html: re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # noqa: E731
    r = s.get(f"{url}/login")
    s.post(f"{url}/login", data={"csrf_token": tok(r.text), "username": "bench", "password": PW,
                                 "person": "ベンチ 太郎", "staff_no": "B001"})
    r = s.get(f"{url}/f/{FAC}/unlock")
    s.post(f"{url}/f/{FAC}/unlock", data={"csrf_token": tok(r.text), "passphrase": PASSPHRASE})
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--opens", type=int, default=30)
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--keep", help="generate into (and keep) this folder")
    ap.add_argument("--years", type=int, default=5, help="years of history (default 5)")
    ap.add_argument("--cold-runs", type=int, default=5,
                    help="fresh server processes for the cold-chart figures (default 5)")
    ap.add_argument("--only-cold", action="store_true", help="only the cold-chart figures")
    args = ap.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    base.mkdir(parents=True, exist_ok=True)
    ss = base / "ssmix2"
    if not ss.exists():
        t = time.perf_counter()
        subprocess.run([str(BIN / "fhir-gateway"), "synth", "--out", str(ss), "--patients",
                        str(args.patients), "--years", str(args.years), "--seed", "2026", "--facility", FAC,
                        "--heavy-patient", "--receipts-out", str(base / "receipts"),
                        "--extended-out", str(base / "extended"), "--no-progress"],
                       check=True, capture_output=True)
        print(f"# synth: {args.patients} patients + heavy patient in {time.perf_counter() - t:.1f} s")
    cfg = base / "gateway.toml"
    cfg.write_text(f'data_dir = "data"\n[[facility]]\ncode = "{FAC}"\nname = "ベンチ病院"\n'
                   f'storage = ["ssmix2"]\nreceipts = ["receipts"]\nextended = ["extended"]\n',
                   encoding="utf-8")
    from fhir_gateway.accounts import AccountStore
    store = AccountStore(base / "data")
    if not store.get("bench"):
        store.add_user("bench", PW, "viewer")
    store.set_passphrase(FAC, PASSPHRASE, "bench")
    store.switch_access(FAC, True, "benchmark", "bench", "ベンチ", "B001")
    files = sum(1 for _ in (ss / HEAVY[:3] / HEAVY[3:6] / HEAVY).rglob("*") if _.is_file())
    cold_charts(cfg, ss, args)
    if args.only_cold:
        return 0
    srv = start_server(["--config", str(cfg)], facility=FAC, workers=1,
                       env={"FHIR_GATEWAY_VIEWER_CACHE_SECONDS": "0"})
    try:
        url = srv.url
        s = login(url)
        summary = f"{url}/f/{FAC}/p/{HEAVY}/"
        t = time.perf_counter()
        r = s.get(summary)
        cold = time.perf_counter() - t
        assert r.status_code == 200, r.status_code
        print(f"# heavy patient {HEAVY}: {files} files; summary HTML {len(r.content) / 1024:.0f} KiB")
        print(f"cold open (first ever, every file mapped):  {cold * 1000:.0f} ms")
        http = []
        for _ in range(args.opens):
            t = time.perf_counter()
            s.get(summary).raise_for_status()
            http.append(time.perf_counter() - t)
        print(f"summary, HTTP GET (viewer cache off):       {fmt(http)}")
        token = make_token(base / "data", FAC)
        ev = []
        for _ in range(max(5, args.opens // 3)):
            t = time.perf_counter()
            requests.get(f"{url}/fhir/{FAC}/Patient/{HEAVY}/$everything",
                         params={"_count": "1000"},
                         headers={"Authorization": f"Bearer {token}"}).raise_for_status()
            ev.append(time.perf_counter() - t)
        print(f"baseline $everything first page (API):      {fmt(ev)}")
        floor = []
        for _ in range(args.opens):
            t = time.perf_counter()
            requests.get(f"{url}/login").raise_for_status()
            floor.append(time.perf_counter() - t)
        print(f"baseline login page (template floor):       {fmt(floor)}")
        if os.path.exists(CHROMIUM):
            from playwright.sync_api import sync_playwright
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                ctx = b.new_context()
                ctx.add_cookies([{"name": k, "value": v, "url": url} for k, v in s.cookies.items()])
                page = ctx.new_page()
                page.goto(summary)
                shown = []
                for _ in range(args.opens):
                    page.goto(f"{url}/f/{FAC}/")
                    t = time.perf_counter()
                    page.goto(summary, wait_until="load")
                    page.wait_for_selector("#banner")
                    shown.append(time.perf_counter() - t)
                nav = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
                print(f"summary rendered in Chromium (to load):     {fmt(shown)}"
                      f"  -> target p95 < 1000 ms: {'PASS' if pct(shown, 95) < 1 else 'FAIL'}")
                del nav
                b.close()
        else:
            print("(chromium absent: browser timing skipped)")
        # tab switches with the viewer cache on (a second server, default cache)
    finally:
        srv.stop()
    srv2 = start_server(["--config", str(cfg)], facility=FAC, workers=1)
    try:
        s = login(srv2.url)
        s.get(f"{srv2.url}/f/{FAC}/p/{HEAVY}/")
        for tab in ("labs", "c/prescriptions", "c/lab-results", "dates", "drugs?q=ロキソ"):
            xs = []
            for _ in range(5):
                t = time.perf_counter()
                s.get(f"{srv2.url}/f/{FAC}/p/{HEAVY}/{tab}").raise_for_status()
                xs.append(time.perf_counter() - t)
            print(f"tab {tab:18} (viewer cache on):  {fmt(xs)}")
    finally:
        srv2.stop()
    return 0


TABS = ("c/conditions", "c/allergies", "c/prescriptions", "c/injections", "c/administrations",
        "c/lab-orders", "c/lab-results", "labs", "vitals", "documents", "receipts", "dates",
        "c/other", "drugs?q=アムロジピン", "memos", "continue")


def _chart_files(ss: Path, pid: str) -> int:
    return sum(1 for f in (ss / pid[:3] / pid[3:6] / pid).rglob("*") if f.is_file())


def cold_charts(cfg: Path, ss: Path, args) -> None:
    """Issue 11 item 10: every chart is cold in a disaster.  Each run starts a fresh server
    process (warm OS cache: the files were read before), logs in and opens charts never opened
    in that process: the summary of the heavy chart, of several normal charts (<= 300 files),
    then every tab of the heavy chart once (each cold for its types).  Baseline in the same run:
    the same summary opened again in the same process (a warm chart)."""
    from storage.layout import Storage
    # normal charts: more than the 60 files mapped whole, at most 300 (the "normal")
    normal = [p for p in sorted(Storage(ss).patient_ids()) if p != HEAVY
              and 60 < _chart_files(ss, p) <= 300][:8]
    sizes = sorted(_chart_files(ss, p) for p in normal)
    print(f"# cold charts: {args.cold_runs} fresh server processes; normal charts {len(normal)} "
          f"({sizes[0]}-{sizes[-1]} files), heavy {_chart_files(ss, HEAVY)} files")
    heavy_cold, heavy_warm, normal_cold, normal_warm = [], [], [], []
    tabs: dict[str, list[float]] = {t: [] for t in TABS}
    for _ in range(args.cold_runs):
        srv = start_server(["--config", str(cfg)], facility=FAC, workers=1,
                           env={"FHIR_GATEWAY_VIEWER_CACHE_SECONDS": "0"})
        try:
            s = login(srv.url)
            base = f"{srv.url}/f/{FAC}/p"

            def timed(path: str, s=s, base=base) -> float:
                t = time.perf_counter()
                r = s.get(f"{base}/{path}")
                r.raise_for_status()
                return time.perf_counter() - t
            heavy_cold.append(timed(f"{HEAVY}/"))
            heavy_warm.extend(timed(f"{HEAVY}/") for _ in range(3))
            for pid in normal:
                normal_cold.append(timed(f"{pid}/"))
                normal_warm.append(timed(f"{pid}/"))
            for tab in TABS:
                tabs[tab].append(timed(f"{HEAVY}/{tab}"))
        finally:
            srv.stop()
    print(f"normal chart summary, cold:   {fmt(normal_cold)}  -> target p95 < 400 ms: "
          f"{'PASS' if pct(normal_cold, 95) < 0.4 else 'FAIL'}")
    print(f"normal chart summary, warm:   {fmt(normal_warm)}  (baseline; cold/warm p50 "
          f"{statistics.median(normal_cold) / statistics.median(normal_warm):.1f}x)")
    print(f"heavy chart summary, cold:    {fmt(heavy_cold)}  -> target p95 < 800 ms: "
          f"{'PASS' if pct(heavy_cold, 95) < 0.8 else 'FAIL'}")
    print(f"heavy chart summary, warm:    {fmt(heavy_warm)}  (baseline; cold/warm p50 "
          f"{statistics.median(heavy_cold) / statistics.median(heavy_warm):.1f}x)")
    for tab, xs in tabs.items():
        print(f"heavy tab {tab:22} cold: {fmt(xs)}  {'< 1 s' if pct(xs, 95) < 1 else '>= 1 s'}")


if __name__ == "__main__":
    sys.exit(main())
