"""The dispatcher's cursor in the database (guard/alert/dispatch.py, store/alerts.py): an
audit id that commits after a larger one was read (as another instance's write can on
PostgreSQL, where ids are handed out at the insert) is still alerted, once; a missing id
is forgotten after alerts.gap_wait_seconds. The id order is forced here with explicit
ids, so SQLite shows what PostgreSQL does under load."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select

from guard.alert.dispatch import AlertDispatcher
from guard.config import load_settings
from guard.policy import load_policy
from guard.store import db, knowledge, migrate
from guard.store.queue import NewMessage, insert_message
from guard.store.schema import audit, messages
from guard.store.writer import BatchWriter

POLICY = """\
    version: 1
    defaults: {internal_domains: [example.co.jp]}
    alerts: {officers: [privacy@example.co.jp]}
"""
VERDICT = {"action": "approve", "rule": "card-outside", "reasons": [
    {"rule": "card-outside", "action": "approve", "symbol": "pii.card", "where": "body",
     "count": 1, "recipients": [], "score": 0.95}]}


async def _scenario(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(textwrap.dedent(POLICY), encoding="utf-8")
    policy = load_policy(tmp_path / "policy.yaml")
    settings = load_settings(None, {
        "GUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'guard.db'}",
        "GUARD_ALERTS__GATHER_SECONDS": "0", "GUARD_ALERTS__MIN_INTERVAL_SECONDS": "0",
        "GUARD_ALERTS__GAP_WAIT_SECONDS": "1", "GUARD_REVIEW__TIMEZONE": "Asia/Tokyo"})
    engine = db.create_engine(settings.database.url)
    await migrate.upgrade(engine)
    writer = BatchWriter(engine)
    writer.start()
    try:
        alerts = AlertDispatcher(engine, writer, settings, lambda: policy)
        await alerts.tick()  # the state starts at the newest audit row (none)

        async def run(stmt: Any) -> None:
            await writer.submit(lambda conn, now: conn.execute(stmt))

        # a held message whose audit row (id 2) is not committed yet when id 3 is
        await writer.submit(lambda conn, now: insert_message(conn, now, NewMessage(
            id="M1", state="held", mail_from="alice@example.co.jp", sender="alice",
            rcpt_tos=["buyer@client.example"], data=b"x", verdict=VERDICT,
            actor="smtp:alice")))
        async with engine.connect() as conn:
            held = dict((await conn.execute(select(audit).where(
                audit.c.message_id == "M1"))).one()._mapping)
        await run(delete(audit).where(audit.c.id == held["id"]))
        await run(insert(audit).values({**held, "id": 3, "action": "notified",
                                        "from_state": "held"}))
        report = await alerts.tick()
        assert report.queued == []
        assert sorted(await _state(engine, "gaps")) == ["1", "2"]
        # id 2 commits now: the severe hold is alerted, once
        await run(insert(audit).values({**held, "id": 2}))
        report = await alerts.tick()
        assert [q.kind for q in report.queued] == ["first"]
        assert report.queued[0].message.audit_detail["events"] == [2]
        assert list(await _state(engine, "gaps")) == ["1"]
        assert (await alerts.tick()).queued == []
        # id 1 never comes (rolled back): forgotten after gap_wait_seconds
        await asyncio.sleep(1.2)
        await alerts.tick()
        assert await _state(engine, "gaps") == {}
        async with engine.connect() as conn:
            sent = (await conn.execute(select(messages.c.id)
                                       .where(messages.c.sender == "guard"))).scalars().all()
        assert len(sent) == 1
    finally:
        await writer.close()
        await engine.dispose()


async def _state(engine: Any, key: str) -> Any:
    async with engine.connect() as conn:
        return json.loads(await knowledge.get_meta(conn, "alerts") or "{}")[key]


def test_a_late_commit_behind_the_cursor_is_alerted_once(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
