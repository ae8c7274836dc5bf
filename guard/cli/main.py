"""The `guard` command: serve, dev, users, db, queue, config.

Every error is one line on stderr and a non-zero exit (2: configuration or usage, 1:
anything else); the traceback of an unexpected error only with --debug or GUARD_DEBUG=1.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from guard.config import (
    ConfigError,
    Settings,
    load_settings,
    masked,
    parse_upstream_url,
    shipped_policy,
)
from guard.eventloop import run_loop
from guard.logs import setup_logging

DEV_DEFAULTS = {
    "GUARD_SMTP_LISTEN": "127.0.0.1:2525",
    "GUARD_SMTP_MODE": "trusted",
    "GUARD_TRUSTED_NETWORKS": "127.0.0.0/8,::1/128",
    "GUARD_UPSTREAM": "smtp://127.0.0.1:2526",
    "GUARD_WEB_LISTEN": "127.0.0.1:8025",
    "GUARD_DATABASE_URL": "sqlite:///guard.db",
    "GUARD_HOSTNAME": "guard.localhost",
    # quick retries, so a newcomer sees deferral and retry without waiting 5 minutes
    "GUARD_DELIVERY__MIN_BACKOFF": "10",
    "GUARD_DELIVERY__MAX_BACKOFF": "60",
}


class UsageError(Exception):
    """A command was given something it cannot use (one line, exit 2)."""


def _settings(args: argparse.Namespace, dev: bool = False) -> Settings:
    env = dict(os.environ)
    if dev:
        env = {**DEV_DEFAULTS, **env}
    settings = load_settings(getattr(args, "config", None), env)
    if dev and not settings.policy.path:
        example = shipped_policy()
        if example is None:
            raise ConfigError("the shipped example policy is not installed: set policy.path "
                              "(GUARD_POLICY)")
        settings.policy.path = str(example)
    return settings


def dev_sink(settings: Settings) -> str:
    """Where `guard dev` runs its development upstream: where the upstream setting points,
    when that is plain SMTP on this machine ("": a real upstream was configured)."""
    security, host, port, _, _ = parse_upstream_url(settings.upstream.url)
    if security == "plain" and host in ("127.0.0.1", "localhost", "::1"):
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ""


def cmd_serve(args: argparse.Namespace, dev: bool = False) -> int:
    settings = _settings(args, dev)
    if settings.smtp.front_processes:
        from guard import multiproc

        multiproc.enable()  # before prometheus_client is imported (by guard.app)
    from guard.app import GuardApp, require_policy

    if settings.inspect.enabled:
        require_policy(settings)  # before anything starts: no sample, no pass-everything
    setup_logging(settings.log.level, settings.log.format)
    app = GuardApp(settings, dev_sink_listen=dev_sink(settings) if dev else "")
    if dev:
        sink = app.dev_sink_listen
        where = (f"delivered mail at http://{settings.web.listen}/dev/outbox" if sink
                 else f"relaying to {settings.upstream.url}")
        print(f"guard dev: SMTP on {settings.smtp.listen} (no AUTH, loopback only), "
              f"web on http://{settings.web.listen}/ , {where} , database "
              f"{settings.database.url}, policy {settings.policy.path}",
              file=sys.stderr, flush=True)
    run_loop(app.run_until_signal())
    return 0


MIN_PASSWORD = 8


def _users_file(args: argparse.Namespace) -> str:
    return str(args.file or _settings(args).smtp.users_file)


def _user_name(name: str) -> str:
    # the AUTH login: printable, no spaces (it appears in log lines and SMTP replies)
    if not name or len(name) > 64 or not all(c.isprintable() and not c.isspace() for c in name):
        raise UsageError(f"user name {name!r}: 1-64 printable characters without spaces")
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


async def _read(settings: Settings, fn: Any) -> Any:
    """fn(engine) on the existing store (a read command never creates one)."""
    from guard.store.access import open_store

    async with open_store(settings.database.url) as store:
        return await fn(store.engine)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from guard.store import migrate
    from guard.store.access import open_store

    settings = _settings(args)

    async def go() -> tuple[str | None, str | None]:
        async with open_store(settings.database.url, upgrade=True) as store:
            return await migrate.current_revision(store.engine)

    cur, head = asyncio.run(go())
    print(f"database at revision {cur} (head {head})")
    from guard.secret import NoSecretHome, load_or_create_secret, secret_home

    try:  # the store's secret lives beside it from the start (guard/secret.py)
        load_or_create_secret(settings)
        print(f"secret: {secret_home(settings).describe()}")
    except NoSecretHome as e:
        print(f"secret: not set ({e})")
    return 0


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def cmd_queue_list(args: argparse.Namespace) -> int:
    from guard.store import reads

    settings = _settings(args)

    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            return await reads.list_messages(conn, args.state, args.limit)

    rows = asyncio.run(_read(settings, go))
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1, default=str))
        return 0
    print(f"{'ID':18} {'STATE':10} {'RECEIVED':19} {'FROM':30} RCPTS  SUBJECT")
    for r in rows:
        state = r["state"]
        if r["lease_owner"] and state in ("queued", "deferred"):
            state = "delivering"
        print(f"{r['id']:18} {state:10} {_fmt_time(r['received_at']):19} "
              f"{(r['mail_from'] or '<>')[:30]:30} {len(r['recipients']):5}  "
              f"{r['subject'][:60]}")
    return 0


def cmd_queue_show(args: argparse.Namespace) -> int:
    from guard.store import reads

    settings = _settings(args)

    async def go(engine: Any) -> dict[str, Any] | None:
        async with engine.connect() as conn:
            return await reads.show_message(conn, args.id)

    row = asyncio.run(_read(settings, go))
    if row is None:
        print(f"no message {args.id}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(row, ensure_ascii=False, indent=1, default=str))
        return 0
    print(f"id:        {row['id']}\nstate:     {row['state']}\nfrom:      <{row['mail_from']}>"
          f"\nsender:    {row['sender']}\nsubject:   {row['subject']}\nsize:      {row['size']}"
          f"\nreceived:  {_fmt_time(row['received_at'])}\nattempts:  {row['attempts']}"
          f"\nnext try:  {_fmt_time(row['next_attempt_at'])}")
    verdict = row["verdict"] or {}
    print(f"verdict:   {verdict.get('action', '-')}")
    for reason in verdict.get("reasons", []):
        print(f"  - {reason.get('rule', '')}: {reason.get('symbol', '')} "
              f"{reason.get('reason_ja', '')} / {reason.get('reason_en', '')}")
    findings = verdict.get("findings", [])
    if findings:
        print("findings:")
        for f in findings:
            print(f"  - {f.get('symbol', '')} ×{f.get('count', 1)} score {f.get('score', 0)} "
                  f"at {f.get('where', '') or '-'}: {f.get('reason_en', '')}")
    print("recipients:")
    for r in row["recipients"]:
        print(f"  {r['address']:40} {r['state']:10} {r['last_code'] or ''} {r['last_reply']}")
    print("audit:")
    for a in row["audit"]:
        print(f"  {_fmt_time(a['at'])} {a['actor']:30} {a['action']:20} "
              f"{a['from_state'] or '-'} → {a['to_state'] or '-'}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    settings = _settings(args, dev=args.dev)
    doc = masked(settings.model_dump())
    from guard.secret import NoSecretHome, secret_home

    try:  # where the secret lives, never its value
        doc["secret_location"] = secret_home(settings).describe()
    except NoSecretHome as e:
        doc["secret_location"] = f"none: {e}"
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (its default prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from guard.store.lifecycle import State

    p = _Parser(prog="guard", description="Outbound email guard")
    p.add_argument("--config", "-c", help="config file (TOML); also GUARD_CONFIG")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an unexpected error (also GUARD_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run the guard (production shape)").set_defaults(
        func=cmd_serve)
    sub.add_parser("dev", help="run on embedded defaults with a development upstream"
                   ).set_defaults(func=lambda a: cmd_serve(a, dev=True))

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

    dbp = sub.add_parser("db", help="database").add_subparsers(dest="db_cmd", required=True)
    dbp.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    qp = sub.add_parser("queue", help="look at the queue").add_subparsers(
        dest="queue_cmd", required=True)
    ql = qp.add_parser("list", help="list messages, newest first")
    states = (*State, "delivering")
    ql.add_argument("--state", choices=states, metavar="STATE",
                    help=f"only this state: {', '.join(states)}")
    ql.add_argument("--limit", type=int, default=100)
    ql.add_argument("--json", action="store_true")
    ql.set_defaults(func=cmd_queue_list)
    qs = qp.add_parser("show", help="one message: recipients, verdict, audit trail")
    qs.add_argument("id")
    qs.add_argument("--json", action="store_true")
    qs.set_defaults(func=cmd_queue_show)
    from guard.cli.holds import add_queue_commands

    add_queue_commands(qp)
    from guard.cli.retry import add_queue_commands as add_retry_command

    add_retry_command(qp)

    from guard.cli.policy import add_commands

    add_commands(sub)

    cp = sub.add_parser("config", help="configuration").add_subparsers(
        dest="config_cmd", required=True)
    cs = cp.add_parser("show", help="print the effective settings (secrets masked)")
    cs.add_argument("--dev", action="store_true", help="with the `guard dev` defaults")
    cs.set_defaults(func=cmd_config_show)
    return p


def _error(message: object) -> None:
    print("guard: " + " ".join(str(message).split()), file=sys.stderr)


def _quiet_broken_pipe() -> int:
    # the reader went away (`guard queue list | head`): nothing more to say, and the
    # interpreter's own flush at exit must not complain either
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # as a command killed by SIGPIPE


def _known_error(e: Exception) -> int:
    """The exit code of an error that is one line by design (0: not one of them)."""
    # imported here: `guard serve` must set up the metrics before prometheus_client is
    # imported (guard.store pulls it in)
    from guard.policy import PolicyError
    from guard.store.access import StoreNotReady
    from guard.users import UsersFileError

    if isinstance(e, (ConfigError, StoreNotReady, UsageError)):
        return 2
    if isinstance(e, (UsersFileError, PolicyError)):
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("GUARD_DEBUG", "") not in ("", "0")
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        known = _known_error(e)
        if known:
            _error(e)
            return known
        if debug:
            traceback.print_exc()
        if isinstance(e, OSError):  # a file not there or not readable, a port in use
            _error(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else e)
        else:
            _error(f"unexpected error: {type(e).__name__}: {e} "
                   "(--debug or GUARD_DEBUG=1 shows the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
