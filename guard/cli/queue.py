"""`guard queue list|show|release|cancel|retry`: look at the queue and act on it.

release and cancel call the same lifecycle functions as the web pages and the timers,
as an admin, and the sender is told. `--by ADDRESS` names the admin who acts: the
notice names that address (never the account the command ran under, which only goes
into the audit row).

retry: the store marks deferred messages due (one audit row each); a running guard
sends them at its next queue poll (`delivery.poll_interval`), or once its pause after
an upstream that refused connections is over (at most a minute)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from guard.cli.common import fail, os_user, settings_of, with_store
from guard.config import Settings

if TYPE_CHECKING:  # imported when a command runs: `guard serve` must set up metrics first
    from guard.hold.acts import Actor, Result
    from guard.hold.service import HoldService
    from guard.store.access import Store

# release and cancel: exit codes of a message that is not there or cannot be acted on
EXIT = {"not_found": 1, "not_held": 3, "forbidden": 3, "used": 3, "already": 3}
# retry: 0 done (or nothing to do), 1 no such message, 3 not a message that waits
NOT_FOUND, NOT_WAITING = 1, 3


def add_commands(sub: Any) -> None:
    add_queue_commands(sub.add_parser("queue", help="look at the queue").add_subparsers(
        dest="queue_cmd", required=True))


def add_queue_commands(queue_subparsers: Any) -> None:
    from guard.store.lifecycle import State

    states = [str(s) for s in State]

    ql = queue_subparsers.add_parser("list", help="list messages, newest first")
    ql.add_argument("--state", choices=(*states, "delivering"), metavar="STATE",
                    help=f"only this state: {', '.join((*states, 'delivering'))}")
    ql.add_argument("--limit", type=int, default=100)
    ql.add_argument("--json", action="store_true")
    ql.set_defaults(func=cmd_queue_list)
    qs = queue_subparsers.add_parser("show", help="one message: recipients, verdict, audit trail")
    qs.add_argument("id")
    qs.add_argument("--json", action="store_true")
    qs.set_defaults(func=cmd_queue_show)

    rel = queue_subparsers.add_parser("release", help="release a held message (admin)")
    rel.add_argument("id")
    rel.add_argument("--reason", default="", help="why (kept in the audit trail)")
    rel.add_argument("--by", default=None, metavar="ADDRESS", type=_address,
                     help="your address: the notice names you (else 'an administrator')")
    rel.set_defaults(func=cmd_release)
    can = queue_subparsers.add_parser(
        "cancel", help="cancel a held message (admin; the sender is told)")
    can.add_argument("id")
    can.add_argument("--reason", required=True, help="why (told to the sender, audited)")
    can.add_argument("--by", default=None, metavar="ADDRESS", type=_address,
                     help="your address: the notice names you (else 'an administrator')")
    can.set_defaults(func=cmd_cancel)

    r = queue_subparsers.add_parser(
        "retry", help="try deferred mail again now (a running guard sends it at its next poll)")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="the queue id")
    which.add_argument("--all", action="store_true", help="every message waiting for a retry")
    r.set_defaults(func=cmd_retry)


# --- list, show --------------------------------------------------------------------------

def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def cmd_queue_list(args: argparse.Namespace) -> int:
    from guard.store import reads

    async def go(store: Store) -> list[dict[str, Any]]:
        async with store.engine.connect() as conn:
            return await reads.list_messages(conn, args.state, args.limit)

    rows = with_store(settings_of(args), go)
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

    async def go(store: Store) -> dict[str, Any] | None:
        async with store.engine.connect() as conn:
            return await reads.show_message(conn, args.id)

    row = with_store(settings_of(args), go)
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


# --- release, cancel ---------------------------------------------------------------------

def _address(value: str) -> str:
    from guard.mail.addresses import InvalidAddress, address_form, valid_address_key

    try:
        valid_address_key(value)
        return address_form(value)
    except InvalidAddress as e:
        raise argparse.ArgumentTypeError(f"not an email address: {value!r} ({e})") from None


def _admin(by: str = "") -> Actor:
    from guard.hold.acts import Actor

    user = os_user()
    return Actor("admin", by or user, "cli", os_user=user)


def _secret(settings: Settings) -> bytes:
    from guard.secret import NoSecretHome, load_secret

    # release and cancel send notices without links, so no secret is needed: read the
    # guard's own (its one home, guard/secret.py) if there is one, never create one
    try:
        secret = load_secret(settings)
    except NoSecretHome:
        secret = None
    return secret if secret is not None else os.urandom(32)


def _with_service(settings: Settings, fn: Callable[[HoldService], Any]) -> Result:
    from guard.hold.service import HoldService

    secret = _secret(settings)

    async def go(store: Store) -> Result:
        assert store.writer is not None
        result: Result = await fn(HoldService(store.engine, store.writer, settings, secret,
                                              internal_domains=_policy_domains(settings)))
        return result

    return with_store(settings, go, write=True)


def _policy_domains(settings: Settings) -> Callable[[], Sequence[str]]:
    """The configured policy's internal domains, read when a notice needs them (its
    From: is noreply@ the first one, as `guard serve` sends it)."""

    @functools.cache
    def domains() -> Sequence[str]:
        from guard.app import policy_path
        from guard.policy import load_policy

        path = policy_path(settings)
        return load_policy(path).doc.defaults.internal_domains if path else ()

    return domains


def _report(res: Result, message_id: str, done: str) -> int:
    if res.ok:
        print(f"{message_id}: {done}")
        return 0
    what = {"not_found": "no such message", "not_held": f"not held (state: {res.state})",
            "forbidden": "not allowed"}.get(res.code, res.code)
    print(f"{message_id}: {what}", file=sys.stderr)
    return EXIT.get(res.code, 3)


def cmd_release(args: argparse.Namespace) -> int:
    res = _with_service(settings_of(args), lambda s: s.lifecycle.release(
        args.id, _admin(args.by or ""), reason=args.reason))
    return _report(res, args.id, "released: queued for delivery (the sender is told)")


def cmd_cancel(args: argparse.Namespace) -> int:
    res = _with_service(settings_of(args), lambda s: s.lifecycle.cancel(
        args.id, _admin(args.by or ""), reason="admin", note=args.reason))
    return _report(res, args.id, "cancelled: not sent (the sender is told)")


# --- retry -------------------------------------------------------------------------------

def cmd_retry(args: argparse.Namespace) -> int:
    from guard.config import sqlite_path
    from guard.store import queue as q
    from guard.store.access import StoreNotReady

    settings = settings_of(args)
    path = sqlite_path(settings.database.url)
    if path is not None and not path.exists():
        return fail(f"no database at {path} (check database.url or GUARD_DATABASE_URL)", 1)
    actor = f"cli:admin:{os_user()}"
    message_id = None if args.all else args.id

    async def go(store: Store) -> Any:
        assert store.writer is not None
        if message_id is None:
            return await store.writer.submit(lambda conn, now: q.retry_all(conn, now, actor))
        return await store.writer.submit(
            lambda conn, now: q.retry_now(conn, now, message_id, actor))

    try:
        res = with_store(settings, go, write=True)
    except (StoreNotReady, OSError) as e:  # the writer's "unavailable" is an OSError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return fail(f"the database could not be updated: {first}", 1)
    if args.all:
        print(f"{len(res)} messages due now: a running guard sends them at its next poll"
              if res else "nothing waits for a retry")
        return 0
    said = {
        "retried": (0, f"{res.id}: due now ({res.state}); a running guard sends it at its "
                       "next poll"),
        "due": (0, f"{res.id}: already due ({res.state})"),
        "delivering": (0, f"{res.id}: being delivered now"),
        "not_waiting": (NOT_WAITING, f"{res.id}: not waiting for a retry (state: {res.state})"),
        "not_found": (NOT_FOUND, f"{res.id}: no such message"),
    }
    code, text = said[res.result]
    print(text, file=sys.stderr if code else sys.stdout)
    return code
