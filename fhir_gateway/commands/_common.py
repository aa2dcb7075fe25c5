"""What the store-keeping subcommands (token, client, group, shl) share: where their data
directory comes from, and how they say no (one line on stderr, ``fhir-gateway <cmd>: …``,
exit 2 — tests/test_cli_errors.py holds every subcommand to it)."""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from fhir_gateway.config import FACILITY_CODE, Config

T = TypeVar("T")
Run = Callable[..., int]


def fail(command: str, message: str, code: int = 2) -> int:
    """Print ``fhir-gateway <command>: <message>`` on stderr; the exit code to return."""
    print(f"fhir-gateway {command}: {message}", file=sys.stderr)
    return code


def data_dir_options(parser: argparse.ArgumentParser, actions: Iterable[argparse.ArgumentParser],
                     holds: str, data_dir_help: str | None = None) -> None:
    """``--config`` / ``--data-dir`` on the command and, hidden, on each action, so they work on
    either side of the action word."""
    parser.add_argument("--config", help=f"TOML config (its data_dir holds the {holds})")
    parser.add_argument("--data-dir", help=data_dir_help
                        or "data directory (default: $FHIR_GATEWAY_DATA_DIR, else ./data)")
    for q in actions:
        q.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        q.add_argument("--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def open_store(args: argparse.Namespace, in_dir: Callable[[Path], T],
               from_config: Callable[[Config], T] | None = None) -> tuple[T, Config | None]:
    """(store, config): the config's (``--config``; ``from_config`` when its state may live
    elsewhere, e.g. PostgreSQL), else the one in ``--data-dir``, else in the default data
    directory.  Raises ``ConfigError`` for an unusable config."""
    from fhir_gateway.config import default_data_dir, load
    if getattr(args, "config", None):
        cfg = load(args.config)
        return (from_config(cfg) if from_config is not None else in_dir(cfg.data_dir)), cfg
    if getattr(args, "data_dir", None):
        return in_dir(Path(args.data_dir).resolve()), None
    return in_dir(default_data_dir()), None


def facility_problem(code: str, cfg: Config | None, any_allowed: bool = False) -> str | None:
    """Why ``--facility`` cannot be used (not a code, or not in the config), None when it can;
    ``*`` (every facility) where ``any_allowed``."""
    if any_allowed and code == "*":
        return None
    if not FACILITY_CODE.match(code):
        return "--facility must be a facility code" + (" or '*'" if any_allowed else "")
    if cfg is not None and code not in cfg.facilities:
        return f"facility {code} is not configured"
    return None


def store_command(command: str, open_: Callable[[argparse.Namespace], tuple[object, Config | None]],
                  error: str) -> Callable[[Run], Run]:
    """Decorate ``run(args, store, config)``: the store comes from ``open_(args)``; a
    ``ConfigError`` or the store's own error (``"module:Class"``, imported only when the command
    runs: the CLI imports every subcommand to build its parser) ends the command with one line
    and exit 2."""
    def decorate(run: Run) -> Run:
        @functools.wraps(run)
        def opened(args: argparse.Namespace) -> int:
            from fhir_gateway.config import ConfigError
            module, _, name = error.partition(":")
            caught: tuple[type[Exception], ...] = (
                ConfigError, getattr(importlib.import_module(module), name))
            try:
                store, cfg = open_(args)
                return run(args, store, cfg)
            except caught as exc:
                return fail(command, str(exc))
        return opened
    return decorate


def revoke(command: str, what: str) -> Run:
    """``run(args, store, config)`` of a ``revoke IDENT`` action: exit 0 when the store revoked
    an active entry, else one line and exit 1."""
    def run(args: argparse.Namespace, store, cfg: Config | None) -> int:
        if store.revoke(args.ident):
            print(f"revoked {args.ident}")
            return 0
        return fail(command, f"no active {what} {args.ident!r}", 1)
    return run
