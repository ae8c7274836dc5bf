"""What the alert dispatcher (guard/alert/) reads and keeps: audit rows after its
cursor, the messages they are about, and its own state.

Its state is one row of `store_meta` ("alerts"), JSON: the last audit id read, the
severe events gathered but not yet mailed, when each set of recipients was last mailed,
and the last digest. `lock_state` takes that row's lock (FOR UPDATE on PostgreSQL;
SQLite's writer holds the database lock already), so a pass that reads it, queues alert
mail and writes it back is one transaction, and two instances never mail the same
events: the second waits, then reads the state the first one left.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.schema import audit, messages, recipients, store_meta

STATE_NAME = "alerts"
READ_LIMIT = 2000  # audit rows per pass; a backlog is read over several passes
GUARD_SENDER = "guard"  # the guard's own notices, alerts and DSNs: never an event


@dataclass
class AlertState:
    after: int = 0  # the last audit id read
    pending: list[int] = field(default_factory=list)  # severe events' audit ids, not mailed
    sent: dict[str, float] = field(default_factory=dict)  # recipients key -> last mail time
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

    @classmethod
    def from_json(cls, text: str) -> AlertState:
        d = json.loads(text or "{}")
        return cls(after=int(d.get("after", 0)),
                   pending=[int(x) for x in d.get("pending") or []],
                   sent={str(k): float(v) for k, v in (d.get("sent") or {}).items()},
                   digest_day=str(d.get("digest_day") or ""),
                   digest_until=float(d.get("digest_until") or 0.0),
                   next_due=float(d.get("next_due") or 0.0),
                   gaps={int(k): float(v) for k, v in (d.get("gaps") or {}).items()})


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: float
    message_id: str
    actor: str
    action: str
    from_state: str
    to_state: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class MessageFacts:
    id: str
    mail_from: str
    sender: str
    received_at: float
    state: str
    verdict: dict[str, Any]
    recipients: tuple[str, ...]


def _json(text: str | None) -> dict[str, Any]:
    try:
        v = json.loads(text or "{}")
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


_LOCK_STATE = select(store_meta.c.value).where(store_meta.c.name == STATE_NAME).with_for_update()


async def lock_state(conn: AsyncConnection, now: float, first: AlertState) -> AlertState:
    """The dispatcher's state, locked until the transaction ends. The first time it is
    `first` with the cursor at the newest audit row: a new guard does not mail its
    history."""
    value = (await conn.execute(_LOCK_STATE)).scalar_one_or_none()
    if value is None:
        newest = (await conn.execute(select(func.max(audit.c.id)))).scalar_one_or_none()
        first.after = int(newest or 0)
        ins = (postgresql.insert(store_meta) if conn.dialect.name == "postgresql"
               else sqlite.insert(store_meta))
        # two instances starting together: one inserts, the other waits and finds it
        await conn.execute(ins.on_conflict_do_nothing(index_elements=["name"]), {
            "name": STATE_NAME, "value": first.to_json(), "updated_at": now})
        value = (await conn.execute(_LOCK_STATE)).scalar_one()
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


def _event(r: Any) -> AuditEvent:
    return AuditEvent(int(r.id), float(r.at), r.message_id, r.actor, r.action,
                      r.from_state, r.to_state, _json(r.detail))


@dataclass
class Read:
    rows: list[AuditEvent]  # the rows with the actions asked for, oldest first
    after: int  # the id to read after next time
    missing: list[int]  # ids skipped over: not committed yet, or rolled back


async def read_after(conn: AsyncConnection, after: int, actions: Iterable[str],
                     limit: int = READ_LIMIT) -> Read:
    """The next `limit` audit ids after `after`; the rows among them with these actions;
    and the ids missing between them. Ids are handed out when a row is inserted, not when
    it commits: on PostgreSQL another instance (or a `guard` command) may commit a
    smaller id after a larger one was read here, so a missing id is not yet "none"."""
    ids = [int(i) for i in (await conn.execute(
        select(audit.c.id).where(audit.c.id > after).order_by(audit.c.id).limit(limit)
    )).scalars()]
    if not ids:
        return Read([], after, [])
    present = set(ids)
    missing = [i for i in range(after + 1, ids[-1]) if i not in present][:limit]
    rows = [_event(r) for r in await conn.execute(
        select(audit).where(audit.c.id > after, audit.c.id <= ids[-1],
                            audit.c.action.in_(list(actions))).order_by(audit.c.id))]
    return Read(rows, ids[-1], missing)


async def read_ids(conn: AsyncConnection, ids: Sequence[int]) -> list[AuditEvent]:
    """These audit rows (the gathered events), oldest first; purged ones are gone."""
    out: list[AuditEvent] = []
    for i in range(0, len(ids), 500):  # bounded IN lists
        rows = await conn.execute(select(audit).where(audit.c.id.in_(list(ids[i:i + 500]))))
        out += [_event(r) for r in rows]
    return sorted(out, key=lambda e: e.id)


async def read_between(conn: AsyncConnection, since: float, until: float,
                       actions: Iterable[str]) -> list[AuditEvent]:
    """Audit rows with these actions in (since, until]: what the digest counts."""
    rows = await conn.execute(
        select(audit).where(audit.c.at > since, audit.c.at <= until,
                            audit.c.action.in_(list(actions))).order_by(audit.c.id))
    return [_event(r) for r in rows]


async def message_facts(conn: AsyncConnection, ids: Iterable[str]
                        ) -> dict[str, MessageFacts]:
    """The messages the events are about: envelope, verdict and recipients. The guard's
    own mail is left out (it is never an event)."""
    wanted = sorted(set(ids))
    out: dict[str, MessageFacts] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        rcpts: dict[str, list[str]] = {}
        for r in await conn.execute(
                select(recipients.c.message_id, recipients.c.address)
                .where(recipients.c.message_id.in_(chunk))
                .order_by(recipients.c.message_id, recipients.c.idx)):
            rcpts.setdefault(r.message_id, []).append(r.address)
        for m in await conn.execute(
                select(messages.c.id, messages.c.mail_from, messages.c.sender,
                       messages.c.received_at, messages.c.state, messages.c.verdict)
                .where(messages.c.id.in_(chunk), messages.c.sender != GUARD_SENDER)):
            out[m.id] = MessageFacts(m.id, m.mail_from, m.sender, float(m.received_at),
                                     m.state, _json(m.verdict), tuple(rcpts.get(m.id, ())))
    return out
