"""Delivery: claiming due messages under a lease, reading what to send, and writing
the outcome of an attempt (recipients, the message state, the audit row and any DSN, in
one transaction, only while the lease is still ours).

A lease is not a state ("delivering" is a queued or deferred row with a live lease): it
only says who may write the result, so taking, renewing and giving back leases write no
audit row. The state changes of an attempt go through `queue.transition()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.lifecycle import ACTIVE_STATES, RecipientState, State
from guard.store.queue import (
    DIRECT,
    Later,
    NewMessage,
    add_audit,
    can_transition_later,
    insert_message,
    transition,
    transition_later,
    write_later,
)
from guard.store.schema import contents, messages, recipients

# Statements built once: SQLAlchemy memoizes a statement's cache key on the object, so
# executing a constant with parameters skips the per-call construction and cache-key
# work that was most of the writer's CPU for small messages (py-spy, tests/bench).
_ATTEMPTS_PLUS_ONE = messages.c.attempts + 1
_SET_RECIPIENT = (
    update(recipients)
    .where(recipients.c.message_id == bindparam("m"), recipients.c.idx == bindparam("i"))
    .values(state=bindparam("s"), last_code=bindparam("c"), last_reply=bindparam("r"),
            updated_at=bindparam("t")).execution_options(**{DIRECT: True}))
_LOAD_MESSAGE = (
    select(messages.c.id, messages.c.mail_from, messages.c.sender, messages.c.state,
           contents.c.trace_header, contents.c.data)
    .join(contents, contents.c.message_id == messages.c.id)
    .where(messages.c.id == bindparam("m")))
_LOAD_RECIPIENTS = (
    select(recipients.c.idx, recipients.c.address, recipients.c.state)
    .where(recipients.c.message_id == bindparam("m")).order_by(recipients.c.idx))


@dataclass
class Claimed:
    id: str
    mail_from: str
    attempts: int
    queued_at: float
    received_at: float
    envelope: Envelope | None = None  # read with the claim when the message is small


# A claim reads small messages with it: two statements for the whole batch instead of two
# per message later. Larger ones are read when they are sent (memory stays bounded).
PREFETCH_BYTES = 256 * 1024

_DUE = and_(messages.c.state.in_(ACTIVE_STATES), messages.c.next_attempt_at <= bindparam("now"),
            or_(messages.c.lease_until.is_(None), messages.c.lease_until < bindparam("now")))
_DUE_IDS = select(messages.c.id).where(_DUE).order_by(messages.c.next_attempt_at).limit(
    bindparam("limit"))
_DUE_IDS_LOCKED = _DUE_IDS.with_for_update(skip_locked=True)
_TAKE_LEASE = update(messages).where(
    messages.c.id.in_(bindparam("ids", expanding=True)), _DUE).values(
    lease_owner=bindparam("owner"), lease_until=bindparam("until"))
_CLAIMED = (
    select(messages.c.id, messages.c.mail_from, messages.c.attempts, messages.c.queued_at,
           messages.c.received_at, messages.c.sender, messages.c.state, contents.c.trace_header,
           case((messages.c.size <= PREFETCH_BYTES, contents.c.data), else_=None).label("data"))
    .outerjoin(contents, contents.c.message_id == messages.c.id)
    .where(messages.c.id.in_(bindparam("ids", expanding=True)),
           messages.c.lease_owner == bindparam("owner")))
_CLAIMED_RECIPIENTS = (
    select(recipients.c.message_id, recipients.c.idx, recipients.c.address, recipients.c.state)
    .where(recipients.c.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(recipients.c.message_id, recipients.c.idx))


async def claim_due(conn: AsyncConnection, now: float, owner: str, lease_seconds: float,
                    limit: int) -> list[Claimed]:
    """Lease up to `limit` messages that are due (or whose lease expired after a crash).

    A lease is not a state change (no audit row); it only says who may write the result.
    On PostgreSQL the candidate rows are locked with SKIP LOCKED so instances never
    claim the same message; SQLite has a single writer, so the same query is safe there.
    """
    pick = _DUE_IDS_LOCKED if conn.dialect.name == "postgresql" else _DUE_IDS
    ids = [r.id for r in await conn.execute(pick, {"now": now, "limit": limit})]
    if not ids:
        return []
    await conn.execute(_TAKE_LEASE, {"ids": ids, "now": now, "owner": owner,
                                     "until": now + lease_seconds})
    claimed: list[Claimed] = []
    small: dict[str, Envelope] = {}  # id → envelope read with the claim
    for r in await conn.execute(_CLAIMED, {"ids": ids, "owner": owner}):
        c = Claimed(r.id, r.mail_from, r.attempts, r.queued_at, r.received_at)
        claimed.append(c)
        if r.data is not None and r.trace_header is not None:
            c.envelope = small[r.id] = _envelope(r)
    if small:
        for rr in await conn.execute(_CLAIMED_RECIPIENTS, {"ids": list(small)}):
            small[rr.message_id].add_recipient(rr.idx, rr.address, rr.state)
    return claimed


async def release_lease(conn: AsyncConnection, now: float, message_id: str, owner: str) -> None:
    """Give a message back without an attempt (shutdown before it was tried)."""
    await conn.execute(update(messages).where(
        messages.c.id == message_id, messages.c.lease_owner == owner).values(
        lease_owner=None, lease_until=None))


_RENEW_LEASES = update(messages).where(
    messages.c.id.in_(bindparam("ids", expanding=True)),
    messages.c.lease_owner == bindparam("owner"),
    messages.c.state.in_(ACTIVE_STATES)).values(lease_until=bindparam("until"))


async def renew_leases(conn: AsyncConnection, now: float, owner: str, ids: Sequence[str],
                       lease_seconds: float) -> int:
    """The heartbeat: push the leases that `owner` still holds on `ids` forward. Only the
    messages a worker is working on are named, so a lease it forgot runs out."""
    if not ids:
        return 0
    res = await conn.execute(_RENEW_LEASES, {"ids": list(ids), "owner": owner,
                                             "until": now + lease_seconds})
    return int(res.rowcount or 0)


async def lease_owners(conn: AsyncConnection) -> list[str]:
    """Every owner of a lease on a message waiting for delivery."""
    rows = await conn.execute(
        select(messages.c.lease_owner).distinct().where(
            messages.c.state.in_(ACTIVE_STATES), messages.c.lease_owner.is_not(None)))
    return sorted(r.lease_owner for r in rows)


async def release_leases_of(conn: AsyncConnection, now: float, owners: Sequence[str],
                            actor: str) -> int:
    """Give back every lease of owners that are known to be dead (one audit event with
    the count): their messages are due again at once instead of when the leases run out.
    """
    if not owners:
        return 0
    res = await conn.execute(
        update(messages).where(messages.c.lease_owner.in_(list(owners)),
                               messages.c.state.in_(ACTIVE_STATES))
        .values(lease_owner=None, lease_until=None))
    count = int(res.rowcount or 0)
    if count:
        await add_audit(conn, now, "-", actor, "leases_reclaimed",
                        detail={"owners": list(owners), "messages": count})
    return count


@dataclass
class Envelope:
    id: str
    mail_from: str
    sender: str
    state: str
    trace_header: bytes
    data: bytes
    rcpts: list[tuple[int, str]]  # (idx, address) still pending
    settled: dict[str, int] = field(default_factory=dict)  # other recipients by state

    def add_recipient(self, idx: int, address: str, state: str) -> None:
        if state == RecipientState.PENDING:
            self.rcpts.append((idx, address))
        else:
            self.settled[state] = self.settled.get(state, 0) + 1


def _envelope(row: Any) -> Envelope:
    """A message row joined with its content (_LOAD_MESSAGE, _CLAIMED); no recipients."""
    return Envelope(row.id, row.mail_from, row.sender, row.state, row.trace_header, row.data,
                    [])


async def load_for_delivery(conn: AsyncConnection, message_id: str) -> Envelope | None:
    row = (await conn.execute(_LOAD_MESSAGE, {"m": message_id})).first()
    if row is None:
        return None
    env = _envelope(row)
    for r in await conn.execute(_LOAD_RECIPIENTS, {"m": message_id}):
        env.add_recipient(r.idx, r.address, r.state)
    return env


@dataclass
class RecipientResult:
    idx: int
    address: str
    code: int
    reply: str
    outcome: str  # "delivered" | "failed" | "deferred"


async def record_attempt(conn: AsyncConnection, now: float, message_id: str, owner: str,
                         results: Sequence[RecipientResult], *, next_attempt_at: float,
                         give_up: bool, actor: str, detail: dict[str, Any],
                         bounce: NewMessage | None = None,
                         envelope: Envelope | None = None) -> str | Later[str | None] | None:
    """Write one delivery attempt: recipient states, the message state, the audit row and
    (if any recipient failed for good) the DSN to the sender, in one transaction.

    Returns the new message state, or None if our lease was lost (another instance
    took the message over after our lease ran out; its attempt wins, at-least-once).
    With the `envelope` the attempt was made from (its state and the recipients that
    were already settled), no extra reads are needed: three statements in all; on the
    PostgreSQL writer (no DSN to write) they are sent with those of the other outcomes
    of the transaction, and the result is a Later the writer resolves before the commit.
    """
    outcomes = [("failed" if r.outcome == "deferred" and give_up else r.outcome)
                for r in results]
    done = {"attempts": _ATTEMPTS_PLUS_ONE, "next_attempt_at": next_attempt_at,
            "lease_owner": None, "lease_until": None}
    if envelope is not None:
        # the compare-and-set on the lease comes first: if it fails nothing is written
        counts = dict(envelope.settled)
        for o in outcomes:
            key = RecipientState.PENDING if o == "deferred" else o
            counts[key] = counts.get(key, 0) + 1
        to_state, action = _final_state(counts)
        if bounce is None and can_transition_later(conn):
            # PostgreSQL: sent with the other outcomes of the transaction, one round trip
            return await transition_later(
                conn, now, message_id, known_state=envelope.state, to_state=to_state,
                actor=actor, action=action, detail=detail, lease_owner=owner,
                next_attempt_at=next_attempt_at,
                then=[(_SET_RECIPIENT, _recipient_rows(now, message_id, results, outcomes))],
                result=str(to_state))
        if not await transition(
                conn, now, message_id, from_states=ACTIVE_STATES, to_state=to_state,
                actor=actor, action=action, detail=detail, lease_owner=owner,
                known_state=envelope.state, values=done):
            return None
        await _set_recipients(conn, now, message_id, results, outcomes)
    else:
        if not await _holds_lease(conn, message_id, owner):
            return None
        await _set_recipients(conn, now, message_id, results, outcomes)
        counts = dict((s, n) for s, n in (await conn.execute(
            select(recipients.c.state, func.count()).where(
                recipients.c.message_id == message_id)
            .group_by(recipients.c.state))).all())
        to_state, action = _final_state(counts)
        await transition(
            conn, now, message_id, from_states=ACTIVE_STATES, to_state=to_state, actor=actor,
            action=action, detail=detail, lease_owner=owner, values=done)
    if bounce is not None:
        await insert_message(conn, now, bounce)
    return str(to_state)


async def _set_recipients(conn: AsyncConnection, now: float, message_id: str,
                          results: Sequence[RecipientResult], outcomes: list[str]) -> None:
    await write_later(conn, _SET_RECIPIENT, _recipient_rows(now, message_id, results, outcomes))


def _recipient_rows(now: float, message_id: str, results: Sequence[RecipientResult],
                    outcomes: list[str]) -> list[dict[str, Any]]:
    return [
        {"m": message_id, "i": r.idx, "s": str(RecipientState.PENDING) if o == "deferred" else o,
         "c": r.code, "r": r.reply[:1000], "t": now}
        for r, o in zip(results, outcomes, strict=True)]


def _final_state(counts: dict[str, int]) -> tuple[State, str]:
    """The message's new state and audit action, from its recipients' states."""
    if counts.get(RecipientState.PENDING):
        return State.DEFERRED, "deferred"
    if counts.get(RecipientState.DELIVERED):
        return State.DELIVERED, ("delivered" if not counts.get(RecipientState.FAILED)
                                 else "delivered_partially")
    return State.BOUNCED, "bounced"


async def _holds_lease(conn: AsyncConnection, message_id: str, owner: str) -> bool:
    """Check (and on PostgreSQL lock) the row so nobody takes the lease until we commit."""
    q = select(messages.c.id).where(
        messages.c.id == message_id, messages.c.lease_owner == owner,
        messages.c.state.in_(ACTIVE_STATES))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return (await conn.execute(q)).first() is not None
