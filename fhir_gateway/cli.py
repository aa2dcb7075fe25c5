"""The ``fhir-gateway`` command.  Each subcommand lives in ``fhir_gateway/commands/<name>.py``
and provides ``register(subparsers)``; this module only discovers and dispatches them."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import __version__, commands
from .config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fhir-gateway",
        description="FHIR R4 (JP Core) facade over SS-MIX2 storage and UKE receipts.",
    )
    parser.add_argument("--version", action="version", version=f"fhir-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):  # shared helpers (commands/_common.py), not a subcommand
            continue
        module = importlib.import_module(f"{commands.__name__}.{mod.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except ConfigError as exc:  # a config that cannot be used: a usage error
        print(f"fhir-gateway {args.command}: {exc}", file=sys.stderr)
        return 2
    except EOFError:  # a prompt on a closed stdin (`< /dev/null`)
        print(f"fhir-gateway {args.command}: input ended before an answer; for scripts, see "
              f"`fhir-gateway {args.command} --help` (e.g. --password-stdin)", file=sys.stderr)
        return 2
    except Exception as exc:  # an operator sees one line; the traceback only when asked for
        if os.environ.get("FHIR_GATEWAY_DEBUG"):
            raise
        print(f"fhir-gateway {args.command}: error: {type(exc).__name__}: {exc} "
              "(FHIR_GATEWAY_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
