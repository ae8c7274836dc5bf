"""`guard policy check|test|replay`: validate a policy, the verdict it gives one
message, what it would have done with past traffic."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.cli.common import (
    add_lang,
    fail,
    language,
    load_policy_at,
    policy_path,
    settings_of,
    with_store,
)
from guard.config import Settings

if TYPE_CHECKING:
    from guard.knowledge.listsync import ListKey
    from guard.policy import Policy, PolicyError
    from guard.policy.verdict import Verdict
    from guard.store.access import Store

SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> float:
    m = SINCE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration like 30m, 12h, 7d: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def add_commands(sub: Any) -> None:
    pol = sub.add_parser("policy", help="check and try policies").add_subparsers(
        dest="policy_cmd", required=True)
    pc = pol.add_parser("check", help="validate a policy (file or folder)")
    pc.add_argument("path", nargs="?")
    add_lang(pc)
    pc.set_defaults(func=cmd_policy_check)
    pt = pol.add_parser("test", help="the verdict for a message, without sending it")
    pt.add_argument("message", help="an .eml file")
    pt.add_argument("--from", dest="mail_from", help="envelope sender (default: From:)")
    pt.add_argument("--to", action="append", help="envelope recipient (repeatable; "
                    "default: To/Cc/Bcc)")
    pt.add_argument("--sender", help="the authenticated user (history scope)")
    pt.add_argument("--policy", help="policy file or folder (default: the configured one)")
    pt.add_argument("--no-history", action="store_true",
                    help="test against an empty delivery history and no store (on purpose: "
                    "without it a missing database is an error)")
    pt.add_argument("--history", metavar="FILE",
                    help="test against the history this file seeds (an address book, a "
                    "Postfix log, an Exchange message trace, as `guard history import` "
                    "reads them) and no store")
    pt.add_argument("--history-format", choices=("addressbook", "postfix", "exchange"),
                    help="the --history file's format (default: detected)")
    pt.add_argument("--json", action="store_true")
    pt.add_argument("--explain", action="store_true",
                    help="say for every rule why it matched or not (each scope test, the "
                    "except test that excluded it, each branch of its conditions) and per "
                    "recipient what happens (drops, split holds)")
    add_lang(pt)
    pt.set_defaults(func=cmd_policy_test)
    pr = pol.add_parser("replay", help="what a policy would have done with past traffic")
    pr.add_argument("--since", default="7d", help="how far back: 30m, 12h, 7d, 2w")
    pr.add_argument("--policy", help="the policy to try (default: the configured one)")
    pr.add_argument("--json", action="store_true")
    add_lang(pr)
    pr.set_defaults(func=cmd_policy_replay)


def _print_errors(e: PolicyError, lang: str) -> None:
    """A policy's errors, one per line on stderr, in the admin's language."""
    from guard.policy.i18n import localize_issue

    if not e.issues:
        print(str(e), file=sys.stderr)
    for issue in e.issues:
        print(localize_issue(issue, lang), file=sys.stderr)


def _policy_or_error(args: argparse.Namespace, settings: Settings) -> Policy | None:
    """The policy, or None after printing its errors (one per line) to stderr."""
    from guard.policy import PolicyError

    try:
        return load_policy_at(policy_path(args, settings))
    except PolicyError as e:
        _print_errors(e, language(args))
        return None


def _read_key(settings: Settings, *, store: bool = True) -> ListKey:
    """The list key of a read command: the secret from its one home, never created.
    Without one (nothing was imported yet), a throwaway key: lists read from files are
    hashed with it here, and a list in the store will not match it (and says so).
    store=False: no database is read, so a missing home is no error either."""
    import os

    from guard.knowledge.listsync import ListKey
    from guard.secret import NoSecretHome, load_secret, secret_home

    try:
        home = secret_home(settings)
    except NoSecretHome:
        if store:
            raise
        return ListKey(os.urandom(32), "none (not needed without the store)")
    key = load_secret(settings)
    if key is None:
        return ListKey(os.urandom(32), f"none yet at {home.describe()}")
    return ListKey(key, home.describe())


def cmd_policy_check(args: argparse.Namespace) -> int:
    from guard.policy import PolicyError
    from guard.policy.i18n import localize_line

    lang = language(args)
    settings = settings_of(args)
    path = Path(args.path) if args.path else policy_path(args, settings)
    try:
        policy = load_policy_at(path)
    except PolicyError as e:
        _print_errors(e, lang)
        return 1
    for w in policy.warnings:
        print(f"warning: {w}" if lang == "en" else localize_line(w, lang), file=sys.stderr)
    lists = len(policy.suppression_lists) + len(policy.store_lists)
    if lang == "ja":
        print(f"{path}: OK — ルール {len(policy.rules)} 件、グループ {len(policy.groups)} 件、"
              f"配信停止リスト {lists} 件")
    else:
        print(f"{path}: OK — {len(policy.rules)} rules, {len(policy.groups)} groups, "
              f"{lists} suppression lists")
    return 0


def _envelope(data: bytes, args: argparse.Namespace) -> tuple[str, list[str]]:
    """--from and --to, else the header addresses, read the way the relay reads them:
    the top header block scanned in linear time (no parse of the message, whatever it
    holds), the strict address parser, its limits."""
    from guard.mail.message import ParseLimits, parse_address_header, read_header_fields

    mail_from = args.mail_from or ""
    rcpts = list(args.to or [])
    if mail_from and rcpts:
        return mail_from, rcpts
    limits = ParseLimits()
    fields = read_header_fields(data, (b"from", b"to", b"cc", b"bcc"), limits)

    def addresses(name: str) -> list[str]:
        found, _ = parse_address_header(name.title(), fields.get(name, []),
                                        limits.max_addresses_per_header)
        return found

    if not mail_from:
        mail_from = next(iter(addresses("from")), "")
    if not rcpts:
        rcpts = [a for name in ("to", "cc", "bcc") for a in addresses(name)]
    return mail_from, rcpts


def cmd_policy_test(args: argparse.Namespace) -> int:
    from guard.accept.decide import Inspector
    from guard.config import describe_database as describe
    from guard.knowledge.listsync import ListKeyError, ListSet, ListSourceError, lists_as_served
    from guard.policy import PolicyError
    from guard.policy.i18n import localize_issue, translate
    from guard.store.access import StoreNotReady, open_store

    lang = language(args)
    settings = settings_of(args)
    data = Path(args.message).read_bytes()
    if b"\r\n" not in data:  # a file saved with Unix line ends: SMTP would carry CRLF
        data = data.replace(b"\n", b"\r\n")
    mail_from, rcpts = _envelope(data, args)
    if not rcpts:
        print("no recipients: give --to", file=sys.stderr)
        return 2
    policy = _policy_or_error(args, settings)
    if policy is None:
        return 1
    if args.history and args.no_history:
        return fail("--history and --no-history: give one")
    seeded = None
    if args.history:
        seeded = _seeded_history(args, settings, policy)
        if isinstance(seeded, int):
            return seeded

    async def go() -> tuple[Any, ListSet]:
        # the same history and lists as `guard serve` with this policy; an empty history
        # only when asked for (--no-history), never because the database was not found
        async with contextlib.AsyncExitStack() as stack:
            engine = None
            if not args.no_history and seeded is None:
                engine = (await stack.enter_async_context(
                    open_store(settings.database.url))).engine
            key = _read_key(settings, store=engine is not None)
            lists = await lists_as_served(policy, key, engine)
            inspector = Inspector(engine, key.key, suppression=lists.index)
            ins = await inspector.inspect(policy, data, mail_from, rcpts,
                                          args.sender or mail_from, history=seeded)
            return ins, lists

    try:
        ins, lists = asyncio.run(go())
    except PolicyError as e:  # a data file the policy names (partners, customers) is bad
        return fail(" ".join(localize_issue(i, lang) for i in e.issues) or str(e), 1)
    except StoreNotReady as e:
        return fail(f"{e}; or --no-history to test against an empty history on purpose")
    except (ListSourceError, ListKeyError) as e:
        return fail(translate(str(e), lang))
    for w in lists.warnings:
        print(f"warning: {w}" if lang == "en" else f"警告: {translate(w, lang)}",
              file=sys.stderr)
    doc = ins.verdict.to_json()
    doc["findings"] = [f.to_json() for f in ins.findings]
    doc["envelope"] = {"from": mail_from, "to": rcpts}
    doc["history"] = ("none (--no-history)" if args.no_history else
                      f"seeded from {args.history} (no store)" if args.history else
                      describe(settings.database.url))
    doc["lists"] = [u.to_json() for u in lists.used]
    traces = []
    explained = recipient_lines(ins.verdict, rcpts) if args.explain else []
    if args.explain:
        from guard.policy.why import explain

        traces = explain(policy, ins.findings, sender=mail_from, rcpt_tos=rcpts)
        doc["explain"] = [t.to_json() for t in traces]
        doc["per_recipient"] = explained
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
        return 0
    print(f"action: {doc['action']}" + (f"  (rule {doc['rule']})" if doc.get("rule") else ""))
    for line in explained:
        print(f"  {line}")
    print(f"from:   {mail_from}\nto:     {', '.join(rcpts)}")
    for r in ins.verdict.reasons:
        print(f"  - [{r.rule}] {r.symbol}: {r.reason_ja} / {r.reason_en}")
    if not ins.verdict.reasons:
        print("  (no rule matched)")
    if traces:
        print("why (every rule, in file order):")
    for t in traces:
        print("\n".join("  " + line for line in t.lines()))
    link = ins.verdict.linked_to
    if link is not None:  # defaults.linked_password: a PPAP password mail and its zip
        print(f"link:   linked to {link.queue_id} ({link.state}): " + (
            "held until it is released, cancelled with it" if link.effect == "hold"
            else "refused, as that mail was not sent"))
    print(f"history: {doc['history']}")
    print("lists:  " + (", ".join(
        f"{u.name} ({u.source}, " + ("unavailable" if u.members is None else
                                     f"{u.members} members") + (f"; {u.note}" if u.note else "")
        + ")" for u in lists.used) or "(none)"))
    return 0


def recipient_lines(v: Verdict, rcpts: list[str]) -> list[str]:
    """What happens to each recipient, and why: who a drop rule takes out, which part of
    a split goes now and which waits, and why a hold that asked to split did not."""
    out = [f"drop {d.address}: rule {d.rule}, {d.symbol}: {d.reason_en or d.reason_ja}"
           for d in v.dropped]
    if v.action.value == "reject" and v.dropped and not v.split:
        out.append("no recipient left: the message is refused")
    if v.split is not None:
        sp = v.split
        out.append(f"send now to {', '.join(sp.now_recipients)}: {sp.now.action.value}"
                   + (f" (rule {sp.now.rule})" if sp.now.rule else ""))
        rules = sorted({r.rule for r in sp.held.reasons if r.action is sp.held.action})
        out.append(f"hold ({sp.held.action.value}) {', '.join(sp.held_recipients)}: "
                   f"rule {', '.join(rules) or sp.held.rule}")
    elif v.no_split:
        out.append(f"no split: {v.no_split}; every recipient waits")
    elif not out:
        out.append(f"every recipient ({len(rcpts)}): {v.action.value}")
    return out


def _seeded_history(args: argparse.Namespace, settings: Settings, policy: Policy
                    ) -> Any:
    """The history a file seeds (as `guard history import` would store it), or an exit
    code after its bad rows were printed."""
    import math

    from guard.accept.replay import HistoryAsOf
    from guard.cli.history import read_history, sender_scope
    from guard.knowledge.historyfiles import seen_rows

    parsed = read_history(args.history, args.history_format, language(args))
    if isinstance(parsed, int):
        return parsed
    domains, addresses, _ = seen_rows(parsed.sent, policy.internal_domains,
                                      sender_scope(settings), time.time())
    return HistoryAsOf([(d.value, d.scope, d.first_seen) for d in domains],
                       [(a.value, a.scope, a.first_seen) for a in addresses]).at(math.inf)


def cmd_policy_replay(args: argparse.Namespace) -> int:
    from guard.accept.decide import Inspector
    from guard.accept.replay import HELD, ReplayReport, replay
    from guard.knowledge.listsync import ListKeyError, ListSet, ListSourceError, lists_as_served
    from guard.policy.i18n import translate

    lang = language(args)
    settings = settings_of(args)
    policy = _policy_or_error(args, settings)
    if policy is None:
        return 1

    async def go(store: Store) -> tuple[ReplayReport, ListSet]:
        key = _read_key(settings)
        lists = await lists_as_served(policy, key, store.engine)
        inspector = Inspector(store.engine, key.key, suppression=lists.index)
        since = time.time() - parse_since(args.since)
        return await replay(store.engine, inspector, policy, since), lists

    try:
        report, lists = with_store(settings, go)
    except (ListSourceError, ListKeyError) as e:
        return fail(translate(str(e), lang))
    for w in lists.warnings:
        print(f"warning: {w}" if lang == "en" else f"警告: {translate(w, lang)}",
              file=sys.stderr)
    before, after, changed = report.before, report.after, report.changed
    if args.json:
        print(json.dumps({"messages": len(report.messages), "without_bytes": report.without_bytes,
                          "before": before, "after": after, "changed": len(changed),
                          "changed_messages": [m.to_json() for m in changed],
                          "rules": [{"rule": r, "action": a, "messages": c}
                                    for (r, a), c in report.per_rule.most_common()],
                          "lists": [u.to_json() for u in lists.used]},
                         ensure_ascii=False, indent=1))
        return 0
    print(f"{len(report.messages)} messages in the last {args.since}, replayed as received "
          "against the history of their time"
          + (f" ({report.without_bytes} more without stored bytes)"
             if report.without_bytes else ""))
    print(f"{'RULE':40} {'ACTION':8} MESSAGES")
    for (rule, action), count in sorted(report.per_rule.items(), key=lambda kv: -kv[1]):
        print(f"{rule:40} {action:8} {count}")
    print(f"{'ACTION':8} {'BEFORE':>7} {'AFTER':>7}")
    for action in ("pass", "tag", "bcc", "delay", "confirm", "approve", "reject"):
        if before[action] or after[action]:
            print(f"{action:8} {before[action]:7} {after[action]:7}")
    print(f"held: {sum(before[a] for a in HELD)} → {sum(after[a] for a in HELD)}; "
          f"rejected: {before['reject']} → {after['reject']}")
    print(f"changed: {len(changed)}")
    for m in changed:
        print(f"  {m.id}: {m.before} → {m.after}  "
              f"(rules {', '.join(m.before_rules) or '-'} → {', '.join(m.after_rules) or '-'})")
    return 0
