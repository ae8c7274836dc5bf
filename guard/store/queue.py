"""Queue operations. The only module that writes message rows.

Every state change goes through `transition()`: a compare-and-set on the state (and on
the lease, where one is held) plus exactly one audit row, in the caller's transaction.
Operations take (conn, now) so the BatchWriter can run many in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.db import now_sql
from guard.store.schema import ACTIVE_STATES, audit, contents, messages, recipients


@dataclass
class NewMessage:
    id: str
    state: str  # "queued" or "held" (or "rejected": envelope + verdict only)
    mail_from: str
    sender: str
    rcpt_tos: Sequence[str]
    data: bytes
    trace_header: bytes = b""
    original: bytes | None = None  # as received, when `data` is an edited copy
    client_ip: str = ""
    helo: str = ""
    listener: str = ""
    subject: str = ""
    header_from: str = ""
    message_id_header: str = ""
    verdict: dict[str, Any] = field(default_factory=dict)
    hold_seconds: float | None = None
    actor: str = ""
    audit_detail: dict[str, Any] = field(default_factory=dict)


# Statements built once: SQLAlchemy memoizes a statement's cache key on the object, so
# executing a constant with parameters skips the per-call construction and cache-key
# work that was most of the writer's CPU for small messages (py-spy, tests/bench).
_INSERT_MESSAGE = insert(messages)
_ATTEMPTS_PLUS_ONE = messages.c.attempts + 1
_INSERT_RECIPIENTS = insert(recipients)
_INSERT_CONTENT = insert(contents)
_INSERT_AUDIT = insert(audit)
_SET_RECIPIENT = (
    update(recipients)
    .where(recipients.c.message_id == bindparam("m"), recipients.c.idx == bindparam("i"))
    .values(state=bindparam("s"), last_code=bindparam("c"), last_reply=bindparam("r"),
            updated_at=bindparam("t")))
_LOAD_MESSAGE = (
    select(messages.c.id, messages.c.mail_from, messages.c.sender, messages.c.state,
           contents.c.trace_header, contents.c.data)
    .join(contents, contents.c.message_id == messages.c.id)
    .where(messages.c.id == bindparam("m")))
_LOAD_RECIPIENTS = (
    select(recipients.c.idx, recipients.c.address, recipients.c.state)
    .where(recipients.c.message_id == bindparam("m")).order_by(recipients.c.idx))


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


async def _insert(conn: AsyncConnection, stmt: Any, rows: dict[str, Any] | list[dict[str, Any]]
                  ) -> None:
    """An INSERT whose result nobody reads: the SQLite writer groups those of one
    transaction into one executemany per table (guard.store.writer, `defer_insert`)."""
    defer = getattr(conn, "defer_insert", None)
    if defer is not None:
        defer(stmt, rows)
    else:
        await conn.execute(stmt, rows)


async def add_audit(conn: AsyncConnection, now: float, message_id: str, actor: str,
                    action: str, from_state: str = "", to_state: str = "",
                    detail: dict[str, Any] | None = None) -> None:
    await _insert(conn, _INSERT_AUDIT, {
        "message_id": message_id, "at": now, "actor": actor, "action": action,
        "from_state": from_state, "to_state": to_state, "detail": _json(detail or {})})


async def insert_message(conn: AsyncConnection, now: float, m: NewMessage) -> str:
    """Store a received message: row, recipients, bytes and the audit row, together."""
    hold_until = now + m.hold_seconds if m.hold_seconds is not None else None
    await _insert(conn, _INSERT_MESSAGE, {
        "id": m.id, "state": m.state, "mail_from": m.mail_from, "sender": m.sender,
        "client_ip": m.client_ip, "helo": m.helo, "listener": m.listener, "size": len(m.data),
        "subject": m.subject, "header_from": m.header_from,
        "message_id_header": m.message_id_header, "verdict": _json(m.verdict),
        "received_at": now, "queued_at": now, "next_attempt_at": now, "attempts": 0,
        "lease_owner": None, "lease_until": None, "hold_until": hold_until, "updated_at": now})
    rstate = "failed" if m.state == "rejected" else "pending"
    await _insert(conn, _INSERT_RECIPIENTS, [
        {"message_id": m.id, "idx": i, "address": a, "state": rstate, "updated_at": now}
        for i, a in enumerate(m.rcpt_tos)])
    # a rejected message keeps its bytes too (for `guard policy replay`), purged after
    # the retention time like finished mail
    await _insert(conn, _INSERT_CONTENT, {
        "message_id": m.id, "trace_header": m.trace_header, "data": m.data,
        "original": m.original})
    action = {"queued": "accepted", "held": "held", "rejected": "rejected"}.get(m.state, m.state)
    await add_audit(conn, now, m.id, m.actor, action, "", m.state, m.audit_detail)
    return m.id


async def transition(conn: AsyncConnection, now: float, message_id: str, *,
                     from_states: Iterable[str], to_state: str, actor: str, action: str,
                     detail: dict[str, Any] | None = None, lease_owner: str | None = None,
                     values: dict[str, Any] | None = None,
                     known_state: str | None = None) -> bool:
    """Compare-and-set the state (and the lease if given); one audit row. False = lost race.

    `known_state`: the caller read the state already (one of from_states); the update
    then requires exactly that state and no SELECT is needed."""
    from_states = tuple(from_states)
    if known_state is not None and known_state not in from_states:
        return False
    vals = {"state": to_state, "updated_at": now, **(values or {})}
    if known_state is None:
        row = (await conn.execute(_SELECT_STATE[len(from_states)], {
            "m": message_id, "o": lease_owner,
            **{f"f{i}": f for i, f in enumerate(from_states)}})).first()
        if row is None or (lease_owner is not None and row.lease_owner != lease_owner):
            return False
        known_state = row.state
    stmt = _cas_update(lease_owner is not None,
                       tuple(sorted((k, v) if _is_sql(v) else (k, None)
                                    for k, v in vals.items())))
    params = {f"v_{k}": v for k, v in vals.items() if not _is_sql(v)}
    params.update({"m": message_id, "s": known_state, "o": lease_owner})
    res = await conn.execute(stmt, params)
    if res.rowcount != 1:
        return False
    await add_audit(conn, now, message_id, actor, action, known_state, to_state, detail)
    return True


async def withdraw_unanswered(conn: AsyncConnection, now: float, message_id: str,
                              actor: str) -> bool:
    """A message whose commit finished after its client had been answered 451 (the
    commit outlived the deadline, or its outcome was unknown): the client sends it
    again, so this copy must not be delivered. It becomes "rejected" (never claimed);
    False if it was not stored (the commit did not happen) or is no longer waiting."""
    return await transition(
        conn, now, message_id, from_states=("queued", "held"), to_state="rejected",
        actor=actor, action="withdrawn",
        detail={"reason": "committed after the client was answered 451 4.3.0; the client "
                          "sends the message again"})


async def oldest_deferred_age(conn: AsyncConnection) -> float | None:
    """Seconds since the oldest deferred message was received, by the database clock
    (None: nothing is deferred)."""
    row = (await conn.execute(
        select(func.min(messages.c.received_at), text("(" + now_sql(conn) + ")"))
        .where(messages.c.state == "deferred"))).one()
    return None if row[0] is None else max(float(row[1]) - float(row[0]), 0.0)


def _is_sql(value: Any) -> bool:
    return isinstance(value, ColumnElement)


class _StatesSelect(dict[int, Any]):
    """SELECT state FROM messages WHERE id = :m AND state IN (:f0, …), per arity."""

    def __missing__(self, n: int) -> Any:
        stmt = select(messages.c.state, messages.c.lease_owner).where(
            messages.c.id == bindparam("m"),
            messages.c.state.in_([bindparam(f"f{i}") for i in range(n)]))
        self[n] = stmt
        return stmt


_SELECT_STATE = _StatesSelect()


@lru_cache(maxsize=128)
def _cas_update(with_lease: bool, shape: tuple[tuple[str, Any], ...]) -> Any:
    """The compare-and-set UPDATE for one shape of values, built once (see above): plain
    values become bind parameters, SQL expressions (attempts + 1) stay in the statement."""
    cond = [messages.c.id == bindparam("m"), messages.c.state == bindparam("s")]
    if with_lease:
        cond.append(messages.c.lease_owner == bindparam("o"))
    return update(messages).where(*cond).values(
        {k: (expr if expr is not None else bindparam(f"v_{k}")) for k, expr in shape})


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
        if state == "pending":
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
                         envelope: Envelope | None = None) -> str | None:
    """Write one delivery attempt: recipient states, the message state, the audit row and
    (if any recipient failed for good) the DSN to the sender, in one transaction.

    Returns the new message state, or None if our lease was lost (another instance
    took the message over after our lease ran out; its attempt wins, at-least-once).
    With the `envelope` the attempt was made from (its state and the recipients that
    were already settled), no extra reads are needed: three statements in all.
    """
    outcomes = [("failed" if r.outcome == "deferred" and give_up else r.outcome)
                for r in results]
    done = {"attempts": _ATTEMPTS_PLUS_ONE, "next_attempt_at": next_attempt_at,
            "lease_owner": None, "lease_until": None}
    if envelope is not None:
        # the compare-and-set on the lease comes first: if it fails nothing is written
        counts = dict(envelope.settled)
        for o in outcomes:
            key = "pending" if o == "deferred" else o
            counts[key] = counts.get(key, 0) + 1
        to_state, action = _final_state(counts)
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
    return to_state


async def _set_recipients(conn: AsyncConnection, now: float, message_id: str,
                          results: Sequence[RecipientResult], outcomes: list[str]) -> None:
    await conn.execute(_SET_RECIPIENT, [
        {"m": message_id, "i": r.idx, "s": "pending" if o == "deferred" else o,
         "c": r.code, "r": r.reply[:1000], "t": now}
        for r, o in zip(results, outcomes, strict=True)])


def _final_state(counts: dict[str, int]) -> tuple[str, str]:
    if counts.get("pending"):
        return "deferred", "deferred"
    if counts.get("delivered"):
        return "delivered", ("delivered" if not counts.get("failed")
                             else "delivered_partially")
    return "bounced", "bounced"


async def _holds_lease(conn: AsyncConnection, message_id: str, owner: str) -> bool:
    """Check (and on PostgreSQL lock) the row so nobody takes the lease until we commit."""
    q = select(messages.c.id).where(
        messages.c.id == message_id, messages.c.lease_owner == owner,
        messages.c.state.in_(ACTIVE_STATES))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return (await conn.execute(q)).first() is not None


@dataclass
class Retry:
    id: str
    # retried | due (already due) | delivering (a worker has it now) | not_waiting (a state
    # that is not retried: delivered, held, …) | not_found
    result: str
    state: str = ""


_WAITING = select(messages.c.id, messages.c.state, messages.c.next_attempt_at,
                  messages.c.lease_until)


async def retry_now(conn: AsyncConnection, now: float, message_id: str, actor: str) -> Retry:
    """`guard queue retry ID`: a deferred (or backing-off) message is due now; a running
    guard takes it at its next poll. One audit row when something changed."""
    row = (await conn.execute(_WAITING.where(messages.c.id == message_id))).first()
    if row is None:
        return Retry(message_id, "not_found")
    if row.state not in ACTIVE_STATES:
        return Retry(message_id, "not_waiting", row.state)
    if row.lease_until is not None and row.lease_until >= now:
        return Retry(message_id, "delivering", row.state)
    if row.next_attempt_at <= now:
        return Retry(message_id, "due", row.state)
    ok = await _retry(conn, now, row, actor)
    return Retry(message_id, "retried" if ok else "not_waiting", row.state)


async def retry_all(conn: AsyncConnection, now: float, actor: str) -> list[str]:
    """`guard queue retry --all`: every message waiting for a later attempt is due now."""
    rows = (await conn.execute(_WAITING.where(
        messages.c.state.in_(ACTIVE_STATES), messages.c.next_attempt_at > now,
        or_(messages.c.lease_until.is_(None), messages.c.lease_until < now))
        .order_by(messages.c.next_attempt_at))).all()
    return [r.id for r in rows if await _retry(conn, now, r, actor)]


async def _retry(conn: AsyncConnection, now: float, row: Any, actor: str) -> bool:
    return await transition(
        conn, now, row.id, from_states=ACTIVE_STATES, to_state=row.state, actor=actor,
        action="retry", detail={"next_attempt_was": row.next_attempt_at},
        known_state=row.state, values={"next_attempt_at": now})


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


async def purge_contents(conn: AsyncConnection, now: float, older_than: float) -> int:
    """Drop the bytes of finished messages after the retention time (rows and audit stay)."""
    done = select(messages.c.id).where(
        messages.c.state.in_(("delivered", "bounced", "cancelled", "expired", "rejected")),
        messages.c.updated_at < now - older_than)
    res = await conn.execute(delete(contents).where(contents.c.message_id.in_(done)))
    return res.rowcount or 0


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


_RECEIVED_ACTIONS = ("accepted", "held", "rejected")  # insert_message's audit actions


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
