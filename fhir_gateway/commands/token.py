"""``fhir-gateway token``: API bearer tokens (create prints the token once; only hashes are kept)."""

from __future__ import annotations

import argparse
import sys

from fhir_gateway.config import FACILITY_CODE, ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="create, list and revoke API bearer tokens",
                       description="Tokens are stored as salted SHA-256 hashes in the data "
                                   "directory; the clear token is printed once by `create`.")
    p.add_argument("--config", help="TOML config (its data_dir holds the tokens)")
    p.add_argument("--data-dir", help="data directory (default: $FHIR_GATEWAY_DATA_DIR, else ./data)")
    tsub = p.add_subparsers(dest="token_command", metavar="ACTION")
    c = tsub.add_parser("create", help="create a token and print it once")
    c.add_argument("--name", required=True, help="who or what uses the token")
    c.add_argument("--facility", required=True, help="facility code the token may read, or '*'")
    c.add_argument("--audit", action="store_true",
                   help="also allow GET AuditEvent (the facility's audit trail; for its admins)")
    c.set_defaults(func=run_create)
    ls = tsub.add_parser("list", help="list tokens (never their secrets)")
    ls.set_defaults(func=run_list)
    r = tsub.add_parser("revoke", help="revoke a token by id or name")
    r.add_argument("ident", help="token id or name")
    r.set_defaults(func=run_revoke)
    for q in (c, ls, r):
        q.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        q.add_argument("--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _store(args: argparse.Namespace):
    from pathlib import Path

    from fhir_gateway.auth_tokens import TokenStore
    from fhir_gateway.config import load
    if getattr(args, "config", None):
        cfg = load(args.config)
        from fhir_gateway.state import open_state
        return open_state(cfg).tokens(), cfg
    if getattr(args, "data_dir", None):
        return TokenStore(Path(args.data_dir).resolve()), None
    from fhir_gateway.config import default_data_dir
    return TokenStore(default_data_dir()), None


def _open(args: argparse.Namespace):
    """(store, config) as :func:`_store`, or None after printing why the config is unusable."""
    from fhir_gateway.auth_tokens import TokenStoreError
    try:
        store, cfg = _store(args)
        store.validate()
        return store, cfg
    except (ConfigError, TokenStoreError) as exc:
        print(f"fhir-gateway token: {exc}", file=sys.stderr)
        return None


def run_create(args: argparse.Namespace) -> int:
    opened = _open(args)
    if opened is None:
        return 2
    store, cfg = opened
    if args.facility != "*" and not FACILITY_CODE.match(args.facility):
        print("fhir-gateway token: --facility must be a facility code or '*'", file=sys.stderr)
        return 2
    if cfg is not None and args.facility != "*" and args.facility not in cfg.facilities:
        print(f"fhir-gateway token: facility {args.facility} is not configured", file=sys.stderr)
        return 2
    if args.audit and args.facility == "*":
        print("fhir-gateway token: an --audit token is for one facility", file=sys.stderr)
        return 2
    token = store.create(args.name, args.facility, audit=args.audit)
    print(token)
    print("(shown once: only its hash is stored)", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    opened = _open(args)
    if opened is None:
        return 2
    store, _ = opened
    for t in store.list():
        state = f"revoked {t.revoked}" if t.revoked else "active"
        print(f"{t.id}\t{t.name}\t{t.facility}\t{t.created}\t{state}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    opened = _open(args)
    if opened is None:
        return 2
    store, _ = opened
    if store.revoke(args.ident):
        print(f"revoked {args.ident}")
        return 0
    print(f"fhir-gateway token: no active token {args.ident!r}", file=sys.stderr)
    return 1
