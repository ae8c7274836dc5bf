"""`guard queue retry ID|--all`: deferred mail is due now.

The store marks the messages due (one audit row each); a running guard sends them at its
next queue poll (`delivery.poll_interval`), or once its pause after an upstream that
refused connections is over (at most a minute)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from guard.config import Settings, load_settings, parse_database_url

# exit codes: 0 done (or nothing to do), 1 no such message, 3 not a message that waits
NOT_FOUND, NOT_WAITING = 1, 3


def add_queue_commands(queue_subparsers: Any) -> None:
    r = queue_subparsers.add_parser(
        "retry", help="try deferred mail again now (a running guard sends it at its next poll)")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="the queue id")
    which.add_argument("--all", action="store_true", help="every message waiting for a retry")
    r.set_defaults(func=cmd_retry)


def _actor() -> str:
    return f"cli:admin:{os.environ.get('SUDO_USER') or getpass.getuser()}"


def _missing_database(settings: Settings) -> str | None:
    url = parse_database_url(settings.database.url)
    if url.drivername.startswith("sqlite") and not (url.database and Path(url.database).exists()):
        return f"no database at {url.database} (check database.url or GUARD_DATABASE_URL)"
    return None


async def _retry(settings: Settings, message_id: str | None) -> Any:
    from guard.store import db
    from guard.store import queue as q
    from guard.store.writer import BatchWriter

    engine = db.create_engine(settings.database.url)
    writer = BatchWriter(engine)
    writer.start()
    actor = _actor()
    try:
        if message_id is None:
            return await writer.submit(lambda conn, now: q.retry_all(conn, now, actor))
        return await writer.submit(lambda conn, now: q.retry_now(conn, now, message_id, actor))
    finally:
        await writer.close()
        await engine.dispose()


def cmd_retry(args: argparse.Namespace) -> int:
    settings = load_settings(getattr(args, "config", None))
    missing = _missing_database(settings)
    if missing:
        print(f"guard: {missing}", file=sys.stderr)
        return 1
    from guard.store import StoreError

    try:
        res = asyncio.run(_retry(settings, None if args.all else args.id))
    except (StoreError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"guard: the database could not be updated: {first}", file=sys.stderr)
        return 1
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
