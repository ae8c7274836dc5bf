"""`guard users add|passwd|remove|list`: the users file (logins, their addresses and
aliases, language; passwords hashed, asked twice or read from one line of stdin)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from guard.cli.common import UsageError, settings_of

MIN_PASSWORD = 8


def add_commands(sub: Any) -> None:
    users = sub.add_parser("users", help="manage the users file").add_subparsers(
        dest="users_cmd", required=True)
    ua = users.add_parser("add", help="add or update a user (password asked twice, hashed)")
    ua.add_argument("name")
    ua.add_argument("--address", "-a", action="append",
                    help="the user's own address (repeatable)")
    ua.add_argument("--alias", action="append",
                    help="a shared address the user may also send as (repeatable)")
    ua.add_argument("--language", choices=["ja", "en"])
    ua.set_defaults(func=cmd_users_add)
    up = users.add_parser("passwd", help="set a user's password (asked twice)")
    up.add_argument("name")
    up.set_defaults(func=cmd_users_passwd)
    for sp in (ua, up):
        sp.add_argument("--password-stdin", action="store_true",
                        help="read the password from one line of stdin (no confirmation)")
    ur = users.add_parser("remove", help="remove a user")
    ur.add_argument("name")
    ur.set_defaults(func=cmd_users_remove)
    ul = users.add_parser("list", help="users and the addresses they may send as")
    ul.add_argument("--json", action="store_true")
    ul.set_defaults(func=cmd_users_list)
    for sp in (ua, up, ur, ul):
        sp.add_argument("--file", help="users file (default: smtp.users_file)")


def _users_file(args: argparse.Namespace) -> str:
    return str(args.file or settings_of(args).smtp.users_file)


def _user_name(name: str) -> str:
    # the AUTH login: printable, no spaces (it appears in log lines and SMTP replies)
    if not name or len(name) > 64 or not all(c.isprintable() and not c.isspace() for c in name):
        raise UsageError(f"user name {name!r}: 1-64 printable characters without spaces")
    from guard.ids import GUARD_SENDER
    from guard.users import reserved_name
    if name == GUARD_SENDER:  # its mail would be left out of alerts and reports
        raise UsageError(reserved_name(name))
    return name


def _addresses(values: list[str] | None, what: str) -> list[str]:
    from email_validator import EmailNotValidError, validate_email

    out = []
    for value in values or []:
        try:
            validate_email(value, check_deliverability=False, allow_smtputf8=True)
        except EmailNotValidError as e:
            raise UsageError(f"{what} {value!r}: {e}") from e
        out.append(value.strip())
    return out


def _new_password(args: argparse.Namespace, name: str) -> str:
    """From stdin (one line, for scripts) or typed twice at the terminal."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass(f"password for {name} again: ") != password:
            raise UsageError("the two passwords differ: nothing written")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"password too short ({MIN_PASSWORD} characters at least): "
                         "nothing written")
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    from guard.users import add_user

    name = _user_name(args.name)
    addresses = _addresses(args.address, "address")
    aliases = _addresses(args.alias, "alias")
    path = _users_file(args)
    password = _new_password(args, name)
    add_user(path, name, password, addresses, args.language or "", aliases)
    print(f"user {name} written to {path}")
    return 0


def cmd_users_passwd(args: argparse.Namespace) -> int:
    from guard.users import UsersFileError, read_users, set_password

    path = _users_file(args)
    if args.name not in read_users(path):
        raise UsersFileError(f"no user {args.name} in {path}")
    set_password(path, args.name, _new_password(args, args.name))
    print(f"password of {args.name} changed in {path}")
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    from guard.users import remove_user

    path = _users_file(args)
    remove_user(path, args.name)
    print(f"user {args.name} removed from {path}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from guard.users import read_users

    users = read_users(_users_file(args))
    if args.json:
        print(json.dumps([{"name": u.name, "addresses": list(u.addresses),
                           "aliases": list(u.aliases), "language": u.language,
                           "password_set": bool(u.password_hash)}
                          for u in users.values()], ensure_ascii=False, indent=1))
        return 0
    print(f"{'NAME':20} {'LANG':4} ADDRESSES (aliases)")
    for u in sorted(users.values(), key=lambda u: u.name):
        aliases = f" ({', '.join(u.aliases)})" if u.aliases else ""
        print(f"{u.name:20} {u.language or '-':4} {', '.join(u.addresses) or '-'}{aliases}")
    return 0
