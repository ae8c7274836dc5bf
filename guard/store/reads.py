"""What the CLI, the web and `guard policy replay` read about messages: counts, lists,
one message with its recipients and audit trail, the stored bytes page by page. Reads
only; every write of a message row is in queue.py and delivery.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.db import now_sql
from guard.store.lifecycle import ACTIVE_STATES, INSERT_ACTIONS, State
from guard.store.schema import audit, contents, messages, recipients


async def oldest_deferred_age(conn: AsyncConnection) -> float | None:
    """Seconds since the oldest deferred message was received, by the database clock
    (None: nothing is deferred)."""
    row = (await conn.execute(
        select(func.min(messages.c.received_at), text("(" + now_sql(conn) + ")"))
        .where(messages.c.state == State.DEFERRED))).one()
    return None if row[0] is None else max(float(row[1]) - float(row[0]), 0.0)



async def count_by_state(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(
        select(messages.c.state, func.count()).group_by(messages.c.state))
    return {r[0]: r[1] for r in rows}


async def list_messages(conn: AsyncConnection, state: str | None = None,
                        limit: int = 100) -> list[dict[str, Any]]:
    # ids sort by time within a timestamp (a held message and its notice share one)
    q = (select(messages).order_by(messages.c.received_at.desc(), messages.c.id.desc())
         .limit(limit))
    if state:
        if state == "delivering":
            q = q.where(messages.c.state.in_(ACTIVE_STATES), messages.c.lease_owner.is_not(None))
        else:
            q = q.where(messages.c.state == state)
    out = []
    for r in await conn.execute(q):
        d = dict(r._mapping)
        d["verdict"] = json.loads(d["verdict"] or "{}")
        out.append(d)
    if out:
        ids = [d["id"] for d in out]
        rc: dict[str, list[str]] = {}
        for r in await conn.execute(select(recipients.c.message_id, recipients.c.address)
                                    .where(recipients.c.message_id.in_(ids))
                                    .order_by(recipients.c.idx)):
            rc.setdefault(r.message_id, []).append(r.address)
        for d in out:
            d["recipients"] = rc.get(d["id"], [])
    return out


async def show_message(conn: AsyncConnection, message_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
    if row is None:
        return None
    d = dict(row._mapping)
    d["verdict"] = json.loads(d["verdict"] or "{}")
    d["recipients"] = [dict(r._mapping) for r in await conn.execute(
        select(recipients).where(recipients.c.message_id == message_id)
        .order_by(recipients.c.idx))]
    d["audit"] = [
        {**dict(r._mapping), "detail": json.loads(r.detail or "{}")}
        for r in await conn.execute(
            select(audit).where(audit.c.message_id == message_id).order_by(audit.c.id))]
    return d


async def count_messages(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(messages))).scalar_one())



@dataclass
class StoredMessage:
    id: str
    mail_from: str
    sender: str
    received_at: float
    state: str
    listener: str  # "" for mail the guard made itself (notices, DSNs)
    verdict: dict[str, Any]
    received_action: str  # the action decided at receipt (an admin hold changes `verdict`)
    rcpts: list[str]
    data: bytes  # as received


_RECEIVED_ACTIONS = tuple(INSERT_ACTIONS.values())  # insert_message's audit actions


async def stored_page(conn: AsyncConnection, since: float, after_id: str = "",
                      limit: int = 200) -> list[StoredMessage]:
    """Messages received since `since` whose bytes are still kept, as received, oldest
    first, one page at a time (keyset pagination on id, which sorts by time)."""
    rows = (await conn.execute(
        select(messages.c.id, messages.c.mail_from, messages.c.sender, messages.c.received_at,
               messages.c.state, messages.c.listener, messages.c.verdict, contents.c.data,
               contents.c.original)
        .join(contents, contents.c.message_id == messages.c.id)
        .where(messages.c.received_at >= since, messages.c.id > after_id)
        .order_by(messages.c.id).limit(limit))).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    rc: dict[str, list[str]] = {}
    for rr in await conn.execute(select(recipients.c.message_id, recipients.c.address)
                                 .where(recipients.c.message_id.in_(ids))
                                 .order_by(recipients.c.idx)):
        rc.setdefault(rr.message_id, []).append(rr.address)
    decided: dict[str, str] = {}
    for a in await conn.execute(select(audit.c.message_id, audit.c.detail).where(
            audit.c.message_id.in_(ids), audit.c.action.in_(_RECEIVED_ACTIONS),
            audit.c.from_state == "")):
        action = json.loads(a.detail or "{}").get("action")
        if isinstance(action, str):
            decided[a.message_id] = action
    out = []
    for r in rows:
        verdict = json.loads(r.verdict or "{}")
        out.append(StoredMessage(
            r.id, r.mail_from, r.sender, r.received_at, r.state, r.listener, verdict,
            decided.get(r.id, str(verdict.get("action", "pass"))), rc.get(r.id, []),
            r.original if r.original is not None else r.data))
    return out


async def count_without_bytes(conn: AsyncConnection, since: float) -> int:
    """Received messages since `since` whose bytes are no longer (or never were) kept."""
    kept = select(contents.c.message_id)
    return int((await conn.execute(select(func.count()).select_from(messages).where(
        messages.c.received_at >= since, messages.c.listener != "",
        messages.c.id.not_in(kept)))).scalar_one())
