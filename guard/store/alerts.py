"""What the alert dispatcher (guard/alert/) reads and keeps: audit rows after its
cursor, the messages they are about, and its own state.

Its state is one row of `store_meta` ("alerts"), JSON: the last audit id read, the
severe events gathered but not yet mailed (per recipient address), when each address
was last mailed, and the last digest. `lock_state` takes that row's lock (FOR UPDATE
SKIP LOCKED on PostgreSQL; SQLite's writer holds the database lock already), so a pass
that reads it, queues alert mail and writes it back is one transaction, and two
instances never mail the same events: while one instance's pass holds the row, the
other's pass is skipped at once (its writer, and every accept waiting on it, does not
wait for the first), and its next pass reads the state the first one left.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.ids import GUARD_SENDER
from guard.store.lifecycle import RecipientState
from guard.store.records import AuditRow
from guard.store.schema import audit, json_object, messages, recipients, store_meta

STATE_NAME = "alerts"
READ_LIMIT = 2000  # audit rows per pass; a backlog is read over several passes


@dataclass
class AlertState:
    after: int = 0  # the last audit id read
    # severe events' audit ids not yet mailed, per recipient address ("" : ids gathered
    # by an older guard, whose recipients are worked out from the policy when due)
    pending: dict[str, list[int]] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)  # address -> last alert mail time
    digest_day: str = ""  # the local day of the last digest (YYYY-MM-DD)
    digest_until: float = 0.0  # the end of the period the last digest covered
    next_due: float = 0.0  # when the gathered events are next due (nothing new meanwhile)
    # audit ids missing after the cursor when it moved past them -> when first missed: a
    # transaction of another process that had its id but had not committed yet (looked
    # for again), or one rolled back (forgotten after gap_wait_seconds)
    gaps: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"after": self.after, "pending": self.pending, "sent": self.sent,
                           "digest_day": self.digest_day, "digest_until": self.digest_until,
                           "next_due": self.next_due,
                           "gaps": {str(k): v for k, v in self.gaps.items()}},
                          separators=(",", ":"))

    def pending_ids(self) -> list[int]:
        return sorted({i for ids in self.pending.values() for i in ids})

    def pending_count(self) -> int:
        return sum(len(ids) for ids in self.pending.values())

    @classmethod
    def from_json(cls, text: str) -> AlertState:
        d = json.loads(text or "{}")
        raw = d.get("pending") or {}
        if isinstance(raw, list):  # an older guard's state: one list for every recipient
            raw = {"": raw} if raw else {}
        return cls(after=int(d.get("after", 0)),
                   pending={str(k): [int(x) for x in v] for k, v in raw.items() if v},
                   sent={str(k): float(v) for k, v in (d.get("sent") or {}).items()},
                   digest_day=str(d.get("digest_day") or ""),
                   digest_until=float(d.get("digest_until") or 0.0),
                   next_due=float(d.get("next_due") or 0.0),
                   gaps={int(k): float(v) for k, v in (d.get("gaps") or {}).items()})


@dataclass(frozen=True)
class MessageFacts:
    id: str
    mail_from: str
    sender: str
    received_at: float
    state: str
    verdict: dict[str, Any]
    recipients: tuple[str, ...]


_STATE = select(store_meta.c.value).where(store_meta.c.name == STATE_NAME)
# another instance's pass holds the row: skip this pass rather than wait in the writer
_LOCK_STATE = _STATE.with_for_update(skip_locked=True)


async def lock_state(conn: AsyncConnection, now: float, first: AlertState
                     ) -> AlertState | None:
    """The dispatcher's state, locked until the transaction ends; None when another
    instance's pass holds it (PostgreSQL). The first time it is `first` with the cursor
    at the newest audit row: a new guard does not mail its history."""
    value = (await conn.execute(_LOCK_STATE)).scalar_one_or_none()
    if value is None:
        if (await conn.execute(_STATE)).first() is not None:
            return None  # there, but locked by another instance's pass
        newest = (await conn.execute(select(func.max(audit.c.id)))).scalar_one_or_none()
        first.after = int(newest or 0)
        ins = (postgresql.insert(store_meta) if conn.dialect.name == "postgresql"
               else sqlite.insert(store_meta))
        # two instances starting together: one inserts, the other skips this pass
        await conn.execute(ins.on_conflict_do_nothing(index_elements=["name"]), {
            "name": STATE_NAME, "value": first.to_json(), "updated_at": now})
        value = (await conn.execute(_LOCK_STATE)).scalar_one_or_none()
        if value is None:
            return None
    return AlertState.from_json(value)


async def read_state(conn: AsyncConnection) -> AlertState | None:
    """The state as it is, without a lock (None before the first pass): to see whether a
    digest is due before reading its events outside the writer."""
    value = (await conn.execute(select(store_meta.c.value).where(
        store_meta.c.name == STATE_NAME))).scalar_one_or_none()
    return None if value is None else AlertState.from_json(value)


async def save_state(conn: AsyncConnection, now: float, state: AlertState) -> None:
    """Write the state back (its row is locked by lock_state in this transaction)."""
    await conn.execute(store_meta.update().where(store_meta.c.name == STATE_NAME).values(
        value=state.to_json(), updated_at=now))


def _event(r: Any) -> AuditRow:
    return AuditRow(int(r.id), float(r.at), r.message_id, r.actor, r.action,
                      r.from_state, r.to_state, json_object(r.detail))


@dataclass
class Read:
    rows: list[AuditRow]  # the rows with the actions asked for, oldest first
    after: int  # the id to read after next time
    missing: list[int]  # ids skipped over: not committed yet, or rolled back
    held_back: bool = False  # more ids were missing than could be kept: `after` waits
    reset_from: int | None = None  # the cursor was past the newest audit id (a restore)


async def read_after(conn: AsyncConnection, after: int, actions: Iterable[str],
                     limit: int = READ_LIMIT, max_missing: int = 10_000) -> Read:
    """The next `limit` audit ids after `after`; the rows among them with these actions;
    and the ids missing between them. Ids are handed out when a row is inserted, not when
    it commits: on PostgreSQL another instance (or a `guard` command) may commit a
    smaller id after a larger one was read here, so a missing id is not yet "none".

    ONE read (a second one, at READ COMMITTED, could see a row committed since the first
    and hand it back while it is also counted missing: alerted twice). At most
    `max_missing` missing ids are listed; the cursor stops before the first one that is
    not, so no id is passed over unrecorded."""
    acts = list(actions)
    found = (await conn.execute(
        select(audit.c.id, audit.c.at, audit.c.message_id, audit.c.actor, audit.c.action,
               audit.c.from_state, audit.c.to_state,
               # only the rows of interest bring their detail
               case((audit.c.action.in_(acts), audit.c.detail), else_=None).label("detail"))
        .where(audit.c.id > after).order_by(audit.c.id).limit(limit))).all()
    if not found:
        newest = (await conn.execute(select(func.max(audit.c.id)))).scalar_one_or_none()
        if int(newest or 0) < after:  # restored, or the sequence was reset
            return Read([], int(newest or 0), [], reset_from=after)
        return Read([], after, [])
    missing: list[int] = []
    last, expected = after, after + 1
    for r in found:
        rid = int(r.id)
        gap = range(expected, rid)
        room = max_missing - len(missing)
        if len(gap) > room:  # (bounded: never a list of the whole span)
            missing += gap[:room]
            last = expected + room - 1  # the last id accounted for
            break
        missing += gap
        last, expected = rid, rid + 1
    held_back = last < int(found[-1].id)
    rows = [_event(r) for r in found if r.id <= last and r.action in acts]
    return Read(rows, last, missing, held_back)


async def read_ids(conn: AsyncConnection, ids: Sequence[int]) -> list[AuditRow]:
    """These audit rows (the gathered events), oldest first; purged ones are gone."""
    out: list[AuditRow] = []
    for i in range(0, len(ids), 500):  # bounded IN lists
        rows = await conn.execute(select(audit).where(audit.c.id.in_(list(ids[i:i + 500]))))
        out += [_event(r) for r in rows]
    return sorted(out, key=lambda e: e.id)


async def read_between(conn: AsyncConnection, since: float, until: float,
                       actions: Iterable[str]) -> list[AuditRow]:
    """Audit rows with these actions in (since, until]: what the digest counts."""
    rows = await conn.execute(
        select(audit).where(audit.c.at > since, audit.c.at <= until,
                            audit.c.action.in_(list(actions))).order_by(audit.c.id))
    return [_event(r) for r in rows]


async def message_facts(conn: AsyncConnection, ids: Iterable[str]
                        ) -> dict[str, MessageFacts]:
    """The messages the events are about: envelope, verdict and recipients. The guard's
    own mail is left out (it is never an event), and so are dropped recipients: one an
    approver took off, or a drop rule's, is not sent to (a severe hold released to the
    others does not go outside)."""
    wanted = sorted(set(ids))
    out: dict[str, MessageFacts] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        rcpts: dict[str, list[str]] = {}
        for r in await conn.execute(
                select(recipients.c.message_id, recipients.c.address)
                .where(recipients.c.message_id.in_(chunk),
                       recipients.c.state != RecipientState.DROPPED)
                .order_by(recipients.c.message_id, recipients.c.idx)):
            rcpts.setdefault(r.message_id, []).append(r.address)
        for m in await conn.execute(
                select(messages.c.id, messages.c.mail_from, messages.c.sender,
                       messages.c.received_at, messages.c.state, messages.c.verdict)
                .where(messages.c.id.in_(chunk), messages.c.sender != GUARD_SENDER)):
            out[m.id] = MessageFacts(m.id, m.mail_from, m.sender, float(m.received_at),
                                     m.state, json_object(m.verdict), tuple(rcpts.get(m.id, ())))
    return out
