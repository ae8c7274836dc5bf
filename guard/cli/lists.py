"""`guard lists import|show|remove` (the suppression lists in the store) and `guard
domains import` (domains marked as known)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.cli.common import fail, load_policy_at, os_user, policy_path, settings_of, with_store

if TYPE_CHECKING:
    from guard.store.access import Store


def add_commands(sub: Any) -> None:
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


def cmd_lists_import(args: argparse.Namespace) -> int:
    from guard.knowledge.listsync import ListKey, ListKeyError, ListSourceError, import_store_list
    from guard.policy import PolicyError
    from guard.secret import load_or_create_secret, secret_home

    settings = settings_of(args)
    try:  # the policy says where each list comes from
        policy = load_policy_at(policy_path(args, settings))
    except PolicyError as e:
        first = str(e).splitlines()[0] if str(e) else "invalid"
        return fail(f"cannot tell where list {args.name} comes from: the policy does not "
                    f"load ({first}); fix it first (`guard policy check`)")

    async def go(store: Store) -> Any:
        assert store.writer is not None
        key = ListKey(load_or_create_secret(settings), secret_home(settings).describe())
        listed, change = await import_store_list(
            store.engine, store.writer, key, policy, args.name, Path(args.file),
            actor=_cli_actor(), new_key=args.new_key)
        return key, listed, change

    try:
        key, listed, change = with_store(settings, go, write=True, upgrade=True)
    except (ListSourceError, ListKeyError) as e:
        return fail(str(e))
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
    return f"cli:{os_user()}"


def cmd_lists_remove(args: argparse.Namespace) -> int:
    from guard.policy import PolicyError
    from guard.store import knowledge

    settings = settings_of(args)
    try:
        policy = load_policy_at(policy_path(args, settings))
    except PolicyError:
        policy = None
    synced_from = policy.suppression_lists.get(args.name) if policy is not None else None

    async def go(store: Store) -> str | int | None:
        assert store.writer is not None
        async with store.engine.connect() as conn:
            row = await knowledge.list_row(conn, args.name)
        if row is None:
            return None
        if row.kind == "file" and synced_from is not None:
            return str(synced_from)  # removing it would only bring it back
        return await store.writer.submit(lambda conn, now: knowledge.remove_list(
            conn, now, args.name, _cli_actor(), "guard lists remove"))

    removed = with_store(settings, go, write=True)
    if removed is None:
        return fail(f"no list {args.name}", 1)
    if isinstance(removed, str):
        return fail(f"list {args.name} is synced from {removed} (named by the policy): it "
                    "would come back at the next policy load; take it out of the policy "
                    "instead")
    print(f"list {args.name} removed ({removed} entries)")
    return 0


def _local_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


def cmd_lists_show(args: argparse.Namespace) -> int:
    from guard.mail.digests import DIGEST_SCHEME, key_fingerprint
    from guard.policy import PolicyError
    from guard.secret import NoSecretHome, load_secret, secret_home
    from guard.store import knowledge

    settings = settings_of(args)

    async def go(store: Store) -> list[knowledge.ListRow]:
        async with store.engine.connect() as conn:
            return await knowledge.list_rows(conn)

    rows = with_store(settings, go)
    ours, where = None, ""
    try:
        where = secret_home(settings).describe()
        secret = load_secret(settings)
    except NoSecretHome as e:
        secret, where = None, str(e)
    if secret is not None:
        ours = key_fingerprint(secret)
    try:
        policy = load_policy_at(policy_path(args, settings))
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
    from guard.policy.datafiles import parse_domains_csv
    from guard.store import knowledge

    settings = settings_of(args)
    parsed = parse_domains_csv(Path(args.file).read_bytes())
    if not parsed.ok:
        for e in parsed.errors[:50]:
            print(f"{args.file}:{e.line}: {e.reason}", file=sys.stderr)
        return 1

    async def go(store: Store) -> int:
        assert store.writer is not None
        marked: int = await store.writer.submit(lambda conn, now: knowledge.import_domains(
            conn, now, parsed.domains, "cli", args.file))
        return marked

    print(f"{with_store(settings, go, write=True, upgrade=True)} domains marked as known")
    return 0
