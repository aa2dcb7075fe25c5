"""``fhir-gateway audit verify|anchor``: prove the audit trail and memo journals are intact.

``verify`` recomputes the HMAC chain (key: ``{data_dir}/integrity.key``) and the keyed head, and
exits 1 naming the first bad row.  ``anchor`` prints one line per chain (audit trail, each memo
journal): ``CHAIN COUNT MAC``.  Copy those lines somewhere the server cannot write (another host,
paper); ``verify --anchor FILE`` then also proves nothing up to the anchor was dropped or
rewritten — even by someone holding the key.  Each anchor is also appended to
``{data_dir}/anchors.log`` (0600) as a local history.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .user import _data_dir


def register(subparsers) -> None:
    p = subparsers.add_parser("audit", help="verify the audit trail, print anchors",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    for name, helptext in (("verify", "recompute the audit chain; exit 1 on a break"),
                           ("anchor", "print anchors (audit trail and memo journals) to keep "
                                      "elsewhere")):
        sp = sub.add_parser(name, help=helptext)
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--config", help="gateway TOML (its data_dir)")
        g.add_argument("--data-dir", help="data directory holding accounts.sqlite3")
        if name == "verify":
            sp.add_argument("--anchor", help="file of anchor lines (or one anchor line) to check")
    p.set_defaults(func=run)


def read_anchors(spec: str | None) -> dict:
    """``{chain: Anchor}`` from a file of anchor lines or a single line; the last one wins."""
    from ..integrity import Anchor
    if not spec:
        return {}
    path = Path(spec)
    text = path.read_text(encoding="utf-8") if path.is_file() else spec
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            a = Anchor.parse(line.split("\t")[-1])
            out[a.chain] = a
    return out


def stores(args: argparse.Namespace):
    """(data_dir, accounts store or None when there is none yet, memo journal) of the config's
    [state] backend (``--data-dir``: the embedded files there)."""
    from ..state import EmbeddedState, open_state
    data_dir = _data_dir(args)
    if getattr(args, "config", None):
        from .. import config as config_mod
        state = open_state(config_mod.load(args.config))
    else:
        state = EmbeddedState(data_dir)
    has_db = state.backend != "embedded" or (data_dir / "accounts.sqlite3").exists()
    return data_dir, (state.accounts() if has_db else None), state.memos()


def run(args: argparse.Namespace) -> int:
    data_dir, accounts, journal = stores(args)
    if args.audit_command == "anchor":
        anchors = [accounts.audit_anchor()] if accounts is not None else []
        anchors += [journal.anchor(code) for code in journal.facilities()]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        lines = [f"{stamp}\t{a.text()}" for a in anchors]
        fd = os.open(data_dir / "anchors.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
        for a in anchors:
            print(a.text())
        return 0
    try:
        expected = read_anchors(args.anchor)
    except (OSError, ValueError) as exc:
        print(f"fhir-gateway audit verify: {exc}", file=sys.stderr)
        return 2
    if accounts is None:
        print(f"fhir-gateway audit: no accounts database in {data_dir}", file=sys.stderr)
        return 2
    report = accounts.audit_report(expected.get("audit"))
    print(report.line())
    return 0 if report.ok else 1
