"""The dispatcher's cursor in the database (guard/alert/dispatch.py, store/alerts.py): an
audit id that commits after a larger one was read (as another instance's write can on
PostgreSQL, where ids are handed out at the insert) is still alerted, once; a missing id
is forgotten after alerts.gap_wait_seconds. The id order is forced here with explicit
ids, so SQLite shows what PostgreSQL does under load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text

from guard.alert.dispatch import AlertDispatcher
from guard.config import load_settings
from guard.policy import load_policy
from guard.store import alerts as A
from guard.store import db, holds, knowledge, migrate
from guard.store.queue import NewMessage, insert_message
from guard.store.schema import audit, messages, store_meta
from guard.store.writer import BatchWriter
from tests.conftest import require_postgres, reset_postgres

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


# --- the review of issue 17 (findings 1, 2, 7, 8, 13) --------------------------------

GROUPS = """\
    version: 1
    defaults: {internal_domains: [example.co.jp]}
    groups:
      sales: {members: [alice@example.co.jp]}
    alerts:
      officers: [privacy@example.co.jp]
      by_group: {sales: [sales-head@example.co.jp]}
      digest_to: [digest@example.co.jp]
"""


@contextlib.asynccontextmanager
async def _dispatcher(tmp_path: Path, url: str, **env: str
                      ) -> AsyncIterator[tuple[Any, BatchWriter, AlertDispatcher]]:
    (tmp_path / "policy.yaml").write_text(textwrap.dedent(GROUPS), encoding="utf-8")
    policy = load_policy(tmp_path / "policy.yaml")
    settings = load_settings(None, {
        "GUARD_DATABASE_URL": url, "GUARD_ALERTS__GATHER_SECONDS": "0",
        "GUARD_ALERTS__MIN_INTERVAL_SECONDS": "3600", "GUARD_ALERTS__GAP_WAIT_SECONDS": "60",
        "GUARD_REVIEW__TIMEZONE": "Asia/Tokyo", **env})
    engine = db.create_engine(settings.database.url)
    await migrate.upgrade(engine)
    writer = BatchWriter(engine)
    writer.start()
    try:
        alerts = AlertDispatcher(engine, writer, settings, lambda: policy)
        await alerts.tick()  # the state starts at the newest audit row (none)
        yield engine, writer, alerts
    finally:
        await writer.close()
        await engine.dispose()


async def _held(writer: BatchWriter, mid: str, sender: str, to: list[str],
                verdict: dict[str, Any] = VERDICT) -> None:
    await writer.submit(lambda conn, now: insert_message(conn, now, NewMessage(
        id=mid, state="held", mail_from=sender, sender=sender.split("@")[0], rcpt_tos=to,
        data=b"x", verdict=verdict, actor=f"smtp:{sender}")))


def _sent(report: Any) -> dict[str, tuple[str, list[int]]]:
    """recipient -> (kind, events) of the alert mails a pass queued."""
    return {q.message.rcpt_tos[0]: (q.kind, q.message.audit_detail["events"])
            for q in report.queued}


def _pg() -> str:
    url = require_postgres()
    reset_postgres()
    return url


class _CommitBetween:
    """A connection that, right after the dispatcher's read past its cursor, commits an
    audit row with a missing id from a second connection: what another instance's write
    does on PostgreSQL (ids handed out at the insert, committed later) — here forced to
    fall exactly between that read and whatever the pass reads next."""

    def __init__(self, conn: Any, engine: Any, row: dict[str, Any]) -> None:
        self.conn, self.engine, self.row, self.done = conn, engine, row, False
        self.dialect = conn.dialect

    async def execute(self, stmt: Any, *args: Any, **kw: Any) -> Any:
        result = await self.conn.execute(stmt, *args, **kw)
        sql = str(stmt)
        if not self.done and "FROM audit" in sql and "LIMIT" in sql and "ORDER BY audit.id" in sql:
            self.done = True
            result = _Buffered(result.all())
            async with self.engine.begin() as other:
                await other.execute(insert(audit).values(self.row))
        return result


class _Buffered:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def all(self) -> list[Any]:
        return self.rows

    def scalars(self) -> Any:
        return iter([r[0] for r in self.rows])

    def __iter__(self) -> Any:
        return iter(self.rows)


def test_a_row_committed_during_the_read_is_alerted_once(tmp_path: Path) -> None:
    """Finding 1: the read past the cursor and the read of its rows were two statements;
    at READ COMMITTED an id committed between them was both "missing" and returned, so
    alerted now and again when the gap was found. Forced on PostgreSQL."""
    url = _pg()

    async def go() -> None:
        async with _dispatcher(tmp_path, url, GUARD_ALERTS__MIN_INTERVAL_SECONDS="0"
                               ) as (engine, writer, alerts):
            await _held(writer, "M1", "carol@example.co.jp", ["buyer@client.example"])
            async with engine.connect() as conn:
                held = dict((await conn.execute(select(audit).where(
                    audit.c.message_id == "M1"))).one()._mapping)
            await writer.submit(lambda conn, now: conn.execute(
                delete(audit).where(audit.c.id == held["id"])))
            await writer.submit(lambda conn, now: conn.execute(insert(audit).values(
                {**held, "id": held["id"] + 1, "action": "notified", "from_state": "held"})))
            await writer.submit(lambda conn, now: conn.execute(text(  # (the alert mail's ids)
                "SELECT setval(pg_get_serial_sequence('audit', 'id'), 1000)")))
            # id held["id"] commits right after the dispatcher's read past its cursor
            async with engine.begin() as conn:
                now = time.time()
                report = await alerts._pass(_CommitBetween(conn, engine, held),  # type: ignore[arg-type]
                                            now, None)
            sent = [*report.queued]
            for _ in range(3):
                report = await alerts.tick()
                sent += report.queued
            assert report.gathered == 0
            assert [(q.kind, q.message.audit_detail["events"]) for q in sent] == [
                ("first", [held["id"]])]

    asyncio.run(go())


def test_a_pass_held_by_another_instance_is_skipped_at_once(tmp_path: Path) -> None:
    """Finding 8: a pass waited in the writer (and every accept behind it) while another
    instance's pass held the state row; now it skips."""
    url = _pg()

    async def go() -> None:
        async with _dispatcher(tmp_path, url) as (_, writer, alerts):
            other = db.create_engine(url)
            try:
                async with other.begin() as conn:  # instance A, in the middle of its pass
                    await conn.execute(select(store_meta).where(
                        store_meta.c.name == "alerts").with_for_update())
                    report = await asyncio.wait_for(alerts.tick(), 5)
                    assert report.skipped and report.queued == []
                    # the writer is free: another write goes through meanwhile
                    await asyncio.wait_for(_held(writer, "M1", "carol@example.co.jp",
                                                 ["buyer@client.example"]), 5)
            finally:
                await other.dispose()
            report = await alerts.tick()  # A done: B's next pass does the work
            assert not report.skipped and [q.kind for q in report.queued] == ["first"]

    asyncio.run(go())


