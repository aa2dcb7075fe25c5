"""``fhir-gateway group``: Group resources (patient cohorts) for Bulk Data ``Group/{id}/$export``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import data_dir_options, facility_problem, fail, open_store, store_command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("group", help="create and list Group cohorts for bulk export",
                       description="A Group lists patients of one facility; it is served as "
                                   "Group/{id} and exported by Group/{id}/$export.")
    gsub = p.add_subparsers(dest="group_command", metavar="ACTION")
    c = gsub.add_parser("create", help="create a Group and print its id")
    c.add_argument("--facility", required=True, help="facility code")
    c.add_argument("--name", required=True, help="the group's name (replaces a group of the "
                                                 "same name)")
    c.add_argument("--patients", required=True,
                   help="file with one patient id per line ('-' for stdin; # comments)")
    c.set_defaults(func=run_create)
    ls = gsub.add_parser("list", help="list a facility's groups")
    ls.add_argument("--facility", required=True)
    ls.set_defaults(func=run_list)
    data_dir_options(p, (c, ls), "groups", "data directory (without --config: patients unchecked)")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _err(msg: str) -> int:
    return fail("group", msg)


def _open(args):
    from fhir_gateway.bulk.groups import GroupStore
    return open_store(args, GroupStore)


_with_store = store_command("group", _open, "fhir_gateway.bulk.groups:GroupError")


@_with_store
def run_create(args: argparse.Namespace, store, cfg) -> int:
    from storage.names import is_valid_patient_id
    problem = facility_problem(args.facility, cfg)
    if problem:
        return _err(problem)
    try:
        text = sys.stdin.read() if args.patients == "-" else \
            Path(args.patients).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _err(f"cannot read --patients: {exc}")
    pids = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    pids = [p.removeprefix("Patient/") for p in pids if p]
    bad = [p for p in pids if not is_valid_patient_id(p)]
    if bad:
        return _err(f"not patient ids: {', '.join(bad[:5])}")
    if cfg is not None:
        from fhir_gateway.services import Gateway
        svc = Gateway(cfg).facility(args.facility)
        if svc is None:
            return _err(f"facility {args.facility} is not configured")
        missing = [p for p in pids if not svc.patient_exists(p)]
        if missing:
            return _err(f"no such patient in {args.facility}: {', '.join(missing[:5])}"
                        + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
    group = store.create(args.facility, args.name, pids)
    print(group["id"])
    print(f"(Group/{group['id']}: {group['quantity']} patients)", file=sys.stderr)
    return 0


@_with_store
def run_list(args: argparse.Namespace, store, cfg) -> int:
    for g in store.list(args.facility):
        print(f"{g['id']}\t{g['name']}\t{g['quantity']}\t{g['meta']['lastUpdated']}")
    return 0
