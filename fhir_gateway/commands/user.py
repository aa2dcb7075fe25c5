"""``fhir-gateway user add|passwd|list|disable``: viewer accounts in ``{data_dir}/accounts.sqlite3``.

Passwords are read from a prompt (asked twice) or, for scripts, from ``--password-stdin`` —
never from the command line, where they would land in shell history and ``ps``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime
from pathlib import Path

from .. import config as config_mod


def register(subparsers) -> None:
    p = subparsers.add_parser("user", help="manage viewer accounts (add / passwd / list / disable)",
                              description=__doc__)
    sub = p.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    def common(sp):
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--config", help="gateway TOML (its data_dir holds the accounts)")
        g.add_argument("--data-dir", help="data directory holding accounts.sqlite3")

    a = sub.add_parser("add", help="create an account")
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=["system-admin", "hospital-admin", "viewer"])
    a.add_argument("--facility", help="facility code (required for hospital-admin; a viewer's home)")
    a.add_argument("--display", default="", help="label, e.g. department name")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    common(a)
    pw = sub.add_parser("passwd", help="set a new password (ends the user's sessions)")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")
    common(pw)
    ls = sub.add_parser("list", help="list accounts")
    common(ls)
    tp = sub.add_parser("totp", help="require a TOTP code at login (prints the otpauth URI once)")
    tp.add_argument("username")
    tp.add_argument("--disable", action="store_true", help="remove the account's TOTP")
    common(tp)
    d = sub.add_parser("disable", help="disable an account (ends its sessions)")
    d.add_argument("username")
    d.add_argument("--enable", action="store_true", help="re-enable instead")
    common(d)
    p.set_defaults(func=run)


def _data_dir(args) -> Path:
    if getattr(args, "data_dir", None):
        return Path(args.data_dir)
    if getattr(args, "config", None):
        return config_mod.load(args.config).data_dir
    return config_mod.default_data_dir()


def _accounts(args):
    """The account store of the config's [state] backend (sqlite in the data dir by default)."""
    from ..accounts import AccountStore
    if getattr(args, "config", None) and not getattr(args, "data_dir", None):
        from ..state import open_state
        return open_state(config_mod.load(args.config)).accounts()
    return AccountStore(_data_dir(args))


def _password(args) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise ValueError("--password-stdin: stdin is empty (give the password on one line)")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValueError("no terminal to ask for the password: use --password-stdin "
                         "(the password on one line of stdin)")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def run(args: argparse.Namespace) -> int:
    from ..accounts import AccountError
    try:
        store = _accounts(args)
        cmd = args.user_command
        if cmd == "add":
            if args.config and args.facility \
                    and args.facility not in config_mod.load(args.config).facilities:
                raise ValueError(f"facility {args.facility} is not in {args.config}")
            user = store.add_user(args.username, _password(args), args.role, args.facility,
                                  args.display)
            store.audit("user-add", username="cli", detail={"user": user.username,
                                                            "role": user.role,
                                                            "facility": user.facility or ""})
            print(f"added {user.username} ({user.role}{' ' + user.facility if user.facility else ''})")
        elif cmd == "passwd":
            store.set_password(args.username, _password(args))
            store.audit("user-passwd", username="cli", detail={"user": args.username})
            print(f"password changed for {args.username}; its sessions were ended")
        elif cmd == "disable":
            store.set_disabled(args.username, not args.enable)
            store.audit("user-enable" if args.enable else "user-disable", username="cli",
                        detail={"user": args.username})
            print(f"{args.username} {'enabled' if args.enable else 'disabled'}")
        elif cmd == "totp":
            if args.disable:
                store.disable_totp(args.username)
                store.audit("user-totp-off", username="cli", detail={"user": args.username})
                print(f"{args.username}: TOTP removed")
            else:
                uri = store.enable_totp(args.username)
                store.audit("user-totp-on", username="cli", detail={"user": args.username})
                print(uri)
                print("(add it to an authenticator app now: it is not shown again)",
                      file=sys.stderr)
        else:
            print(f"{'user':20} {'role':15} {'facility':12} {'state':9} created  display")
            for u in store.users():
                state = "disabled" if u.disabled else ("locked" if store.login_blocked(u.username) else "active")
                created = datetime.fromtimestamp(u.created).strftime("%Y-%m-%d")
                print(f"{u.username:20} {u.role:15} {u.facility or '-':12} {state:9} {created} {u.display}")
        return 0
    except (AccountError, ValueError, config_mod.ConfigError, OSError) as exc:
        print(f"fhir-gateway user: {exc}", file=sys.stderr)
        return 2
