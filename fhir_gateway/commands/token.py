"""``fhir-gateway token``: API bearer tokens (create prints the token once; only hashes are kept)."""

from __future__ import annotations

import argparse
import sys

from ._common import data_dir_options, facility_problem, fail, open_store, revoke, store_command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="create, list and revoke API bearer tokens",
                       description="Tokens are stored as salted SHA-256 hashes in the data "
                                   "directory; the clear token is printed once by `create`.")
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
    data_dir_options(p, (c, ls, r), "tokens")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _open(args: argparse.Namespace):
    """(store, config): the config's state backend holds the tokens; checked readable first."""
    from fhir_gateway.auth_tokens import TokenStore
    from fhir_gateway.state import open_state
    store, cfg = open_store(args, TokenStore, lambda cfg: open_state(cfg).tokens())
    store.validate()
    return store, cfg


_with_store = store_command("token", _open, "fhir_gateway.auth_tokens:TokenStoreError")


@_with_store
def run_create(args: argparse.Namespace, store, cfg) -> int:
    problem = facility_problem(args.facility, cfg, any_allowed=True)
    if problem:
        return fail("token", problem)
    if args.audit and args.facility == "*":
        return fail("token", "an --audit token is for one facility")
    token = store.create(args.name, args.facility, audit=args.audit)
    print(token)
    print("(shown once: only its hash is stored)", file=sys.stderr)
    return 0


@_with_store
def run_list(args: argparse.Namespace, store, cfg) -> int:
    for t in store.list():
        state = f"revoked {t.revoked}" if t.revoked else "active"
        print(f"{t.id}\t{t.name}\t{t.facility}\t{t.created}\t{state}")
    return 0


run_revoke = _with_store(revoke("token", "token"))
