"""Message rows: storing a message and changing its state. Every state change of a
message goes through `transition()`: a compare-and-set on the state (and on the lease,
where one is held) plus exactly one audit row, in the caller's transaction; a move that
is not in the declared lifecycle (guard/store/lifecycle.py) is refused before anything is
written. Operations take (conn, now) so the BatchWriter can run many in one transaction.

The delivery side (claims, leases, attempts) is in delivery.py, what the CLI and the web
read in reads.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    bindparam,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.lifecycle import (
    ACTIVE_STATES,
    IllegalMove,
    RecipientState,
    State,
    check_move,
    insert_action,
)
from guard.store.schema import audit, contents, messages, recipients


@dataclass
class NewMessage:
    id: str
    state: str  # State.QUEUED or HELD (or REJECTED: envelope, verdict and bytes)
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
# DIRECT: built once, so the SQLite writer may send them to the DBAPI itself, compiled
# once (guard.store.writer, _WritePlan).
DIRECT = "guard_direct"
_INSERT_MESSAGE = insert(messages).execution_options(**{DIRECT: True})
_INSERT_RECIPIENTS = insert(recipients).execution_options(**{DIRECT: True})
_INSERT_CONTENT = insert(contents).execution_options(**{DIRECT: True})
_INSERT_AUDIT = insert(audit).execution_options(**{DIRECT: True})


T = TypeVar("T")


class Later(Generic[T]):
    """The result of an operation whose compare-and-set the PostgreSQL writer sends
    with the others of its transaction in one statement (`transition_later`): known
    once the writer has sent it, before the commit; the writer hands `value` to the
    submitter."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


async def write_later(conn: AsyncConnection, stmt: Any,
                      rows: dict[str, Any] | list[dict[str, Any]]) -> None:
    """An INSERT or UPDATE whose result nobody reads: the writer groups those of one
    transaction into one executemany per statement, sent before the next statement or
    the commit (guard.store.writer, `defer_write`)."""
    defer = getattr(conn, "defer_write", None)
    if defer is not None:
        defer(stmt, rows)
    else:
        await conn.execute(stmt, rows)


async def add_audit(conn: AsyncConnection, now: float, message_id: str, actor: str,
                    action: str, from_state: str = "", to_state: str = "",
                    detail: dict[str, Any] | None = None) -> None:
    await write_later(conn, _INSERT_AUDIT, {
        "message_id": message_id, "at": now, "actor": actor, "action": action,
        "from_state": from_state, "to_state": to_state, "detail": _json(detail or {})})


_MESSAGE_COLUMNS = [c.name for c in messages.c]
_AUDIT_COLUMNS = [c.name for c in audit.c if c.name != "id"]
# PostgreSQL: the four INSERTs of a stored message as ONE statement (data-modifying WITH;
# the foreign keys are checked at the end of the statement, when the message row is
# there), so the writer sends a batch of received messages as one executemany: one round
# trip instead of four. The same rows as the four INSERTs below.
_STORE_MESSAGE_PG = text(
    "WITH m AS (INSERT INTO messages ({mcols}) VALUES ({mvals})), "
    "c AS (INSERT INTO contents (message_id, trace_header, data, original) "
    "VALUES (:id, :trace_header, :data, :original)), "
    "a AS (INSERT INTO audit ({acols}) VALUES ({avals})) "
    "INSERT INTO recipients (message_id, idx, address, state, last_reply, updated_at) "
    "SELECT :id, r.n - 1, r.address, :rstate, '', :now "
    "FROM unnest(CAST(:rcpts AS text[])) WITH ORDINALITY AS r(address, n)".format(
        mcols=", ".join(_MESSAGE_COLUMNS), mvals=", ".join(f":{c}" for c in _MESSAGE_COLUMNS),
        acols=", ".join(_AUDIT_COLUMNS),
        avals=", ".join(f":a_{c}" for c in _AUDIT_COLUMNS)))


async def insert_message(conn: AsyncConnection, now: float, m: NewMessage) -> str:
    """Store a received message: row, recipients, bytes and the audit row, together.
    IllegalMove if the lifecycle has no way in to `m.state`."""
    action = insert_action(m.state)
    hold_until = now + m.hold_seconds if m.hold_seconds is not None else None
    row = {
        "id": m.id, "state": str(m.state), "mail_from": m.mail_from, "sender": m.sender,
        "client_ip": m.client_ip, "helo": m.helo, "listener": m.listener, "size": len(m.data),
        "subject": m.subject, "header_from": m.header_from,
        "message_id_header": m.message_id_header, "verdict": _json(m.verdict),
        "received_at": now, "queued_at": now, "next_attempt_at": now, "attempts": 0,
        "lease_owner": None, "lease_until": None, "hold_until": hold_until, "updated_at": now}
    rstate = str(RecipientState.FAILED if m.state == State.REJECTED
                 else RecipientState.PENDING)
    if conn.dialect.name == "postgresql" and hasattr(conn, "defer_write"):
        await write_later(conn, _STORE_MESSAGE_PG, {
            **row, "trace_header": m.trace_header, "data": m.data, "original": m.original,
            "rstate": rstate, "now": now, "rcpts": list(m.rcpt_tos),
            "a_message_id": m.id, "a_at": now, "a_actor": m.actor, "a_action": action,
            "a_from_state": "", "a_to_state": str(m.state),
            "a_detail": _json(m.audit_detail or {})})
        return m.id
    await write_later(conn, _INSERT_MESSAGE, row)
    await write_later(conn, _INSERT_RECIPIENTS, [
        {"message_id": m.id, "idx": i, "address": a, "state": rstate, "updated_at": now}
        for i, a in enumerate(m.rcpt_tos)])
    # a rejected message keeps its bytes too (for `guard policy replay`), purged after
    # the retention time like finished mail
    await write_later(conn, _INSERT_CONTENT, {
        "message_id": m.id, "trace_header": m.trace_header, "data": m.data,
        "original": m.original})
    await add_audit(conn, now, m.id, m.actor, action, "", str(m.state), m.audit_detail)
    return m.id


