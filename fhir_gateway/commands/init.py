"""``fhir-gateway init``: write a commented ``gateway.toml`` for real storage and create the data
directory, so an operator edits nothing by hand.

The facility code (医療機関コード) is read from the data when it is not given: MSH-4 of the
SS-MIX2 messages, the IR header of UKE receipts.  Exit 0 = written, 2 = usage error (one line
saying what to give).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "init", help="write gateway.toml for a storage root and create the data directory",
        description="Write a commented TOML config (one facility) and create its data "
                    "directory (mode 0700).  The facility code is detected from MSH-4 of the "
                    "stored messages and the UKE receipt headers unless --facility is given. "
                    "Asks nothing; prints the next commands.")
    p.add_argument("--storage", action="append", required=True, metavar="PATH",
                   help="SS-MIX2 root (repeat: primary first, then mirrors)")
    p.add_argument("--receipts", action="append", default=[], metavar="PATH",
                   help="UKE receipts folder (optional, repeatable)")
    p.add_argument("--extended", action="append", default=[], metavar="PATH",
                   help="extended storage root (optional, repeatable)")
    p.add_argument("--facility", metavar="CODE", help="facility code (default: detected)")
    p.add_argument("--name", help="facility name shown in the viewer (default: the code)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="data directory (default: ./data next to the config)")
    p.add_argument("--config", metavar="FILE", default="gateway.toml",
                   help="where to write the config (default ./gateway.toml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing config")
    p.set_defaults(func=run)


def _toml_list(paths: list[Path]) -> str:
    return "[" + ", ".join(_toml_str(str(p)) for p in paths) + "]"


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(code: str, name: str, storage: list[Path], receipts: list[Path],
           extended: list[Path], data_dir: str, where: str) -> str:
    """The config text: every line an operator may want to change is commented."""
    lines = [
        "# fhir-gateway configuration, written by `fhir-gateway init`.",
        "# Reference: docs/configuration.md.  Relative paths are relative to this file.",
        "# Precedence for every setting: command-line flag > environment > this file > default.",
        "",
        "# accounts, API tokens, memos, indexes and caches (keep it; mode 0700)",
        f"data_dir = {_toml_str(data_dir)}",
        "",
        "[[facility]]",
        f"code = {_toml_str(code)}                  # {where}; the FHIR base is /fhir/{code}",
        f"name = {_toml_str(name)}",
        "# SS-MIX2 standardized storage: primary first, then mirrors (failover order)",
        f"storage = {_toml_list(storage)}",
    ]
    lines.append("# UKE receipt folders (-> Claim); extended storage (-> DocumentReference)")
    lines.append(f"receipts = {_toml_list(receipts)}" if receipts else "# receipts = [\"/mnt/uke\"]")
    lines.append(f"extended = {_toml_list(extended)}" if extended
                 else "# extended = [\"/mnt/ssmix2-ext\"]")
    lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from fhir_gateway.config import FACILITY_CODE, ConfigError, load

    def usage(msg: str) -> int:
        print(f"fhir-gateway init: {msg}", file=sys.stderr)
        return 2

    config = Path(args.config).resolve()
    if config.exists() and not args.force:
        return usage(f"{config} exists; use --force to overwrite it")
    storage = [Path(s).resolve() for s in args.storage]
    receipts = [Path(s).resolve() for s in args.receipts]
    extended = [Path(s).resolve() for s in args.extended]
    for p in storage + receipts + extended:
        if not p.is_dir():
            return usage(f"{p} is not a folder")
    if args.facility:
        if not FACILITY_CODE.match(args.facility):
            return usage(f"facility code {args.facility!r} must be 1-16 letters or digits")
        code, where = args.facility, "given with --facility"
    else:
        from fhir_gateway.facility_codes import detect_codes
        found = detect_codes(storage, receipts)
        if len(found) != 1:
            listed = ", ".join(f"{c} ({w})" for c, w in sorted(found.items()))
            why = f"several facility codes in the data: {listed}" if found else \
                "no facility code found in the data (MSH-4, UKE headers)"
            return usage(f"{why}; give --facility CODE (the 10-digit 医療機関コード)")
        ((code, where),) = found.items()
        where = f"from {where}"
    data_dir = Path(args.data_dir).resolve() if args.data_dir else config.parent / "data"
    shown = os.path.relpath(data_dir, config.parent) if not args.data_dir else str(data_dir)
    text = render(code, args.name or code, storage, receipts, extended, shown, where)
    try:
        config.parent.mkdir(parents=True, exist_ok=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        tmp = config.with_name(config.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        load(tmp)  # what was written must load
        tmp.replace(config)
    except (OSError, ConfigError) as exc:
        return usage(str(exc))
    c = str(config)
    print(f"wrote {c} (facility {code}, {where}); data directory {data_dir} (0700)")
    print("next:")
    print(f"  fhir-gateway check --config {c}                     # drill: can every file be read?")
    print(f"  fhir-gateway index --config {c}                     # Patient search index")
    print(f"  fhir-gateway token create --config {c} --name my-app --facility {code}")
    print(f"  fhir-gateway user add --config {c} admin --role system-admin --password-stdin")
    print(f"  fhir-gateway serve --config {c}                     # http://127.0.0.1:8080/")
    return 0
