"""The declared message lifecycle (guard/store/lifecycle.py) is the whole truth:

- every move in MOVES happens through the functions the web, the CLI, the timers and the
  delivery worker call, and those functions make no move outside it;
- every move outside it is refused by the store before anything is written;
- docs/architecture.md shows exactly the table (its block is printed from MOVES).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from guard.hold.lifecycle import Actor
from guard.store import delivery, reads
from guard.store import lifecycle as lc
from guard.store import queue as q
from guard.store.lifecycle import ALLOWED, IllegalMove, State
from guard.store.schema import audit, messages
from tests.hold.conftest import (
    BOB,
    BOSS,
    BOSS2,
    CAROL,
    DEPUTY,
    Harness,
    close_harness,
    make_settings,
    open_harness,
    verdict,
)

ROOT = Path(__file__).resolve().parent.parent
SENDER = Actor("sender", "alice@example.co.jp", "web", "192.0.2.10")
ADMIN = Actor("admin", "root", "cli")
OWNER = "test-host:1:0:lifecycle"


def approver(addr: str) -> Actor:
    return Actor("approver", addr, "web", "192.0.2.20")


@pytest.fixture
async def hs(db_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    h = await open_harness(make_settings(tmp_path, GUARD_DATABASE_URL=db_url))
    yield h
    await close_harness(h)


# --- the table itself ---------------------------------------------------------------------


def test_architecture_doc_carries_the_table_printed_from_moves():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert lc.current_block(doc) == lc.block(), (
        "docs/architecture.md differs from guard/store/lifecycle.py MOVES: run "
        "`python -m guard.store.lifecycle --write docs/architecture.md`")


def test_the_generator_prints_the_block_and_rewrites_only_between_the_markers(tmp_path):
    out = subprocess.run([sys.executable, "-m", "guard.store.lifecycle"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out == lc.block() + "\n"
    assert "stateDiagram-v2" in out and "| `held` | `queued` | `release` |" in out
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{lc.BEGIN}\nstale\n{lc.END}\nafter\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "guard.store.lifecycle", "--write", str(doc)],
                   cwd=ROOT, check=True)
    assert doc.read_text(encoding="utf-8") == f"before\n{lc.block()}\nafter\n"
    assert lc.current_block("no markers here") == ""


def test_the_table_is_a_lifecycle():
    # final states have no way out; every state can be reached from a stored message
    assert not [m for m in lc.MOVES if m.source in lc.FINAL_STATES]
    reached: set[State | None] = {None}
    while True:
        more = {m.target for m in lc.MOVES if m.source in reached} - reached
        if not more:
            break
        reached |= more
    assert reached - {None} == set(State)
    assert "corrupt" not in set(State)
    assert set(State) == set(lc.ACTIVE_STATES) | set(lc.FINAL_STATES) | {State.HELD}
    assert len(ALLOWED) == len(lc.MOVES)  # no row twice


def test_check_move_names_the_refused_move():
    lc.check_move("held", "queued", "release")
    lc.check_move(State.HELD, State.QUEUED, "release")
    with pytest.raises(IllegalMove, match=r"delivered → queued by 'release'"):
        lc.check_move("delivered", "queued", "release")
    with pytest.raises(IllegalMove, match="corrupt"):
        lc.check_move("queued", "corrupt", "deferred")
    with pytest.raises(IllegalMove, match=r"\(insert\) → deferred"):
        lc.check_move(None, "deferred", "deferred")
    assert lc.insert_action("held") == "held"
    with pytest.raises(IllegalMove):
        lc.insert_action("delivered")


# --- every declared move, through the real functions ----------------------------------------


async def _moves_written(h: Harness) -> set[tuple[State | None, State, str]]:
    async with h.engine.connect() as conn:
        rows = await conn.execute(select(audit.c.from_state, audit.c.to_state, audit.c.action)
                                  .where(audit.c.message_id != "-"))
        return {(State(r.from_state) if r.from_state else None, State(r.to_state), r.action)
                for r in rows}


async def _attempt(h: Harness, outcomes: dict[str, list[str]]) -> dict[str, str | None]:
    """Claim what is due (exactly the messages named) and write one attempt for each."""

    async def claim(conn: Any, now: float) -> list[delivery.Claimed]:
        return await delivery.claim_due(conn, now, OWNER, 60.0, 100)

    claimed = {c.id: c for c in await h.writer.submit(claim)}
    assert set(claimed) == set(outcomes)
    states: dict[str, str | None] = {}
    for mid, results in outcomes.items():
        env = claimed[mid].envelope
        assert env is not None
        res = [delivery.RecipientResult(i, a, {"delivered": 250, "deferred": 451}.get(o, 550),
                                        o, o) for (i, a), o in zip(env.rcpts, results,
                                                                   strict=True)]

        async def record(conn: Any, now: float, mid: str = mid,
                         res: list[delivery.RecipientResult] = res) -> str | None:
            return await delivery.record_attempt(
                conn, now, mid, OWNER, res, next_attempt_at=now + 600, give_up=False,
                actor="relay:test", detail={})

        states[mid] = await h.writer.submit(record)
    return states


async def test_every_declared_move_happens_through_the_functions_callers_use(hs: Harness):
    pass_v = verdict("pass")
    # stored: queued (and below: notices), held, rejected
    q1, q2, q4 = [await hs.put(pass_v, state="queued") for _ in range(3)]
    d = [await hs.put(pass_v, state="queued") for _ in range(5)]
    await hs.put(pass_v, state="rejected", notify=False)

    # delivery: first attempts from queued
    states = await _attempt(hs, {
        q1: ["delivered", "delivered"], q2: ["delivered", "failed"],
        q4: ["failed", "failed"], **{m: ["deferred", "deferred"] for m in d}})
    assert [states[m] for m in (q1, q2, q4)] == ["delivered", "delivered", "bounced"]
    assert {states[m] for m in d} == {"deferred"}
    # `guard queue retry --all`: deferred → deferred, due now
    assert sorted(await hs.writer.submit(
        lambda conn, now: q.retry_all(conn, now, "cli:admin:test"))) == sorted(d)
    # second attempts, from deferred (d[4] stays deferred: a message in that state below)
    states = await _attempt(hs, {
        d[0]: ["delivered", "delivered"], d[1]: ["failed", "delivered"],
        d[2]: ["deferred", "delivered"], d[3]: ["failed", "failed"],
        d[4]: ["deferred", "deferred"]})
    assert [states[m] for m in d[:4]] == ["delivered", "delivered", "deferred", "bounced"]

    # `guard queue retry ID` of a queued message that waits (the row's time moved ahead)
    waiting = await hs.put(pass_v, state="queued")

    async def later(conn: Any, now: float) -> None:
        await conn.execute(update(messages).where(messages.c.id == waiting)
                           .values(next_attempt_at=now + 600))

    await hs.writer.submit(later)
    retried = await hs.writer.submit(
        lambda conn, now: q.retry_now(conn, now, waiting, "cli:admin:test"))
    assert retried.result == "retried"

    # the writer's undo of an accept answered 451
    for state in ("queued", "held"):
        mid = await hs.put(verdict("confirm"), state=state, notify=False)
        assert await hs.writer.submit(
            lambda conn, now, mid=mid: q.withdraw_unanswered(conn, now, mid, "smtp:alice"))

    # the hold lifecycle: an admin holds a queued and a deferred message
    assert (await hs.lc.hold(await hs.put(pass_v, state="queued"), ADMIN,
                             reason="check")).code == "held"
    assert (await hs.lc.hold(d[2], ADMIN, reason="check")).code == "held"
    # notified (put), then released by the sender
    assert (await hs.lc.release(await hs.put(verdict("confirm")), SENDER)).code == "released"
    # two approvals: held → held, then held → queued
    two = await hs.put(verdict("approve", approvers=[BOSS, BOSS2], approvals_required=2))
    assert (await hs.lc.approve(two, approver(BOSS))).code == "approval_partial"
    assert (await hs.lc.approve(two, approver(BOSS2))).code == "approved"
    # escalation
    esc = await hs.put(verdict("approve", backup_approvers=[DEPUTY], escalate_after_minutes=1))
    await hs.set_times(esc, escalate_at=-1)
    assert (await hs.lc.escalate(esc)).code == "escalated"
    # one recipient taken out, then the last one: cancelled
    drop = await hs.put(verdict("confirm"))
    assert (await hs.lc.drop_recipient(drop, BOB, SENDER)).code == "dropped"
    assert (await hs.lc.drop_recipient(drop, CAROL, SENDER)).code == "cancelled"
    # expiry: sent (delay) or expired (confirm)
    for kind, code in (("delay", "released"), ("confirm", "expired")):
        mid = await hs.put(verdict(kind))
        await hs.set_times(mid, hold_until=-1)
        assert (await hs.lc.expire(mid)).code == code
    # cancel by the sender, reject by an approver
    assert (await hs.lc.cancel(await hs.put(verdict("confirm")), SENDER,
                               reason="wrong_recipient")).code == "cancelled"
    assert (await hs.lc.reject(await hs.put(verdict("approve")), approver(BOSS),
                               reason="no")).code == "rejected"

    written = await _moves_written(hs)
    assert written == ALLOWED, (
        f"declared but not made: {sorted(map(str, ALLOWED - written))}; "
        f"made but not declared: {sorted(map(str, written - ALLOWED))}")

    # --- and nothing outside the table: every other (from, to, action) is refused ------
    await _every_other_move_is_refused(hs)


async def _snapshot(h: Harness) -> tuple[Any, ...]:
    async with h.engine.connect() as conn:
        rows = sorted(tuple(r) for r in await conn.execute(
            select(messages.c.id, messages.c.state, messages.c.updated_at,
                   messages.c.next_attempt_at, messages.c.lease_owner)))
        n = (await conn.execute(select(func.count()).select_from(audit))).scalar_one()
        return tuple(rows), n


async def _every_other_move_is_refused(h: Harness) -> None:
    async with h.engine.connect() as conn:
        counts = await reads.count_by_state(conn)
        one_in = {State(s): (await reads.list_messages(conn, s, 1))[0]["id"] for s in counts}
    assert set(one_in) == set(State)  # a message in every state to try it on
    actions = (*lc.ACTIONS, "corrupt", "")
    targets: tuple[str, ...] = (*State, "corrupt")
    before = await _snapshot(h)

    async def attempt_all(conn: Any, now: float) -> list[tuple[str, str, str]]:
        refused = []
        for source, mid in one_in.items():
            for target in targets:
                for action in actions:
                    if (source, target, action) in ALLOWED:
                        continue
                    for known in (None, str(source)):
                        with pytest.raises(IllegalMove):
                            await q.transition(conn, now, mid, from_states=(source,),
                                               to_state=target, actor="test", action=action,
                                               known_state=known, lease_owner=None)
                    refused.append((str(source), target, action))
        # a move that is allowed from one of its from_states but not from another
        with pytest.raises(IllegalMove):
            await q.transition(conn, now, one_in[State.HELD],
                               from_states=(State.HELD, State.DELIVERED),
                               to_state=State.QUEUED, actor="test", action="release")
        # the state changes through to_state only
        with pytest.raises(IllegalMove):
            await q.transition(conn, now, one_in[State.HELD], from_states=(State.HELD,),
                               to_state=State.HELD, actor="test", action="notified",
                               values={"state": "delivered"})
        # stored in a state that has no way in
        for target in targets:
            if target in lc.INSERT_ACTIONS:
                continue
            with pytest.raises(IllegalMove):
                await q.insert_message(conn, now, q.NewMessage(
                    id=f"X{target}", state=target, mail_from="a@example.co.jp",
                    sender="alice", rcpt_tos=[BOB], data=b"Subject: x\r\n\r\nx\r\n"))
        return refused

    refused = await h.writer.submit(attempt_all)
    assert len(refused) == len(State) * len(targets) * len(actions) - len(
        [m for m in lc.MOVES if m.source is not None])
    assert await _snapshot(h) == before  # nothing written, nothing changed
