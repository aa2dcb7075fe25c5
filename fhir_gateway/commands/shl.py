"""``fhir-gateway shl``: SMART Health Links that hand a patient their encrypted summary."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from ._common import fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shl", help="create, list and revoke SMART Health Links (patient summary)",
                       description="A SMART Health Link carries the patient's IPS summary, "
                                   "encrypted (JWE dir+A256GCM); the key is only in the link "
                                   "and its QR code, never on the server.")
    ssub = p.add_subparsers(dest="shl_command", metavar="ACTION")
    c = ssub.add_parser("create", help="encrypt a patient's summary and print its shlink")
    c.add_argument("--facility", required=True, help="facility code")
    c.add_argument("--patient", required=True, help="patient id")
    c.add_argument("--base-url",
                   help="public URL of this server as the patient's reader reaches it, "
                        "e.g. https://gateway.example.jp (default: public_url of the config)")
    pc = c.add_mutually_exclusive_group()
    pc.add_argument("--passcode", help="passcode the reader must give (shared separately)")
    pc.add_argument("--passcode-stdin", action="store_true", help="read the passcode from stdin")
    c.add_argument("--expires", default="30d", help="lifetime: 30d, 12h, 90m (default 30d)")
    c.add_argument("--label", default="", help="label shown by readers (max 80 characters)")
    c.add_argument("--out", help="folder for shl.txt, shl.png and shl.svg (QR codes)")
    c.set_defaults(func=run_create)
    ls = ssub.add_parser("list", help="list links (never their keys)")
    ls.add_argument("--facility", help="only this facility")
    ls.set_defaults(func=run_list)
    r = ssub.add_parser("revoke", help="revoke a link and delete its file")
    r.add_argument("link_id", help="link id (from create or list); an id an older version made that "
                   "starts with '-' is written after '--': shl revoke --config C -- -Id")
    r.set_defaults(func=run_revoke)
    for q in (c, ls, r):
        q.add_argument("--config", required=True, help="TOML config (facilities and data_dir)")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _fail(message: str, code: int = 2) -> int:
    return fail("shl", message, code)


def _config(args: argparse.Namespace):
    from fhir_gateway.config import ConfigError, load
    try:
        return load(args.config)
    except (ConfigError, OSError) as exc:
        _fail(str(exc))
        return None


def run_create(args: argparse.Namespace) -> int:
    from fhir_gateway.services import Gateway
    from fhir_gateway.services.errors import ServiceError
    from fhir_gateway.summary import service
    from fhir_gateway.summary.shl import LinkStore, parse_duration, qr_png, qr_svg

    cfg = _config(args)
    if cfg is None:
        return 2
    if args.facility not in cfg.facilities:
        return _fail(f"facility {args.facility} is not in {args.config}")
    args.base_url = args.base_url or cfg.public_url
    if not args.base_url:
        return _fail("give --base-url, or set public_url in the config: the link must name "
                     "this server as the patient's reader reaches it")
    if not args.base_url.startswith(("https://", "http://")):
        return _fail("--base-url must start with https:// (or http:// for a local test)")
    try:
        expires = parse_duration(args.expires)
    except ValueError as exc:
        return _fail(f"--expires: {exc}")
    passcode = args.passcode
    if args.passcode_stdin:
        passcode = sys.stdin.readline().rstrip("\n")
        if not passcode:
            return _fail("--passcode-stdin: no passcode on standard input")
    svc = Gateway(cfg).facility(args.facility)
    try:
        document = service.ips_bytes(svc, args.patient,
                                     f"{args.base_url.rstrip('/')}/fhir/{args.facility}")
    except ServiceError as exc:
        return _fail(f"patient {args.patient}: {exc}", 1)
    links = LinkStore(cfg.data_dir)
    link, text = links.create(facility=args.facility, patient=args.patient, document=document,
                              base_url=args.base_url, label=args.label, passcode=passcode,
                              expires_in=expires, created_by="cli")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "shl.txt").write_text(text + "\n", encoding="utf-8")
        (out / "shl.png").write_bytes(qr_png(text))
        (out / "shl.svg").write_text(qr_svg(text), encoding="utf-8")
    print(text)
    until = datetime.fromtimestamp(link.expires).isoformat(timespec="minutes") \
        if link.expires else "never"
    print(f"link {link.id}: patient {args.patient}, {link.size} bytes encrypted, "
          f"expires {until}{', passcode required' if passcode else ''}", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from fhir_gateway.summary.shl import LinkStore
    cfg = _config(args)
    if cfg is None:
        return 2
    for link in LinkStore(cfg.data_dir).list(args.facility):
        state = "revoked" if link.revoked else ("active" if link.active else "inactive")
        until = datetime.fromtimestamp(link.expires).isoformat(timespec="minutes") \
            if link.expires else "-"
        print(f"{link.id}\t{link.facility}\t{link.patient}\t{until}\t{state}\t"
              f"passcode={'yes' if link.has_passcode else 'no'}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from fhir_gateway.summary.shl import LinkStore
    cfg = _config(args)
    if cfg is None:
        return 2
    if LinkStore(cfg.data_dir).revoke(args.link_id):
        print(f"revoked {args.link_id}")
        return 0
    return _fail(f"no link {args.link_id!r}", 1)
