"""`guard purge [--dry-run]`: what the periodic sweep of `guard serve` does, now
(guard/store/retention.py); --dry-run counts what would go and changes nothing."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from guard.cli.common import os_user, settings_of, with_store

if TYPE_CHECKING:
    from guard.store.access import Store
    from guard.store.retention import Counts

LABELS = {"bodies": "message bodies", "messages": "messages", "audit_rows": "audit rows"}


def add_commands(sub: Any) -> None:
    p = sub.add_parser("purge", help="delete what is past its retention time now "
                       "(bodies: delivery.retention_days; messages and audit rows: "
                       "retention.audit_days)")
    p.add_argument("--dry-run", action="store_true",
                   help="count what would go, by age; change nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_purge)


def cmd_purge(args: argparse.Namespace) -> int:
    from guard.store import retention
    from guard.store.db import db_now

    settings = settings_of(args)
    ages = retention.Ages(settings.delivery.retention_days * retention.DAY,
                          settings.retention.audit_days * retention.DAY)
    actor = f"cli:admin:{os_user()}"

    async def go(store: Store) -> Counts:
        if args.dry_run:
            async with store.engine.connect() as conn:
                return await retention.plan(conn, await db_now(conn), ages)
        assert store.writer is not None
        return await store.writer.submit(
            lambda conn, now: retention.purge(conn, now, ages, actor=actor))

    counts = with_store(settings, go, write=not args.dry_run)
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, **counts.to_json()}))
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for kind, label in LABELS.items():
        n = getattr(counts, kind)
        ages_text = ", ".join(f"{k}: {v}" for k, v in counts.by_age.get(kind, {}).items())
        print(f"{verb} {n} {label}" + (f" ({ages_text})" if ages_text else ""))
    if not args.dry_run:
        print("one audit row records this purge")
    return 0
