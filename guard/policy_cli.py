"""`guard policy check|test|replay`, `guard lists import|show`, `guard domains import`."""

from __future__ import annotations

import argparse
import asyncio
import email
import json
import re
import sys
import time
from collections import Counter
from email.policy import default as default_policy
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from guard.config import ConfigError, Settings, load_settings

SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> float:
    m = SINCE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration like 30m, 12h, 7d: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def _policy_path(args: argparse.Namespace, settings: Settings) -> Path:
    """--policy, else the configured policy; never the shipped example by surprise."""
    from guard.app import require_policy

    if getattr(args, "policy", None):
        return Path(args.policy)
    try:
        return require_policy(settings)
    except ConfigError as e:
        raise ConfigError(f"{e}; or name the policy on the command line") from e


def _load(path: Path | None) -> Any:
    from guard.policy import default_policy as pass_all
    from guard.policy import load_policy

    return pass_all() if path is None else load_policy(path)


def _engine_if_present(settings: Settings) -> Any:
    """The configured store, to answer with the real history and lists; None when the
    SQLite file does not exist yet (a check must not create one)."""
    from sqlalchemy.engine import make_url

    from guard.store import db

    url = make_url(settings.database.url)
    if url.drivername.startswith("sqlite") and not (url.database and Path(url.database).exists()):
        return None
    return db.create_engine(settings.database.url)


def cmd_policy_check(args: argparse.Namespace) -> int:
    from guard.policy import PolicyError

    settings = _settings(args)
    path = Path(args.path) if args.path else _policy_path(args, settings)
    try:
        policy = _load(path)
    except PolicyError as e:
        print(str(e), file=sys.stderr)
        return 1
    for w in policy.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{path}: OK — {len(policy.rules)} rules, {len(policy.groups)} groups, "
          f"{len(policy.suppression_lists)} suppression lists")
    return 0


def _envelope(data: bytes, args: argparse.Namespace) -> tuple[str, list[str]]:
    msg = email.message_from_bytes(data, policy=default_policy)
    mail_from = args.mail_from
    if not mail_from:
        froms = getaddresses([str(msg.get("from", ""))])
        mail_from = froms[0][1] if froms else ""
    rcpts = list(args.to or [])
    if not rcpts:
        rcpts = [a for _, a in getaddresses(
            [str(msg.get(h, "")) for h in ("to", "cc", "bcc")]) if a]
    return mail_from, rcpts


def cmd_policy_test(args: argparse.Namespace) -> int:
    from guard.decide import Inspector
    from guard.secret import load_or_create_secret

    settings = _settings(args)
    data = Path(args.message).read_bytes()
    if b"\r\n" not in data:  # a file saved with Unix line ends: SMTP would carry CRLF
        data = data.replace(b"\n", b"\r\n")
    mail_from, rcpts = _envelope(data, args)
    if not rcpts:
        print("no recipients: give --to", file=sys.stderr)
        return 2
    policy = _load(_policy_path(args, settings))

    async def go() -> Any:
        engine = _engine_if_present(settings)
        try:
            inspector = Inspector(engine, load_or_create_secret(settings))
            return await inspector.inspect(policy, data, mail_from, rcpts, args.sender or mail_from)
        finally:
            if engine is not None:
                await engine.dispose()

    ins = asyncio.run(go())
    doc = ins.verdict.to_json()
    doc["findings"] = [f.to_json() for f in ins.findings]
    doc["envelope"] = {"from": mail_from, "to": rcpts}
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
        return 0
    print(f"action: {doc['action']}" + (f"  (rule {doc['rule']})" if doc.get("rule") else ""))
    print(f"from:   {mail_from}\nto:     {', '.join(rcpts)}")
    for r in ins.verdict.reasons:
        print(f"  - [{r.rule}] {r.symbol}: {r.reason_ja} / {r.reason_en}")
    if not ins.verdict.reasons:
        print("  (no rule matched)")
    return 0


def cmd_policy_replay(args: argparse.Namespace) -> int:
    from guard.decide import Inspector
    from guard.secret import load_or_create_secret
    from guard.store import queue as q
    from guard.store.access import open_store

    settings = _settings(args)
    policy = _load(_policy_path(args, settings))

    async def go() -> tuple[int, Counter[str], Counter[str], Counter[tuple[str, str]]]:
        async with open_store(settings.database.url) as store:
            engine = store.engine
            inspector = Inspector(engine, load_or_create_secret(settings))
            since = time.time() - parse_since(args.since)
            before: Counter[str] = Counter()
            after: Counter[str] = Counter()
            per_rule: Counter[tuple[str, str]] = Counter()
            n, last = 0, ""
            while True:
                async with engine.connect() as conn:
                    page = await q.stored_page(conn, since, last)
                if not page:
                    break
                for m in page:
                    last = m.id
                    if not m.mail_from:  # DSNs and notices are not staff mail
                        continue
                    ins = await inspector.inspect(policy, m.data, m.mail_from, m.rcpts, m.sender)
                    n += 1
                    before[str(m.verdict.get("action", "pass"))] += 1
                    after[ins.verdict.action.value] += 1
                    for rule in {r.rule for r in ins.verdict.reasons}:
                        action = next(r.action for r in ins.verdict.reasons if r.rule == rule)
                        per_rule[(rule, str(getattr(action, "value", action)))] += 1
            return n, before, after, per_rule

    n, before, after, per_rule = asyncio.run(go())
    if args.json:
        print(json.dumps({"messages": n, "before": before, "after": after,
                          "rules": [{"rule": r, "action": a, "messages": c}
                                    for (r, a), c in per_rule.most_common()]},
                         ensure_ascii=False, indent=1))
        return 0
    print(f"{n} messages in the last {args.since}")
    print(f"{'RULE':40} {'ACTION':8} MESSAGES")
    for (rule, action), count in sorted(per_rule.items(), key=lambda kv: -kv[1]):
        print(f"{rule:40} {action:8} {count}")
    held = ("delay", "confirm", "approve")
    print(f"held: {sum(before[a] for a in held)} → {sum(after[a] for a in held)}; "
          f"rejected: {before['reject']} → {after['reject']}")
    return 0


