"""``fhir-gateway serve``: the FHIR API (and viewer) on waitress, several worker processes."""

from __future__ import annotations

import argparse
import os
import sys

from fhir_gateway.config import Config, ConfigError, from_args, load


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve the FHIR API over HTTP (waitress, pre-forked workers)",
        description="Serve /fhir/{facility} for every configured facility. Without --no-auth, "
                    "API requests need a bearer token (see `fhir-gateway token create`).")
    add_config_args(p)
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8080; 0 = any free)")
    p.add_argument("--threads", type=int, help="waitress threads per worker (default 4)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes sharing the socket (default: CPU count)")
    p.add_argument("--cache-mb", type=int, default=None,
                   help="memory all workers together may grow above their start-up size, in MB "
                        "(split evenly; each worker shrinks its caches to stay within its "
                        "share; default 128)")
    p.add_argument("--no-auth", action="store_true",
                   help="anonymous access; allowed only on a loopback address")
    p.set_defaults(func=run)


def add_config_args(p: argparse.ArgumentParser) -> None:
    """The shared way to name the data: a TOML config, or one facility from flags."""
    p.add_argument("--config", help="TOML config with one or more [[facility]] tables")
    p.add_argument("--storage", action="append",
                   help="SS-MIX2 root (repeat: primary first, then mirrors)")
    p.add_argument("--facility", help="facility code for --storage (default: the one MSH-4 names)")
    p.add_argument("--receipts", action="append", help="UKE receipts folder (with --storage)")
    p.add_argument("--extended", action="append", help="extended storage root (with --storage)")
    p.add_argument("--data-dir", help="data directory (tokens, paging key, indexes)")


def config_from(args: argparse.Namespace) -> Config:
    if args.config:
        cfg = load(args.config)
        if args.data_dir:
            from pathlib import Path
            cfg.data_dir = Path(args.data_dir).resolve()
        return cfg
    if args.storage:
        from fhir_gateway.facility_codes import facility_for
        code = facility_for(args.storage, args.receipts, args.facility)
        return from_args(args.storage, code, args.receipts, args.extended,
                         args.data_dir)
    raise ConfigError("give --config FILE or --storage PATH [--facility CODE]")


def run(args: argparse.Namespace) -> int:
    from fhir_gateway.serving import check_app, is_loopback, serve
    try:
        cfg = config_from(args)
    except ConfigError as exc:
        print(f"fhir-gateway serve: {exc}", file=sys.stderr)
        return 2
    # flag > environment > config > default (fhir_gateway.config.SETTINGS)
    args.host = cfg.text("host", args.host)
    args.port = cfg.integer("port", args.port)
    args.threads = cfg.integer("threads", args.threads)
    if args.workers is None:
        args.workers = cfg.integer("workers") or None
    if args.cache_mb is None:
        args.cache_mb = cfg.integer("cache_mb")
    bad = [f"--{name} {value}" for name, value, ok in (
        ("port", args.port, 0 <= args.port <= 65535), ("threads", args.threads, args.threads >= 1),
        ("workers", args.workers, args.workers is None or args.workers >= 1),
        ("cache-mb", args.cache_mb, args.cache_mb is None or args.cache_mb >= 1)) if not ok]
    if bad:
        print(f"fhir-gateway serve: {', '.join(bad)}: out of range (port 0-65535, threads, "
              "workers and cache-mb at least 1)", file=sys.stderr)
        return 2
    if args.no_auth:
        if not is_loopback(args.host):
            print(f"fhir-gateway serve: --no-auth is refused on {args.host}: anonymous access "
                  "is allowed only on a loopback address (127.0.0.1, ::1, localhost)",
                  file=sys.stderr)
            return 2
        print("fhir-gateway serve: WARNING: --no-auth: the API answers anyone on this machine "
              "without a token", file=sys.stderr)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)

    def make_app():  # runs in the workers (and once in a throw-away child, see check_app)
        from fhir_gateway.app import create_app
        from fhir_gateway.services.cache import per_worker_bytes
        return create_app(cfg, auth=not args.no_auth,
                          cache_bytes=per_worker_bytes(args.cache_mb, workers), govern=True)

    def ready(url: str) -> None:
        codes = ", ".join(f"{url}/fhir/{c}" for c in cfg.facilities)
        print(f"fhir-gateway: serving {codes} ({workers} workers x {args.threads} threads)",
              file=sys.stderr, flush=True)

    if workers > 1 and not check_app(make_app):  # fail fast on a broken config, before forking
        return 2
    return serve(make_app, args.host, args.port, args.threads, workers, ready)