_MARK_DROPPED = update(recipients).where(
    recipients.c.message_id == bindparam("m"), recipients.c.idx == bindparam("i"),
    recipients.c.state == str(RecipientState.PENDING)).values(
    state=str(RecipientState.DROPPED), last_reply=bindparam("why"), updated_at=bindparam("at"))


async def mark_dropped(conn: AsyncConnection, now: float, message_id: str,
                       rcpt_tos: Sequence[str], dropped: dict[str, str]) -> None:
    """Recipients of a message stored in this transaction that the policy took out
    (address → why): dropped, never delivered to, the reason kept as their last word.
    The message's insert audit row names them (NewMessage.audit_detail)."""
    rows = [{"m": message_id, "i": i, "why": dropped[a], "at": now}
            for i, a in enumerate(rcpt_tos) if a in dropped]
    if rows:  # run now, after the deferred INSERTs (execute flushes them first)
        await conn.execute(_MARK_DROPPED, rows)


async def transition(conn: AsyncConnection, now: float, message_id: str, *,
                     from_states: Iterable[str], to_state: str, actor: str, action: str,
                     detail: dict[str, Any] | None = None, lease_owner: str | None = None,
                     values: dict[str, Any] | None = None,
                     known_state: str | None = None) -> bool:
    """Compare-and-set the state (and the lease if given); one audit row. False = lost race.

    Every (from, to_state, action) the call could make must be a declared move
    (lifecycle.MOVES), else IllegalMove before anything is read or written.
    `known_state`: the caller read the state already (one of from_states); the update
    then requires exactly that state and no SELECT is needed."""
    from_states = tuple(str(f) for f in from_states)
    to_state = str(to_state)  # a State is a str; the driver gets the plain value
    for f in from_states:
        check_move(f, to_state, action)
    if values and "state" in values:
        raise IllegalMove("the state changes through to_state, not values")
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


# PostgreSQL: the compare-and-set of many finished delivery attempts as ONE statement
# (arrays, one element per message), so the outcomes written together cost one round trip
# instead of one each. Per element the same UPDATE as transition() with
# values={attempts + 1, next_attempt_at, lease given back}; RETURNING says which matched.
_FINISH_ATTEMPTS_PG = text(
    "UPDATE messages AS m SET state = v.to_state, updated_at = v.now, "
    "next_attempt_at = v.next_at, attempts = m.attempts + 1, lease_owner = NULL, "
    "lease_until = NULL "
    "FROM unnest(CAST(:id AS text[]), CAST(:from_state AS text[]), "
    "CAST(:to_state AS text[]), CAST(:owner AS text[]), "
    "CAST(:next_at AS double precision[]), CAST(:now AS double precision[])) "
    "AS v(id, from_state, to_state, owner, next_at, now) "
    "WHERE m.id = v.id AND m.state = v.from_state AND m.lease_owner = v.owner "
    "RETURNING m.id")


def can_transition_later(conn: AsyncConnection) -> bool:
    return hasattr(conn, "defer_cas")


async def transition_later(conn: AsyncConnection, now: float, message_id: str, *,
                           known_state: str, to_state: str, actor: str, action: str,
                           detail: dict[str, Any] | None, lease_owner: str,
                           next_attempt_at: float,
                           then: list[tuple[Any, list[dict[str, Any]]]],
                           result: T) -> Later[T | None]:
    """transition() for the end of a delivery attempt on PostgreSQL (the writer's
    connection, `can_transition_later`): the same checks, compare-and-set (state and
    lease; attempts + 1, the lease given back) and one audit row, but the UPDATE is sent
    with those of the other attempts of the transaction as one statement. If it matched,
    the audit row and the writes in `then` follow in the same transaction and the
    Later's value is `result`; else nothing is written and the value is None."""
    to_state = str(to_state)
    check_move(str(known_state), to_state, action)
    audit_row = {"message_id": message_id, "at": now, "actor": actor, "action": action,
                 "from_state": str(known_state), "to_state": to_state,
                 "detail": _json(detail or {})}
    return await conn.defer_cas(  # type: ignore[attr-defined, no-any-return]
        _FINISH_ATTEMPTS_PG,
        {"id": message_id, "from_state": str(known_state), "to_state": to_state,
         "owner": lease_owner, "next_at": next_attempt_at, "now": now},
        [(_INSERT_AUDIT, [audit_row]), *then], result)


async def withdraw_unanswered(conn: AsyncConnection, now: float, message_id: str,
                              actor: str) -> bool:
    """A message whose commit finished after its client had been answered 451 (the
    commit outlived the deadline, or its outcome was unknown): the client sends it
    again, so this copy must not be delivered. It becomes "rejected" (never claimed);
    False if it was not stored (the commit did not happen) or is no longer waiting."""
    return await transition(
        conn, now, message_id, from_states=(State.QUEUED, State.HELD),
        to_state=State.REJECTED,
        actor=actor, action="withdrawn",
        detail={"reason": "committed after the client was answered 451 4.3.0; the client "
                          "sends the message again"})


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
        {k: (expr if expr is not None else bindparam(f"v_{k}")) for k, expr in shape}
    ).execution_options(**{DIRECT: True})


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
        conn, now, row.id, from_states=(row.state,), to_state=row.state, actor=actor,
        action="retry", detail={"next_attempt_was": row.next_attempt_at},
        known_state=row.state, values={"next_attempt_at": now})
