"""`guard queue release ID` and `guard queue cancel ID --reason …` (list and show are in
guard/cli/main.py). They call the same lifecycle functions as the web pages and the timers,
as an admin, and the sender is told. `--by ADDRESS` names the admin who acts: the
notice names that address (never the account the command ran under, which only goes
into the audit row)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from guard.config import Settings, load_settings

if TYPE_CHECKING:  # imported when a command runs: `guard serve` must set up metrics first
    from guard.hold.acts import Actor, Result

EXIT = {"not_found": 1, "not_held": 3, "forbidden": 3, "used": 3, "already": 3}


def add_queue_commands(queue_subparsers: Any) -> None:
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


def _address(value: str) -> str:
    from guard.mail.addresses import InvalidAddress, address_form, valid_address_key

    try:
        valid_address_key(value)
        return address_form(value)
    except InvalidAddress as e:
        raise argparse.ArgumentTypeError(f"not an email address: {value!r} ({e})") from None


def _admin(by: str = "") -> Actor:
    from guard.hold.acts import Actor

    os_user = os.environ.get("SUDO_USER") or getpass.getuser()
    return Actor("admin", by or os_user, "cli", os_user=os_user)


def _secret(settings: Settings) -> bytes:
    from guard.secret import NoSecretHome, load_secret

    # release and cancel send notices without links, so no secret is needed: read the
    # guard's own (its one home, guard/secret.py) if there is one, never create one
    try:
        secret = load_secret(settings)
    except NoSecretHome:
        secret = None
    return secret if secret is not None else os.urandom(32)


async def _with_service(settings: Settings, secret: bytes, fn: Any) -> Result:
    from guard.hold.service import HoldService
    from guard.store.access import open_store

    async with open_store(settings.database.url, write=True) as store:
        assert store.writer is not None
        return await fn(HoldService(store.engine, store.writer, settings, secret,
                                    internal_domains=_policy_domains(settings)))


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
    settings = load_settings(getattr(args, "config", None))
    res = asyncio.run(_with_service(settings, _secret(settings), lambda s: s.lifecycle.release(
        args.id, _admin(args.by or ""), reason=args.reason)))
    return _report(res, args.id, "released: queued for delivery (the sender is told)")


def cmd_cancel(args: argparse.Namespace) -> int:
    settings = load_settings(getattr(args, "config", None))
    res = asyncio.run(_with_service(settings, _secret(settings), lambda s: s.lifecycle.cancel(
        args.id, _admin(args.by or ""), reason="admin", note=args.reason)))
    return _report(res, args.id, "cancelled: not sent (the sender is told)")