def test_each_person_gets_one_mail_per_interval(tmp_path: Path) -> None:
    """Finding 7: the officer is in both the company-wide and the sales set; a sales and
    a non-sales event used to mail them twice at once (one per set)."""
    async def go() -> None:
        url = f"sqlite:///{tmp_path / 'guard.db'}"
        async with _dispatcher(tmp_path, url) as (_, writer, alerts):
            await _held(writer, "M1", "alice@example.co.jp", ["buyer@client.example"])
            await _held(writer, "M2", "carol@example.co.jp", ["buyer@client.example"])
            first = _sent(await alerts.tick())
            assert sorted(first) == ["privacy@example.co.jp", "sales-head@example.co.jp"]
            assert first["privacy@example.co.jp"][0] == "burst"
            assert first["sales-head@example.co.jp"][0] == "first"
            # within min_interval_seconds: gathered, not mailed, for both of them
            await _held(writer, "M3", "alice@example.co.jp", ["buyer@client.example"])
            report = await alerts.tick()
            assert report.queued == [] and report.gathered == 1
            assert report.next_due_in is not None and report.next_due_in > 3000

    asyncio.run(go())


def test_a_severe_hold_released_only_inside_is_no_override(tmp_path: Path) -> None:
    """Finding 2: the approver took the outside recipient off and released the mail to
    the colleague: nothing went outside, so no "released anyway" alert."""
    async def go() -> None:
        url = f"sqlite:///{tmp_path / 'guard.db'}"
        async with _dispatcher(tmp_path, url) as (_, writer, alerts):
            await _held(writer, "M1", "carol@example.co.jp",
                        ["buyer@client.example", "bob@example.co.jp"])
            assert [q.kind for q in (await alerts.tick()).queued] == ["first"]

            async def drop_and_release(conn: Any, now: float) -> None:
                assert await holds.drop_recipient(conn, now, "M1", 0)
                await conn.execute(messages.update().where(messages.c.id == "M1")
                                   .values(state="queued"))
                await conn.execute(insert(audit).values(
                    message_id="M1", at=now, actor="web:approver:sec@example.co.jp",
                    action="approve", from_state="held", to_state="queued",
                    detail=json.dumps({"by": "approver"})))

            await writer.submit(drop_and_release)
            report = await alerts.tick()
            assert report.read == 1 and report.queued == [] and report.gathered == 0

    asyncio.run(go())


