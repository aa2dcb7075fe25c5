"""``fhir-gateway db upgrade|status``: the versioned PostgreSQL schema of the shared index and
state (see :mod:`fhir_gateway.scale.migrations`).

Exit 0 = done, 1 = the database cannot be reached or is newer than this program, 2 = usage.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "db", help="apply or show the PostgreSQL schema version (scale-out backends)",
        description="Create or upgrade the PostgreSQL schema used by [index] and [state] "
                    "backend = \"postgresql\".  Safe to run from several machines at once.")
    p.add_argument("action", choices=("upgrade", "status"))
    p.add_argument("--config", metavar="FILE", help="TOML config naming the dsn")
    p.add_argument("--dsn", help="PostgreSQL connection string (instead of --config)")
    p.set_defaults(func=run)


def dsns(args: argparse.Namespace) -> list[str]:
    """The DSNs to act on: --dsn, else the config's [index]/[state] PostgreSQL DSNs."""
    if args.dsn:
        return [args.dsn]
    from fhir_gateway.config import ConfigError, load

    if not args.config:
        raise ConfigError("give --config FILE or --dsn DSN")
    cfg = load(args.config)
    out = [b.dsn for b in (cfg.index, cfg.state) if b.postgresql]
    if not out:
        raise ConfigError(f"{args.config} uses no PostgreSQL backend ([index]/[state])")
    return list(dict.fromkeys(out))


def run(args: argparse.Namespace) -> int:
    from fhir_gateway.config import ConfigError

    try:
        targets = dsns(args)
        from fhir_gateway.scale import migrations
        from fhir_gateway.scale.pg import _psycopg
        psycopg = _psycopg()
    except (ConfigError, RuntimeError) as exc:
        print(f"fhir-gateway db: {exc}", file=sys.stderr)
        return 2
    status = 0
    for dsn in targets:
        shown = dsn.split("@")[-1]  # never print a password
        try:
            if args.action == "upgrade":
                done = migrations.upgrade(dsn)
                for step in done:
                    print(f"{shown}: applied {step.version} ({step.description})")
                print(f"{shown}: schema version {migrations.LATEST} (up to date)")
            else:
                with psycopg.connect(dsn) as conn:
                    have = migrations.current(conn)
                state = "up to date" if have == migrations.LATEST else \
                    f"needs `fhir-gateway db upgrade` (latest {migrations.LATEST})"
                print(f"{shown}: schema version {have}, {state}")
                if have != migrations.LATEST:
                    status = 1
        except (psycopg.Error, migrations.SchemaError) as exc:
            print(f"fhir-gateway db: {shown}: {exc}".strip(), file=sys.stderr)
            status = 1
    return status
