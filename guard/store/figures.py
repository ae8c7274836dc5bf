"""The database-wide figures /metrics reports: the queue, the holds, the lists.

Every instance reads the same shared rows, so every instance reports the same values
(dashboards combine them with max, never sum). Read at scrape time, so each family is
one query over an index on the state; finished mail (which grows without end) is never
counted here — the counters count it as it happens.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.db import db_now, is_sqlite
from guard.store.holds_schema import holds
from guard.store.lifecycle import State
from guard.store.schema import lists, messages

WAITING: tuple[State, ...] = (State.QUEUED, State.DEFERRED, State.HELD)


@dataclass(frozen=True)
class Waiting:
    count: int
    oldest_age: float  # seconds; 0 when none


@dataclass(frozen=True)
class Pending:
    count: int
    oldest_age: float  # seconds since the hold began; 0 when none
    past_escalation: int  # approvals waiting past their escalation time


@dataclass(frozen=True)
class ListFigures:
    members: int
    synced_at: float  # the last sync from its file or `guard lists import`


@dataclass(frozen=True)
class Figures:
    at: float  # the database clock when they were read
    queue: dict[str, Waiting]
    holds: dict[str, Pending]
    lists: dict[str, ListFigures]


async def read_figures(conn: AsyncConnection, default_escalate_seconds: float) -> Figures:
    """One query per family. An approval without an escalation time of its own (nobody
    to escalate to) is late `default_escalate_seconds` after its first notice."""
    now = await db_now(conn)
    return Figures(now, await _queue(conn, now),
                   await _holds(conn, now, default_escalate_seconds), await _lists(conn))


async def _queue(conn: AsyncConnection, now: float) -> dict[str, Waiting]:
    # queued_at: when it became deliverable (a release sets it again), so a hold's wait
    # does not count as a stalled queue
    rows = await conn.execute(
        select(messages.c.state, func.count(), func.min(messages.c.queued_at))
        .where(messages.c.state.in_(WAITING)).group_by(messages.c.state))
    return {str(r[0]): Waiting(int(r[1]), max(now - float(r[2]), 0.0)) for r in rows}


def _verdict_action(conn: AsyncConnection) -> str:
    if is_sqlite(conn):
        return "json_extract(messages.verdict, '$.action')"
    return "(messages.verdict::json ->> 'action')"


async def _holds(conn: AsyncConnection, now: float, default_escalate: float
                 ) -> dict[str, Pending]:
    # the hold's kind is on its holds row once its first notice went out; before that
    # (a moment, or longer if notices fail) only in the stored verdict
    kind = func.coalesce(holds.c.kind, literal_column(_verdict_action(conn))).label("kind")
    began = func.coalesce(holds.c.notified_at, messages.c.updated_at)
    late = case((and_(holds.c.kind == "approve",
                      func.coalesce(holds.c.escalate_at, holds.c.notified_at + default_escalate)
                      <= now), 1), else_=0)
    rows = await conn.execute(
        select(kind, func.count(), func.min(began), func.sum(late))
        .select_from(messages.outerjoin(holds, holds.c.message_id == messages.c.id))
        .where(messages.c.state == State.HELD).group_by(kind))
    out: dict[str, Pending] = {}
    for r in rows:
        # an unknown action is a confirm hold (guard.hold.model reads verdicts the same way)
        k = r[0] if r[0] in ("delay", "confirm", "approve") else "confirm"
        had = out.get(k, Pending(0, 0.0, 0))
        out[k] = Pending(had.count + int(r[1]), max(had.oldest_age, now - float(r[2]), 0.0),
                         had.past_escalation + int(r[3] or 0))
    return out


async def _lists(conn: AsyncConnection) -> dict[str, ListFigures]:
    rows = await conn.execute(select(lists.c.name, lists.c.entries, lists.c.imported_at))
    return {r.name: ListFigures(int(r.entries), float(r.imported_at)) for r in rows}
