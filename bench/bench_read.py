"""CPU per Patient read in process: the gateway's WSGI app against a bare Flask app, same run.

No server, no sockets: both apps are called as ``app(environ, start_response)`` in a loop and
their CPU time (``time.process_time``) is divided by the reads, alternated ``--rounds`` times
(best of each side reported), so the figure does not depend on how loaded the machine is.  The
gateway app is the one ``serve`` builds (auth on, a bearer token in the request); the bare app is
``bench_api.CEILING``'s (one route, one fixed Patient).  ``--profile`` adds a cProfile of the
gateway's reads (cumulative and own time).

    .venv/bin/python bench/bench_read.py --hospital /tmp/perf17/h500 [--reads 4000] [--profile]

``--hospital DIR``: a folder with ``gateway.toml`` and ``ssmix2/`` (e.g. made by
``bench/bench_hospital.py``); the read is of the patient in the middle of the sorted ids.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from flask import Flask, Response  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from conftest import make_token  # noqa: E402
from fhir_gateway import config as gateway_config  # noqa: E402
from fhir_gateway.app import create_app  # noqa: E402
from mappers.serialize import dumps  # noqa: E402


def bare_app() -> Flask:
    """The ceiling of ``bench_api.CEILING``, built here instead of served."""
    patient = dumps({"resourceType": "Patient", "id": "0000000100", "meta": {"versionId": "1"},
                     "name": [{"family": "山田", "given": ["太郎"]}], "gender": "male",
                     "birthDate": "1965-04-15"})
    app = Flask("ceiling")

    @app.get("/fhir/<f>/Patient/<pid>")
    def read(f, pid):
        return Response(patient, content_type="application/fhir+json")
    return app


def caller(app, environ: dict):
    def start_response(status, headers, exc_info=None):
        if not status.startswith("200"):
            raise SystemExit(f"bench_read: {status} from {environ['PATH_INFO']}")

    def call() -> None:
        out = app(dict(environ), start_response)
        b"".join(out)
        close = getattr(out, "close", None)
        if close:
            close()
    return call


def cpu_per_call(call, n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - t0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hospital", type=Path, required=True)
    ap.add_argument("--reads", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    cfg = gateway_config.load(args.hospital / "gateway.toml")
    app = create_app(cfg, auth=True)
    token = make_token(cfg.data_dir)
    patients = sorted(p.name for p in (args.hospital / "ssmix2").glob("*/*/*") if p.is_dir())
    pid, fac = patients[len(patients) // 2], next(iter(cfg.facilities))
    ours = caller(app, EnvironBuilder(
        path=f"/fhir/{fac}/Patient/{pid}", headers={"Authorization": f"Bearer {token}"},
        base_url="http://127.0.0.1:8080").get_environ())
    bare = caller(bare_app(), EnvironBuilder(
        path="/fhir/x/Patient/1", base_url="http://127.0.0.1:8080").get_environ())
    for call in (ours, bare):  # warm: caches, imports
        cpu_per_call(call, 200)
    a, b = [], []
    for _ in range(args.rounds):
        a.append(cpu_per_call(ours, args.reads))
        b.append(cpu_per_call(bare, args.reads))
    print(f"Patient read in process: {1e6 * min(a):.0f} us CPU (rounds "
          f"{', '.join(f'{1e6 * x:.0f}' for x in a)}); bare Flask {1e6 * min(b):.0f} us "
          f"({', '.join(f'{1e6 * x:.0f}' for x in b)}); ratio bare / ours {min(b) / min(a):.2f}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        cpu_per_call(ours, args.reads)
        prof.disable()
        for key, n in (("cumulative", 45), ("tottime", 25)):
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats(key).print_stats(n)
            print(s.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
