"""``fhir-gateway memos verify``: check each facility's memo journal (HMAC chain + keyed head).

Exits 1 naming the first bad line of the first broken journal; ``--anchor FILE`` (lines printed
by ``fhir-gateway audit anchor``) also catches a dropped tail or a chain recomputed with the key.
"""

from __future__ import annotations

import argparse
import sys

from .audit import read_anchors


def register(subparsers) -> None:
    p = subparsers.add_parser("memos", help="verify the memo journals", description=__doc__)
    sub = p.add_subparsers(dest="memos_command", metavar="ACTION", required=True)
    v = sub.add_parser("verify", help="verify every memo journal; exit 1 on a break")
    g = v.add_mutually_exclusive_group()
    g.add_argument("--config", help="gateway TOML (its data_dir)")
    g.add_argument("--data-dir", help="data directory holding memos/")
    v.add_argument("--facility", help="only this facility's journal")
    v.add_argument("--anchor", help="file of anchor lines (or one anchor line) to check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..memos import MemoError
    from .audit import stores
    journal = stores(args)[2]
    try:
        anchors = read_anchors(args.anchor)
        codes = [args.facility] if args.facility else journal.facilities()
        for code in codes:
            journal.path(code)
    except (OSError, ValueError, MemoError) as exc:
        print(f"fhir-gateway memos verify: {exc}", file=sys.stderr)
        return 2
    bad = 0
    for code in codes:
        report = journal.verify_report(code, anchors.get(f"memos/{code}"))
        print(report.line())
        bad += not report.ok
    if not codes:
        print("no memo journals")
    return 1 if bad else 0
