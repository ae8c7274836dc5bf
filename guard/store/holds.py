"""SQL of the hold lifecycle. State changes go through `queue.transition()`.

Every lifecycle operation starts with `lock_message()`: on PostgreSQL the message row is
locked (FOR UPDATE) for the rest of the transaction, so two instances acting on one
hold run one after the other and the second sees what the first committed (two
approvals arriving together are counted together; a cancel and a release cannot both
win). SQLite writers already run one at a time (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.holds_schema import hold_approvals, holds, used_tokens
from guard.store.lifecycle import RecipientState, State
from guard.store.schema import audit, contents, messages, recipients


@dataclass
class MessageRow:
    id: str
    state: str
    mail_from: str
    sender: str
    subject: str
    header_from: str
    message_id_header: str
    verdict: dict[str, Any]
    received_at: float
    hold_until: float | None
    size: int
    lease_owner: str | None
    lease_until: float | None


@dataclass
class RecipientRow:
    idx: int
    address: str
    state: str


@dataclass
class HoldRow:
    kind: str
    notified_at: float
    escalate_at: float | None
    escalated_at: float | None
    approvals_required: int


_MSG_COLS = (messages.c.id, messages.c.state, messages.c.mail_from, messages.c.sender,
             messages.c.subject, messages.c.header_from, messages.c.message_id_header,
             messages.c.verdict, messages.c.received_at, messages.c.hold_until,
             messages.c.size, messages.c.lease_owner, messages.c.lease_until)


def _message(r: Any) -> MessageRow:
    try:
        verdict = json.loads(r.verdict or "{}")
    except ValueError:
        verdict = {}
    return MessageRow(r.id, r.state, r.mail_from, r.sender, r.subject, r.header_from,
                      r.message_id_header, verdict if isinstance(verdict, dict) else {},
                      r.received_at, r.hold_until, r.size, r.lease_owner, r.lease_until)


async def get_message(conn: AsyncConnection, message_id: str, *, lock: bool = False
                      ) -> MessageRow | None:
    q = select(*_MSG_COLS).where(messages.c.id == message_id)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    return _message(row) if row is not None else None


async def lock_message(conn: AsyncConnection, message_id: str) -> MessageRow | None:
    return await get_message(conn, message_id, lock=True)


async def get_recipients(conn: AsyncConnection, message_id: str) -> list[RecipientRow]:
    rows = await conn.execute(
        select(recipients.c.idx, recipients.c.address, recipients.c.state)
        .where(recipients.c.message_id == message_id).order_by(recipients.c.idx))
    return [RecipientRow(r.idx, r.address, r.state) for r in rows]


async def drop_recipient(conn: AsyncConnection, now: float, message_id: str, idx: int) -> bool:
    """pending → dropped (compare-and-set); the caller writes the audit row."""
    res = await conn.execute(update(recipients).where(
        recipients.c.message_id == message_id, recipients.c.idx == idx,
        recipients.c.state == RecipientState.PENDING).values(
        state=str(RecipientState.DROPPED), updated_at=now))
    return res.rowcount == 1


async def get_content(conn: AsyncConnection, message_id: str) -> bytes | None:
    row = (await conn.execute(select(contents.c.data).where(
        contents.c.message_id == message_id))).first()
    return bytes(row.data) if row is not None else None


async def has_content(conn: AsyncConnection, message_id: str) -> bool:
    """Whether the bytes are still stored (guard/store/retention.py purges them)."""
    row = (await conn.execute(select(contents.c.message_id).where(
        contents.c.message_id == message_id))).first()
    return row is not None


async def replace_content(conn: AsyncConnection, message_id: str, data: bytes) -> None:
    """The edited bytes to deliver; the bytes as received stay in `original` (replay)."""
    await conn.execute(update(contents).where(contents.c.message_id == message_id)
                       .values(data=data, original=func.coalesce(contents.c.original,
                                                                 contents.c.data)))


async def get_hold(conn: AsyncConnection, message_id: str) -> HoldRow | None:
    r = (await conn.execute(select(holds).where(holds.c.message_id == message_id))).first()
    if r is None:
        return None
    return HoldRow(r.kind, r.notified_at, r.escalate_at, r.escalated_at, r.approvals_required)


async def create_hold(conn: AsyncConnection, now: float, message_id: str, kind: str,
                      escalate_at: float | None, approvals_required: int) -> None:
    await conn.execute(insert(holds).values(
        message_id=message_id, kind=kind, notified_at=now, escalate_at=escalate_at,
        escalated_at=None, approvals_required=approvals_required))


async def mark_escalated(conn: AsyncConnection, now: float, message_id: str) -> bool:
    res = await conn.execute(update(holds).where(
        holds.c.message_id == message_id, holds.c.escalated_at.is_(None))
        .values(escalated_at=now))
    return res.rowcount == 1


async def get_approvals(conn: AsyncConnection, message_id: str) -> list[str]:
    rows = await conn.execute(select(hold_approvals.c.approver).where(
        hold_approvals.c.message_id == message_id).order_by(hold_approvals.c.at))
    return [r.approver for r in rows]


async def add_approval(conn: AsyncConnection, now: float, message_id: str,
                       approver: str) -> None:
    await conn.execute(insert(hold_approvals).values(
        message_id=message_id, approver=approver, at=now))


async def nonce_used(conn: AsyncConnection, nonce: str) -> bool:
    return (await conn.execute(select(used_tokens.c.nonce).where(
        used_tokens.c.nonce == nonce))).first() is not None


async def use_nonce(conn: AsyncConnection, now: float, nonce: str, message_id: str,
                    expires_at: float) -> None:
    await conn.execute(insert(used_tokens).values(
        nonce=nonce, message_id=message_id, used_at=now, expires_at=expires_at))


async def purge_used_tokens(conn: AsyncConnection, now: float) -> int:
    res = await conn.execute(delete(used_tokens).where(used_tokens.c.expires_at < now))
    return res.rowcount or 0


# --- what the timers look for -----------------------------------------------------------

async def unnotified(conn: AsyncConnection, limit: int) -> list[str]:
    """Held messages whose first notice has not gone out (crash, or nobody called
    notify_held): the timers send it, so no hold waits silently."""
    q = (select(messages.c.id).outerjoin(holds, holds.c.message_id == messages.c.id)
         .where(messages.c.state == State.HELD, holds.c.message_id.is_(None))
         .order_by(messages.c.received_at).limit(limit))
    return [r.id for r in await conn.execute(q)]


async def due_expiries(conn: AsyncConnection, now: float, limit: int) -> list[str]:
    q = (select(messages.c.id).join(holds, holds.c.message_id == messages.c.id)
         .where(messages.c.state == State.HELD, messages.c.hold_until.is_not(None),
                messages.c.hold_until <= now)
         .order_by(messages.c.hold_until).limit(limit))
    return [r.id for r in await conn.execute(q)]


async def due_escalations(conn: AsyncConnection, now: float, limit: int) -> list[str]:
    q = (select(messages.c.id).join(holds, holds.c.message_id == messages.c.id)
         .where(messages.c.state == State.HELD, holds.c.escalated_at.is_(None),
                holds.c.escalate_at.is_not(None), holds.c.escalate_at <= now)
         .order_by(holds.c.escalate_at).limit(limit))
    return [r.id for r in await conn.execute(q)]


async def next_due(conn: AsyncConnection) -> float | None:
    """The earliest hold_until or escalate_at of a held message (None = nothing due)."""
    a = (await conn.execute(
        select(func.min(messages.c.hold_until)).join(holds, holds.c.message_id == messages.c.id)
        .where(messages.c.state == State.HELD))).scalar()
    b = (await conn.execute(
        select(func.min(holds.c.escalate_at)).join(messages, messages.c.id == holds.c.message_id)
        .where(messages.c.state == State.HELD, holds.c.escalated_at.is_(None)))).scalar()
    times = [float(t) for t in (a, b) if t is not None]
    return min(times) if times else None


async def near_misses(conn: AsyncConnection, since: float) -> list[dict[str, Any]]:
    """Held messages that people stopped (ヒヤリハット): cancelled by the sender or an
    admin, rejected by an approver. Who, when, why, and what the guard had seen."""
    rows = await conn.execute(
        select(audit.c.message_id, audit.c.at, audit.c.actor, audit.c.action,
               audit.c.detail)
        .where(audit.c.at >= since, audit.c.action.in_(("cancel", "reject")),
               and_(audit.c.from_state == State.HELD, audit.c.to_state == State.CANCELLED))
        .order_by(audit.c.at))
    return [{"message_id": r.message_id, "at": r.at, "actor": r.actor, "action": r.action,
             "detail": json.loads(r.detail or "{}")} for r in rows]
