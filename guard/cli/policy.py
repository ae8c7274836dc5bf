"""`guard policy check|test|replay`, `guard lists import|show|remove`, `guard domains import`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
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


def _policy_or_error(args: argparse.Namespace, settings: Settings) -> Any:
    """The policy, or None after printing its errors (one per line) to stderr."""
    from guard.policy import PolicyError

    try:
        return _load(_policy_path(args, settings))
    except PolicyError as e:
        print(str(e), file=sys.stderr)
        return None


def _read_key(settings: Settings, *, store: bool = True) -> Any:
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


def _fail(message: str, code: int = 2) -> int:
    print(f"guard: {message}", file=sys.stderr)
    return code


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
          f"{len(policy.suppression_lists) + len(policy.store_lists)} suppression lists")
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
    from guard.store.access import StoreNotReady, open_store

    settings = _settings(args)
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

    async def go() -> tuple[Any, ListSet]:
        # the same history and lists as `guard serve` with this policy; an empty history
        # only when asked for (--no-history), never because the database was not found
        async with contextlib.AsyncExitStack() as stack:
            engine = None
            if not args.no_history:
                engine = (await stack.enter_async_context(
                    open_store(settings.database.url))).engine
            key = _read_key(settings, store=engine is not None)
            lists = await lists_as_served(policy, key, engine)
            inspector = Inspector(engine, key.key, suppression=lists.index)
            ins = await inspector.inspect(policy, data, mail_from, rcpts,
                                          args.sender or mail_from)
            return ins, lists

    try:
        ins, lists = asyncio.run(go())
    except StoreNotReady as e:
        return _fail(f"{e}; or --no-history to test against an empty history on purpose")
    except (ListSourceError, ListKeyError) as e:
        return _fail(str(e))
    for w in lists.warnings:
        print(f"warning: {w}", file=sys.stderr)
    doc = ins.verdict.to_json()
    doc["findings"] = [f.to_json() for f in ins.findings]
    doc["envelope"] = {"from": mail_from, "to": rcpts}
    doc["history"] = "none (--no-history)" if args.no_history else describe(
        settings.database.url)
    doc["lists"] = [u.to_json() for u in lists.used]
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
        return 0
    print(f"action: {doc['action']}" + (f"  (rule {doc['rule']})" if doc.get("rule") else ""))
    print(f"from:   {mail_from}\nto:     {', '.join(rcpts)}")
    for r in ins.verdict.reasons:
        print(f"  - [{r.rule}] {r.symbol}: {r.reason_ja} / {r.reason_en}")
    if not ins.verdict.reasons:
        print("  (no rule matched)")
    print(f"history: {doc['history']}")
    print("lists:  " + (", ".join(
        f"{u.name} ({u.source}, " + ("unavailable" if u.members is None else
                                     f"{u.members} members") + (f"; {u.note}" if u.note else "")
        + ")" for u in lists.used) or "(none)"))
    return 0


def cmd_policy_replay(args: argparse.Namespace) -> int:
    from guard.accept.decide import Inspector
    from guard.accept.replay import HELD, ReplayReport, replay
    from guard.knowledge.listsync import ListKeyError, ListSourceError, lists_as_served
    from guard.store.access import open_store

    settings = _settings(args)
    policy = _policy_or_error(args, settings)
    if policy is None:
        return 1

    async def go() -> tuple[ReplayReport, Any]:
        async with open_store(settings.database.url) as store:
            key = _read_key(settings)
            lists = await lists_as_served(policy, key, store.engine)
            inspector = Inspector(store.engine, key.key, suppression=lists.index)
            since = time.time() - parse_since(args.since)
            return await replay(store.engine, inspector, policy, since), lists

    try:
        report, lists = asyncio.run(go())
    except (ListSourceError, ListKeyError) as e:
        return _fail(str(e))
    for w in lists.warnings:
        print(f"warning: {w}", file=sys.stderr)
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


def cmd_lists_import(args: argparse.Namespace) -> int:
    from guard.knowledge.listsync import ListKey, ListKeyError, ListSourceError, import_store_list
    from guard.policy import PolicyError
    from guard.secret import load_or_create_secret, secret_home
    from guard.store.access import open_store

    settings = _settings(args)
    try:  # the policy says where each list comes from
        policy = _load(_policy_path(args, settings))
    except PolicyError as e:
        first = str(e).splitlines()[0] if str(e) else "invalid"
        return _fail(f"cannot tell where list {args.name} comes from: the policy does not "
                     f"load ({first}); fix it first (`guard policy check`)")

    async def go() -> Any:
        async with open_store(settings.database.url, write=True, upgrade=True) as store:
            assert store.writer is not None
            key = ListKey(load_or_create_secret(settings), secret_home(settings).describe())
            listed, change = await import_store_list(
                store.engine, store.writer, key, policy, args.name, Path(args.file),
                actor=_cli_actor(), new_key=args.new_key)
            return key, listed, change

    try:
        key, listed, change = asyncio.run(go())
    except (ListSourceError, ListKeyError) as e:
        return _fail(str(e))
    if change is None:
        for row in listed.errors[:50]:
            print(f"{args.file}:{row.line}: {row.reason}" + (f": {row.text}" if row.text else ""),
                  file=sys.stderr)
        print(f"list {args.name}: nothing imported ({len(listed.errors)} bad rows)",
              file=sys.stderr)
        return 1
    print(f"list {args.name}: {change.entries} addresses imported (stored as keyed hashes; "
          f"{change.added} added, {change.removed} removed; key {key.fingerprint}); "
          "managed in the store from now on")
    if args.name not in policy.store_lists:
        print(f"note: the policy does not name list {args.name}; it applies all the same. "
              f"Declare `{args.name}: {{source: store}}` under lists.suppression so rules "
              "and `guard policy test` expect it")
    return 0


def _cli_actor() -> str:
    import getpass
    import os

    return f"cli:{os.environ.get('SUDO_USER') or getpass.getuser()}"


def cmd_lists_remove(args: argparse.Namespace) -> int:
    from guard.policy import PolicyError
    from guard.store import knowledge
    from guard.store.access import open_store

    settings = _settings(args)
    try:
        policy = _load(_policy_path(args, settings))
    except PolicyError:
        policy = None
    synced_from = policy.suppression_lists.get(args.name) if policy is not None else None

    async def go() -> str | int | None:
        async with open_store(settings.database.url, write=True) as store:
            assert store.writer is not None
            async with store.engine.connect() as conn:
                row = await knowledge.list_row(conn, args.name)
            if row is None:
                return None
            if row.kind == "file" and synced_from is not None:
                return str(synced_from)  # removing it would only bring it back
            return await store.writer.submit(lambda conn, now: knowledge.remove_list(
                conn, now, args.name, _cli_actor(), "guard lists remove"))

    removed = asyncio.run(go())
    if removed is None:
        return _fail(f"no list {args.name}", 1)
    if isinstance(removed, str):
        return _fail(f"list {args.name} is synced from {removed} (named by the policy): it "
                     "would come back at the next policy load; take it out of the policy "
                     "instead")
    print(f"list {args.name} removed ({removed} entries)")
    return 0


def _local_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


def cmd_lists_show(args: argparse.Namespace) -> int:
    from guard.knowledge.lists import DIGEST_SCHEME, key_fingerprint
    from guard.policy import PolicyError
    from guard.secret import NoSecretHome, load_secret, secret_home
    from guard.store import knowledge
    from guard.store.access import open_store

    settings = _settings(args)

    async def go() -> list[knowledge.ListRow]:
        async with open_store(settings.database.url) as store, store.engine.connect() as conn:
            return await knowledge.list_rows(conn)

    rows = asyncio.run(go())
    ours, where = None, ""
    try:
        where = secret_home(settings).describe()
        secret = load_secret(settings)
    except NoSecretHome as e:
        secret, where = None, str(e)
    if secret is not None:
        ours = key_fingerprint(secret)
    try:
        policy = _load(_policy_path(args, settings))
    except PolicyError:
        policy = None
    out = []
    for r in rows:
        if ours is None:
            key_state = f"unknown (no secret: {where})"
        elif (r.key_fingerprint, r.digest_scheme) == (ours, DIGEST_SCHEME):
            key_state = "this guard's key"
        else:
            key_state = (f"NOT this guard's key {ours}: matches nobody; "
                         + ("synced again at the next policy load" if r.kind == "file"
                            else f"import it again (`guard lists import {r.name} FILE`)"))
        note = ""
        if policy is not None and r.kind == "file" and r.name not in policy.suppression_lists \
                and r.name not in policy.store_lists:
            note = (f"no longer named by the policy: still applies; `guard lists remove "
                    f"{r.name}` drops it")
        out.append({"name": r.name, "source": r.source if r.kind == "file" else "store",
                    "last_import": r.source if r.kind == "store" else None,
                    "members": r.entries, "synced_at": r.synced_at,
                    "synced": _local_time(r.synced_at),
                    "key_fingerprint": r.key_fingerprint or "unknown",
                    "digest_scheme": r.digest_scheme, "key": key_state, "note": note})
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return 0
    print(f"{'NAME':16} {'MEMBERS':>8}  {'LAST SYNC':25} {'KEY':17} SOURCE")
    for d in out:
        source = d["source"] if d["source"] != "store" else (
            f"store (last import from {d['last_import']})")
        print(f"{d['name']:16} {d['members']:8}  {d['synced']:25} {d['key_fingerprint']:17} "
              f"{source}")
        print(f"{'':16} key: {d['key']}" + (f"; {d['note']}" if d["note"] else ""))
    if not out:
        print("(no lists)")
    return 0


def cmd_domains_import(args: argparse.Namespace) -> int:
    from guard.knowledge.lists import parse_domains_csv
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
    pt.add_argument("--no-history", action="store_true",
                    help="test against an empty delivery history and no store (on purpose: "
                    "without it a missing database is an error)")
    pt.add_argument("--json", action="store_true")
    pt.set_defaults(func=cmd_policy_test)
    pr = pol.add_parser("replay", help="what a policy would have done with past traffic")
    pr.add_argument("--since", default="7d", help="how far back: 30m, 12h, 7d, 2w")
    pr.add_argument("--policy", help="the policy to try (default: the configured one)")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_policy_replay)

    lp = sub.add_parser("lists", help="suppression lists").add_subparsers(
        dest="lists_cmd", required=True)
    li = lp.add_parser("import", help="replace a store-managed list with a CSV (all rows "
                       "or nothing); lists the policy names a file for are synced from it")
    li.add_argument("name")
    li.add_argument("file")
    li.add_argument("--policy", help="policy file or folder (default: the configured one)")
    li.add_argument("--new-key", action="store_true",
                    help="hash with this command's secret although the guard recorded "
                    "another (the secret was changed on purpose)")
    li.set_defaults(func=cmd_lists_import)
    ls = lp.add_parser("show", help="lists: source, members, last sync, key")
    ls.add_argument("--policy", help="policy file or folder (default: the configured one)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_lists_show)
    lr = lp.add_parser("remove", help="drop a list from the store (audited)")
    lr.add_argument("name")
    lr.add_argument("--policy", help="policy file or folder (default: the configured one)")
    lr.set_defaults(func=cmd_lists_remove)

    dp = sub.add_parser("domains", help="known domains").add_subparsers(
        dest="domains_cmd", required=True)
    di = dp.add_parser("import", help="mark the domains in a CSV as known (partners…)")
    di.add_argument("file")
    di.set_defaults(func=cmd_domains_import)