def cmd_lists_import(args: argparse.Namespace) -> int:
    from guard.listsync import import_list
    from guard.secret import load_or_create_secret
    from guard.store.access import open_store

    settings = _settings(args)

    async def go() -> Any:
        async with open_store(settings.database.url, write=True, upgrade=True) as store:
            assert store.writer is not None
            return await import_list(store.engine, store.writer, load_or_create_secret(settings),
                                     args.name, args.file, actor="cli", force=True)

    r = asyncio.run(go())
    if r.errors:
        for e in r.errors[:50]:
            print(f"{args.file}:{e.line}: {e.reason}" + (f": {e.text}" if e.text else ""),
                  file=sys.stderr)
        print(f"list {args.name}: nothing imported ({len(r.errors)} bad rows)", file=sys.stderr)
        return 1
    print(f"list {args.name}: {r.entries} addresses imported (stored as keyed hashes)")
    return 0


def cmd_lists_show(args: argparse.Namespace) -> int:
    from guard.store import knowledge
    from guard.store.access import open_store

    settings = _settings(args)

    async def go() -> list[dict[str, Any]]:
        async with open_store(settings.database.url) as store, store.engine.connect() as conn:
            return await knowledge.list_info(conn)

    for row in asyncio.run(go()):
        at = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["imported_at"]))
        print(f"{row['name']:20} {row['entries']:8} entries  synced {at}  {row['source']}")
    return 0


def cmd_domains_import(args: argparse.Namespace) -> int:
    from guard.lists import parse_domains_csv
    from guard.store import knowledge
    from guard.store.access import open_store

    settings = _settings(args)
    parsed = parse_domains_csv(Path(args.file).read_bytes())
    if not parsed.ok:
        for e in parsed.errors[:50]:
            print(f"{args.file}:{e.line}: {e.reason}", file=sys.stderr)
        return 1

    async def go() -> int:
        async with open_store(settings.database.url, write=True, upgrade=True) as store:
            assert store.writer is not None
            return await store.writer.submit(lambda conn, now: knowledge.import_domains(
                conn, now, parsed.domains, "cli", args.file))

    print(f"{asyncio.run(go())} domains marked as known")
    return 0


def add_commands(sub: Any) -> None:
    pol = sub.add_parser("policy", help="check and try policies").add_subparsers(
        dest="policy_cmd", required=True)
    pc = pol.add_parser("check", help="validate a policy (file or folder)")
    pc.add_argument("path", nargs="?")
    pc.set_defaults(func=cmd_policy_check)
    pt = pol.add_parser("test", help="the verdict for a message, without sending it")
    pt.add_argument("message", help="an .eml file")
    pt.add_argument("--from", dest="mail_from", help="envelope sender (default: From:)")
    pt.add_argument("--to", action="append", help="envelope recipient (repeatable; "
                    "default: To/Cc/Bcc)")
    pt.add_argument("--sender", help="the authenticated user (history scope)")
    pt.add_argument("--policy", help="policy file or folder (default: the configured one)")
    pt.add_argument("--json", action="store_true")
    pt.set_defaults(func=cmd_policy_test)
    pr = pol.add_parser("replay", help="what a policy would have done with past traffic")
    pr.add_argument("--since", default="7d", help="how far back: 30m, 12h, 7d, 2w")
    pr.add_argument("--policy", help="the policy to try (default: the configured one)")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_policy_replay)

    lp = sub.add_parser("lists", help="suppression lists").add_subparsers(
        dest="lists_cmd", required=True)
    li = lp.add_parser("import", help="import a CSV (all rows or nothing)")
    li.add_argument("name")
    li.add_argument("file")
    li.set_defaults(func=cmd_lists_import)
    lp.add_parser("show", help="lists and their sizes").set_defaults(func=cmd_lists_show)

    dp = sub.add_parser("domains", help="known domains").add_subparsers(
        dest="domains_cmd", required=True)
    di = dp.add_parser("import", help="mark the domains in a CSV as known (partners…)")
    di.add_argument("file")
    di.set_defaults(func=cmd_domains_import)
