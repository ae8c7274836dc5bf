"""The `guard` command: serve, dev, users, db, queue, config."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from guard.config import ConfigError, Settings, load_settings
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
DEV_SINK = "127.0.0.1:2526"


def _settings(args: argparse.Namespace, dev: bool = False) -> Settings:
    env = dict(os.environ)
    if dev:
        env = {**DEV_DEFAULTS, **env}
    return load_settings(getattr(args, "config", None), env)


def cmd_serve(args: argparse.Namespace, dev: bool = False) -> int:
    settings = _settings(args, dev)
    if settings.smtp.front_processes:
        from guard import multiproc

        multiproc.enable()  # before prometheus_client is imported (by guard.app)
    from guard.app import GuardApp

    setup_logging(settings.log.level, settings.log.format)
    app = GuardApp(settings, dev_sink_listen=DEV_SINK if dev else "")
    if dev:
        print(f"guard dev: SMTP on {settings.smtp.listen} (no AUTH, loopback only), "
              f"web on http://{settings.web.listen}/ , delivered mail at "
              f"http://{settings.web.listen}/dev/outbox , database {settings.database.url}",
              file=sys.stderr, flush=True)
    run_loop(app.run_until_signal())
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    from guard.smtp.users import add_user

    settings = _settings(args)
    path = args.file or settings.smtp.users_file
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
    if len(password) < 8:
        print("password too short (8 characters at least)", file=sys.stderr)
        return 2
    add_user(path, args.name, password, args.address or [], args.language or "")
    print(f"user {args.name} written to {path}")
    return 0


async def _with_engine(settings: Settings, fn: Any) -> Any:
    from guard.store import db

    engine = db.create_engine(settings.database.url)
    try:
        return await fn(engine)
    finally:
        await engine.dispose()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from guard.store import migrate

    settings = _settings(args)

    async def go(engine: Any) -> tuple[str | None, str | None]:
        await migrate.upgrade(engine)
        return await migrate.current_revision(engine)

    cur, head = asyncio.run(_with_engine(settings, go))
    print(f"database at revision {cur} (head {head})")
    return 0


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def cmd_queue_list(args: argparse.Namespace) -> int:
    from guard.store import queue as q

    settings = _settings(args)

    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            return await q.list_messages(conn, args.state, args.limit)

    rows = asyncio.run(_with_engine(settings, go))
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
    from guard.store import queue as q

    settings = _settings(args)

    async def go(engine: Any) -> dict[str, Any] | None:
        async with engine.connect() as conn:
            return await q.show_message(conn, args.id)

    row = asyncio.run(_with_engine(settings, go))
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
    doc = settings.model_dump()
    for section, key in (("upstream", "password"), ("", "secret")):
        target = doc[section] if section else doc
        if target.get(key):
            target[key] = "********"
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guard", description="Outbound email guard")
    p.add_argument("--config", "-c", help="config file (TOML); also GUARD_CONFIG")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run the guard (production shape)").set_defaults(
        func=cmd_serve)
    sub.add_parser("dev", help="run on embedded defaults with a development upstream"
                   ).set_defaults(func=lambda a: cmd_serve(a, dev=True))

    users = sub.add_parser("users", help="manage the users file").add_subparsers(
        dest="users_cmd", required=True)
    ua = users.add_parser("add", help="add or update a user (password is hashed)")
    ua.add_argument("name")
    ua.add_argument("--address", "-a", action="append",
                    help="an address the user may send as (repeatable)")
    ua.add_argument("--language", choices=["ja", "en"])
    ua.add_argument("--file", help="users file (default: smtp.users_file)")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    ua.set_defaults(func=cmd_users_add)

    dbp = sub.add_parser("db", help="database").add_subparsers(dest="db_cmd", required=True)
    dbp.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    qp = sub.add_parser("queue", help="look at the queue").add_subparsers(
        dest="queue_cmd", required=True)
    ql = qp.add_parser("list", help="list messages, newest first")
    ql.add_argument("--state")
    ql.add_argument("--limit", type=int, default=100)
    ql.add_argument("--json", action="store_true")
    ql.set_defaults(func=cmd_queue_list)
    qs = qp.add_parser("show", help="one message: recipients, verdict, audit trail")
    qs.add_argument("id")
    qs.add_argument("--json", action="store_true")
    qs.set_defaults(func=cmd_queue_show)
    from guard.hold.cli import add_queue_commands

    add_queue_commands(qp)

    from guard.policy_cli import add_commands

    add_commands(sub)

    cp = sub.add_parser("config", help="configuration").add_subparsers(
        dest="config_cmd", required=True)
    cs = cp.add_parser("show", help="print the effective settings (secrets masked)")
    cs.add_argument("--dev", action="store_true", help="with the `guard dev` defaults")
    cs.set_defaults(func=cmd_config_show)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"guard: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
