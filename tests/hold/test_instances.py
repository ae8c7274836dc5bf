"""Several instances on one database: timers and approvals act once (SQLite and PostgreSQL).

PostgreSQL runs in a database of its own (the test database's name + `_hold`, created on
the test server) so these tests never disturb others that use the test database, and
two checkouts with different test databases never share it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from guard.hold.acts import Actor
from guard.store import db
from tests.conftest import require_postgres
from tests.hold.conftest import (
    BOSS,
    BOSS2,
    Harness,
    close_harness,
    make_settings,
    open_harness,
    verdict,
)


async def _pg_database(pg_url: str) -> str:
    url = make_url(pg_url)
    admin = db.create_engine(url.render_as_string(hide_password=False))
    name = f"{url.database or 'guard'}_hold"
    async with admin.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        exists = (await conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                     {"n": name})).first()
        if not exists:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    target = url.set(database=name).render_as_string(hide_password=False)
    engine = db.create_engine(target)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    return target


@pytest.fixture(params=["sqlite", "postgres"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path
               ) -> AsyncIterator[tuple[Harness, Harness]]:
    env: dict[str, str] = {}
    if request.param == "postgres":
        env["GUARD_DATABASE_URL"] = await _pg_database(require_postgres())
    a = await open_harness(make_settings(tmp_path, GUARD_INSTANCE_ID="guard-a", **env))
    b = await open_harness(make_settings(tmp_path, GUARD_INSTANCE_ID="guard-b", **env))
    yield a, b
    await close_harness(a)
    await close_harness(b)


async def test_timers_of_two_instances_act_once(pair: tuple[Harness, Harness]):
    a, b = pair
    ids = [await a.put(verdict("delay"), notify=False, hold_seconds=-1) for _ in range(8)]
    ids += [await a.put(verdict("confirm"), notify=False, hold_seconds=-1) for _ in range(4)]
    for _ in range(2):
        await asyncio.gather(a.service.timers.tick(), b.service.timers.tick())
    for mid in ids:
        audit = await a.audit(mid)
        assert [x["action"] for x in audit] == ["held", "notified", "expire"], audit
        held_notices = [n for n in await a.notices(mid) if n.kind == "held"]
        assert len(held_notices) == 1
    states = {await a.state(mid) for mid in ids[:8]} | {"-"}
    assert states == {"queued", "-"}
    assert {await a.state(mid) for mid in ids[8:]} == {"expired"}
    # both instances took part or one did all: either way, every row moved once
    actors = {x["actor"] for mid in ids for x in await a.audit(mid) if x["action"] == "expire"}
    assert actors <= {"timer:system:guard-a", "timer:system:guard-b"}


async def test_two_approvals_on_two_instances_release_once(pair: tuple[Harness, Harness]):
    a, b = pair
    for _ in range(3):
        mid = await a.put(verdict("approve", approvers=[BOSS, BOSS2], approvals_required=2))
        r1, r2 = await asyncio.gather(
            a.lc.approve(mid, Actor("approver", BOSS, "web")),
            b.lc.approve(mid, Actor("approver", BOSS2, "web")))
        assert sorted([r1.code, r2.code]) == ["approval_partial", "approved"]
        assert await a.state(mid) == "queued"
        moves = [x for x in await a.audit(mid) if x["to_state"] == "queued"]
        assert len(moves) == 1


async def test_cancel_and_expiry_race_on_two_instances(pair: tuple[Harness, Harness]):
    a, b = pair
    for _ in range(3):
        mid = await a.put(verdict("delay"), hold_seconds=-1)
        r1, r2 = await asyncio.gather(
            a.lc.cancel(mid, Actor("sender", "alice@example.co.jp", "web"),
                        reason="wrong_recipient"),
            b.lc.expire(mid))
        assert sorted([r1.ok, r2.ok]) == [False, True]
        final = await a.state(mid)
        assert final == ("cancelled" if r1.ok else "queued")
