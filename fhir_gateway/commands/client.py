"""``fhir-gateway client``: register SMART Backend Services clients (public keys + scopes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import data_dir_options, facility_problem, fail, open_store, revoke, store_command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("client", help="register, list and revoke SMART Backend Services clients",
                       description="A client authenticates at /fhir/{facility}/auth/token with a "
                                   "JWT signed by a key of its JWKS and gets short-lived access "
                                   "tokens limited to its scopes (docs/api.md).")
    csub = p.add_subparsers(dest="client_command", metavar="ACTION")
    a = csub.add_parser("add", help="register a client and print its client id")
    a.add_argument("--name", required=True, help="who or what the client is")
    a.add_argument("--facility", required=True, help="facility code the client may read, or '*'")
    keys = a.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks-file", help="the client's public keys (JWKS JSON file)")
    keys.add_argument("--jwks-url", help="where the client publishes its JWKS")
    a.add_argument("--scope", required=True,
                   help='scopes it may be granted, space separated: "system/*.rs" or '
                        '"system/Patient.rs system/Observation.rs" (v1 "system/*.read" too)')
    a.set_defaults(func=run_add)
    ls = csub.add_parser("list", help="list clients")
    ls.set_defaults(func=run_list)
    r = csub.add_parser("revoke", help="revoke a client by id or name (its tokens stop at once)")
    r.add_argument("ident", help="client id or name")
    r.set_defaults(func=run_revoke)
    data_dir_options(p, (a, ls, r), "clients")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _err(msg: str) -> int:
    return fail("client", msg)


def _store(args: argparse.Namespace):
    """(store, config): the config's state backend holds the clients."""
    from fhir_gateway.smart import ClientStore
    from fhir_gateway.state import open_state
    return open_store(args, ClientStore, lambda cfg: open_state(cfg).smart_clients())


_with_store = store_command("client", _store, "fhir_gateway.smart:ClientStoreError")


@_with_store
def run_add(args: argparse.Namespace, store, cfg) -> int:
    import orjson

    from fhir_gateway.smart import parse_scope
    problem = facility_problem(args.facility, cfg, any_allowed=True)
    if problem:
        return _err(problem)
    scopes = args.scope.split()
    bad = [s for s in scopes if parse_scope(s) is None]
    if not scopes or bad:
        return _err(f"not a system scope: {' '.join(bad) or '(none)'} (e.g. system/*.rs, "
                    "system/Observation.rs, system/*.read)")
    jwks = None
    if args.jwks_file:
        try:
            jwks = orjson.loads(Path(args.jwks_file).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            return _err(f"cannot read --jwks-file: {exc}")
    c = store.add(args.name, args.facility, scopes, jwks=jwks, jwks_url=args.jwks_url)
    print(c.id)
    print(f"(client id of {c.name}; token URL: /fhir/{args.facility}/auth/token)", file=sys.stderr)
    return 0


@_with_store
def run_list(args: argparse.Namespace, store, cfg) -> int:
    for c in store.list():
        state = f"revoked {c.revoked}" if c.revoked else "active"
        keys = c.jwks_url or f"{len(c.jwks['keys'])} key(s)" if c.jwks else c.jwks_url
        print(f"{c.id}\t{c.name}\t{c.facility}\t{' '.join(c.scopes)}\t{keys}\t{c.created}\t{state}")
    return 0


run_revoke = _with_store(revoke("client", "client"))
