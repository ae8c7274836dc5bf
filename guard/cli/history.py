"""`guard history import`: seed the delivery history (known domains and addresses) from
an address book, a Postfix log or an Exchange Online message trace."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.cli.common import (
    add_lang,
    fail,
    language,
    load_policy_at,
    os_user,
    policy_path,
    settings_of,
    with_store,
)
from guard.config import Settings

if TYPE_CHECKING:
    from guard.knowledge.historyfiles import HistoryFile
    from guard.store.access import Store

FORMAT_HELP = ("addressbook (Outlook, Thunderbird, Google Contacts CSV), postfix (a mail "
               "log's status=sent lines), exchange (an Exchange Online message trace CSV); "
               "default: detected")


def add_commands(sub: Any) -> None:
    hp = sub.add_parser("history", help="the delivery history (known domains and addresses)"
                        ).add_subparsers(dest="history_cmd", required=True)
    hi = hp.add_parser("import", help="mark the recipients of an old system's mail as known, "
                       "with their first-seen time (all rows or nothing)")
    hi.add_argument("file")
    hi.add_argument("--format", choices=("addressbook", "postfix", "exchange"),
                    help=FORMAT_HELP)
    hi.add_argument("--policy", help="policy file or folder, for its internal domains "
                    "(default: the configured one)")
    hi.add_argument("--dry-run", action="store_true", help="read and count; store nothing")
    add_lang(hi)
    hi.set_defaults(func=cmd_history_import)


def read_history(path: str, fmt: str | None, lang: str = "en") -> HistoryFile | int:
    """The parsed file, or an exit code after printing its bad rows (one line each, in
    `lang`: the reasons are in the policy errors' catalog)."""
    from guard.knowledge.historyfiles import parse_history
    from guard.policy.i18n import translate

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return fail(translate(f"cannot read {path}: {e.strerror}", lang))
    parsed = parse_history(data, fmt)
    if not parsed.ok:
        for bad in parsed.errors[:50]:
            where = f"{path}:{bad.line}" if bad.line else path
            print(f"{where}: {translate(bad.reason, lang)}"
                  + (f": {bad.text}" if bad.text else ""), file=sys.stderr)
        more = len(parsed.errors) - 50
        print(translate(f"history {path} (read as {parsed.format}): nothing imported "
                        f"({len(parsed.errors)} bad rows"
                        + (f", {more} not shown" if more > 0 else "") + ")", lang),
              file=sys.stderr)
        return 1
    return parsed


def sender_scope(settings: Settings) -> Callable[[str], str]:
    """A sender address → the history scope the guard keys it by: the name of the user
    who may send as it (users file), else the address (MAIL FROM on a trusted relay)."""
    from guard.mail.addresses import address_key
    from guard.users import UsersFileError, read_users

    by_address: dict[str, str] = {}
    try:
        users = read_users(settings.smtp.users_file)
    except (OSError, UsersFileError):
        users = {}
    for user in users.values():
        for a in user.identities:
            by_address.setdefault(address_key(a), user.name)
    return lambda address: by_address.get(address, address)


def cmd_history_import(args: argparse.Namespace) -> int:
    from guard.knowledge.historyfiles import seen_rows
    from guard.policy import PolicyError
    from guard.policy.i18n import localize_issue, translate
    from guard.store import knowledge

    settings = settings_of(args)
    lang = language(args)
    try:  # internal recipients are no history: the policy says which domains are ours
        policy = load_policy_at(policy_path(args, settings))
    except PolicyError as e:
        first = (localize_issue(e.issues[0], lang) if e.issues else
                 str(e).splitlines()[0] if str(e) else "invalid")
        return fail(translate(
            f"cannot tell the internal domains: the policy does not load ({first}); "
            "fix it first (`guard policy check`) or give --policy", lang))
    parsed = read_history(args.file, args.format, lang)
    if isinstance(parsed, int):
        return parsed
    now = time.time()
    domains, addresses, internal = seen_rows(parsed.sent, policy.internal_domains,
                                             sender_scope(settings), now)
    org_domains = {d.value for d in domains if d.scope == knowledge.ORG}
    org_addresses = {a.value for a in addresses if a.scope == knowledge.ORG}
    senders = {a.scope for a in addresses if a.scope != knowledge.ORG}
    times = [s.at for s in parsed.sent if s.at is not None]
    span = (f", first seen {time.strftime('%Y-%m-%d', time.localtime(min(times)))} – "
            f"{time.strftime('%Y-%m-%d', time.localtime(max(times)))}" if times else "")
    summary = (f"{len(parsed.sent)} deliveries read as {parsed.format}: "
               f"{len(org_addresses)} addresses, {len(org_domains)} domains, "
               f"{len(senders)} senders{span}; {internal} internal and "
               f"{parsed.skipped} other rows skipped")
    if args.dry_run:
        print(f"dry run: {summary}; nothing stored")
        return 0

    async def go(store: Store) -> tuple[int, int]:
        assert store.writer is not None
        written: tuple[int, int] = await store.writer.submit(
            lambda conn, now: knowledge.import_history(
                conn, now, domains, addresses, f"cli:{os_user()}", args.file,
                {"format": parsed.format, "deliveries": len(parsed.sent),
                 "senders": len(senders)}))
        return written

    with_store(settings, go, write=True, upgrade=True)
    print(f"{summary}; marked as known (org-wide, and per sender where the file names "
          "one)")
    return 0
