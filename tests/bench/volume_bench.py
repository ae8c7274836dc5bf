#!/usr/bin/env python3
"""The sender-volume count per message on a busy sender: ms per message of the recipient
stage (Inspector.full_context, which asks the store for sender_volume.* when the policy
has a rule on it), on SQLite and PostgreSQL, with one sender's last day in the store.

    .venv/bin/python tests/bench/volume_bench.py                     # SQLite, ~1 minute
    .venv/bin/python tests/bench/volume_bench.py --pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench
    .venv/bin/python tests/bench/volume_bench.py --messages 5000 --recipients 10

Shapes (`--messages` × `--recipients` distinct external recipients each, spread over the
last 24 hours; `--repeat` makes them the same few recipients again and again instead):
the count must cost about the same for a sender with 20,000 recipients a day as for one
with 300, and nothing at all when no rule names sender_volume. Printed: policy, shape,
ms per message (median of `--rounds` timed runs of `--calls` messages each).
The PostgreSQL database given is emptied first (every table dropped by a fresh schema).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from guard.accept.decide import Inspector
from guard.policy.loader import load_policy
from guard.store import db, migrate
from guard.store.schema import messages, recipients

SENDER = "sales@example.co.jp"
POLICIES = {
    "no volume rule": "",
    "day >= 300": """
  - name: mass-mailing
    conditions: [{symbol: sender_volume.day, min_count: 300}]
    action: confirm
""",
}
HEAD = """\
version: 1
defaults: {internal_domains: [example.co.jp], uninspectable: pass}
rules:
  - name: anything-tagged
    conditions: [pii.my_number]
    action: tag
"""


async def seed(url: str, n: int, per: int, repeat: bool) -> None:
    engine = db.create_engine(url)
    try:
        if url.startswith("postgresql"):
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            now = await db.db_now(conn)
            for start in range(0, n, 5000):
                ids = range(start, min(n, start + 5000))
                await conn.execute(messages.insert(), [
                    {"id": f"m{i:08d}", "state": "delivered", "mail_from": SENDER,
                     "sender": SENDER, "size": 1, "received_at": now - 1 - i * 86000 / n,
                     "queued_at": now, "next_attempt_at": now, "updated_at": now}
                    for i in ids])
                await conn.execute(recipients.insert(), [
                    {"message_id": f"m{i:08d}", "idx": j, "updated_at": now,
                     "address": (f"r{i % 30}-{j}@c{i % 30}.example" if repeat
                                 else f"r{i}-{j}@c{i % 97}.example")}
                    for i in ids for j in range(per)])
    finally:
        await engine.dispose()


async def measure(url: str, policy_text: str, calls: int, rounds: int) -> float:
    engine = db.create_engine(url)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.yaml"
        path.write_text(HEAD + policy_text, encoding="utf-8")
        policy = load_policy(path)
    inspector = Inspector(engine, b"k" * 32)
    static = inspector.static_context(policy, SENDER)
    times = []
    try:
        for r in range(rounds + 1):
            start = time.perf_counter()
            for i in range(calls):
                await inspector.full_context(policy, static, SENDER, [f"new{i}@n.example"])
            if r:  # the first round warms the caches and the connection pool
                times.append((time.perf_counter() - start) * 1000 / calls)
    finally:
        await engine.dispose()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg-url", help="also on this PostgreSQL database (emptied first)")
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--recipients", type=int, default=1)
    ap.add_argument("--repeat", action="store_true", help="the same 30 recipients again")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = [("sqlite", f"sqlite:///{tmp}/guard.db")]
        if args.pg_url:
            urls.append(("postgresql", args.pg_url))
        shape = (f"{args.messages} msgs x {args.recipients} rcpt"
                 + (" (repeated)" if args.repeat else ""))
        for name, url in urls:
            asyncio.run(seed(url, args.messages, args.recipients, args.repeat))
            for label, policy_text in POLICIES.items():
                ms = asyncio.run(measure(url, policy_text, args.calls, args.rounds))
                print(f"{name:10} {shape:28} {label:16} {ms:8.2f} ms/message", flush=True)


if __name__ == "__main__":
    main()