def test_a_card_number_to_a_colleague_is_the_digests(tmp_path: Path) -> None:
    """Finding 13: My Number and card numbers are severe only going outside, like 10+
    records: to a colleague only, no first report; the digest counts it."""
    async def go() -> None:
        url = f"sqlite:///{tmp_path / 'guard.db'}"
        async with _dispatcher(tmp_path, url, GUARD_ALERTS__DIGEST_HOUR="0",
                               GUARD_ALERTS__GAP_WAIT_SECONDS="0.05") as (_, writer, alerts):
            await _held(writer, "M1", "carol@example.co.jp", ["bob@example.co.jp"])
            report = await alerts.tick()
            assert report.read == 1 and report.queued == [] and report.gathered == 0
            # the day's digest is due (as if yesterday's was sent)
            async def yesterdays_sent(conn: Any, now: float) -> None:
                state = json.loads(await knowledge.get_meta(conn, "alerts") or "{}")
                state.update(digest_day="x", digest_until=now - 3600)
                await knowledge.set_meta(conn, now, "alerts", json.dumps(state))

            await writer.submit(yesterdays_sent)
            await asyncio.sleep(0.1)  # (older than gap_wait_seconds)
            [q] = (await alerts.tick()).queued
            assert q.kind == "digest" and q.message.rcpt_tos == ["digest@example.co.jp"]
            assert (q.message.audit_detail["events"], q.message.audit_detail["severe"]) == (1, 0)

    asyncio.run(go())


def test_missing_ids_are_never_passed_over_unrecorded_and_a_restore_resets(
        tmp_path: Path) -> None:
    """Finding 9: more ids missing than can be kept stop the cursor before the first one
    not kept (the list is never built over the whole span); a cursor past the newest id
    (a restore) is reset."""
    async def go() -> None:
        url = f"sqlite:///{tmp_path / 'guard.db'}"
        async with _dispatcher(tmp_path, url) as (engine, writer, _):
            row = {"message_id": "M", "at": 1.0, "actor": "x", "action": "held",
                   "from_state": "", "to_state": "held", "detail": "{}"}
            await writer.submit(lambda conn, now: conn.execute(insert(audit), [
                {"id": i, **row} for i in (1, 5, 10**9)]))  # ids 2-4 and a huge jump missing
            async with engine.connect() as conn:
                read = await A.read_after(conn, 0, {"held"}, max_missing=2)
                assert ([r.id for r in read.rows], read.after, read.missing,
                        read.held_back) == ([1], 3, [2, 3], True)
                read = await A.read_after(conn, 3, {"held"}, max_missing=5)
                assert ([r.id for r in read.rows], read.after, read.missing,
                        read.held_back) == ([5], 9, [4, 6, 7, 8, 9], True)
                read = await A.read_after(conn, 2 * 10**9, {"held"})
                assert (read.after, read.reset_from) == (10**9, 2 * 10**9)

    asyncio.run(go())


def test_alert_links_without_a_base_url_are_warned_of(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Finding 26: with review.base_url (and web.base_url) unset, alert links point at
    http://<web.listen>; the dispatcher says so when it starts."""
    async def go() -> None:
        url = f"sqlite:///{tmp_path / 'guard.db'}"
        async with _dispatcher(tmp_path, url) as (_, _w, alerts):
            alerts._warn_links()
        async with _dispatcher(tmp_path, url, GUARD_REVIEW__BASE_URL="https://g.example.co.jp"
                               ) as (_, _w, alerts):
            alerts._warn_links()

    with caplog.at_level(logging.WARNING, "guard.alert"):
        asyncio.run(go())
    warned = [r.getMessage() for r in caplog.records if "base_url" in r.getMessage()]
    assert len(warned) == 1 and "http://" in warned[0] and "review.base_url" in warned[0]


def test_an_older_guards_gathered_events_go_to_whom_the_policy_names(tmp_path: Path) -> None:
    """The state kept one list of gathered ids for every recipient before; such a state
    (an upgrade mid-gather) is mailed to the officers and departments the policy names."""
    async def go() -> None:
        url = f"sqlite:///{tmp_path / 'guard.db'}"
        async with _dispatcher(tmp_path, url) as (engine, writer, alerts):
            async def older_state(conn: Any, now: float) -> None:
                state = json.loads(await knowledge.get_meta(conn, "alerts") or "{}")
                await insert_message(conn, now, NewMessage(
                    id="M1", state="held", mail_from="alice@example.co.jp", sender="alice",
                    rcpt_tos=["buyer@client.example"], data=b"x", verdict=VERDICT,
                    actor="smtp:alice"))
                newest = (await conn.execute(select(audit.c.id))).scalars().all()
                state.update(after=max(newest), pending=newest, sent={"0123abcd": now})
                await knowledge.set_meta(conn, now, "alerts", json.dumps(state))

            await writer.submit(older_state)
            sent = _sent(await alerts.tick())
            assert sent == {"privacy@example.co.jp": ("first", sent["privacy@example.co.jp"][1]),
                            "sales-head@example.co.jp": sent["privacy@example.co.jp"]}
            assert await _state(engine, "pending") == {}

    asyncio.run(go())
