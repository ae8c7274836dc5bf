"""What the guard keeps and for how long: the one place that purges.

Three things age out, each by its own clock:
- the bytes of a finished message (contents), `delivery.retention_days` after it
  finished; held and queued mail keeps its bytes until it is decided and finished;
- the row of a finished message (envelope, subject, verdict: what reports read), and
- the audit rows, both `retention.audit_days` after they were written (an audit row
  of a message that is not finished yet stays with it).

The sweep of `guard serve` (every minute, on each instance: the deletes are idempotent,
so several instances may run it at once) and `guard purge` call `purge()`; `guard purge
--dry-run` calls `plan()`, which counts the same rows and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, func, not_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.lifecycle import FINAL_STATES
from guard.store.queue import add_audit
from guard.store.schema import audit, contents, messages

DAY = 86400.0
# dry-run's age groups (days, lower bounds): "7–30 days", "30–90 days", …
AGE_BOUNDS = (0, 30, 90, 365)


@dataclass(frozen=True)
class Ages:
    body_seconds: float  # delivery.retention_days
    audit_seconds: float  # retention.audit_days


@dataclass
class Counts:
    bodies: int = 0
    messages: int = 0
    audit_rows: int = 0
    # dry-run only: {"bodies": {"30-90": n, …}, …}, by days since the row's time
    by_age: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bodies": self.bodies, "messages": self.messages,
                               "audit_rows": self.audit_rows}
        if self.by_age:
            out["by_age"] = self.by_age
        return out


def _unfinished() -> Any:
    return select(messages.c.id).where(not_(messages.c.state.in_(FINAL_STATES)))


def _targets(now: float, ages: Ages) -> dict[str, tuple[Any, Any, Any]]:
    """Per kind: (table, condition of the rows that go, the column their age is read from)."""
    body_done = select(messages.c.id).where(
        messages.c.state.in_(FINAL_STATES), messages.c.updated_at < now - ages.body_seconds)
    return {
        "bodies": (contents, contents.c.message_id.in_(body_done), None),
        "messages": (messages, and_(messages.c.state.in_(FINAL_STATES),
                                    messages.c.updated_at < now - ages.audit_seconds),
                     messages.c.updated_at),
        "audit_rows": (audit, and_(audit.c.at < now - ages.audit_seconds,
                                   audit.c.message_id.not_in(_unfinished())), audit.c.at),
    }


async def plan(conn: AsyncConnection, now: float, ages: Ages) -> Counts:
    """What purge() would delete now, counted by age; nothing is changed."""
    counts = Counts()
    for kind, (table, cond, age_col) in _targets(now, ages).items():
        if age_col is None:  # a body's age: its message's last change
            base = select(messages.c.updated_at.label("t")).join(
                contents, contents.c.message_id == messages.c.id).where(cond)
        else:
            base = select(age_col.label("t")).select_from(table).where(cond)
        sub = base.subquery()
        groups: dict[str, int] = {}
        for i, low in enumerate(AGE_BOUNDS):
            high = AGE_BOUNDS[i + 1] if i + 1 < len(AGE_BOUNDS) else None
            q = select(func.count()).select_from(sub).where(sub.c.t <= now - low * DAY)
            if high is not None:
                q = q.where(sub.c.t > now - high * DAY)
            n = int((await conn.execute(q)).scalar_one())
            if n:
                groups[f"{low}-{high}d" if high is not None else f"{low}d+"] = n
        setattr(counts, kind, sum(groups.values()))
        counts.by_age[kind] = groups
    return counts


# the sweep's most rows of each kind per run: the first sweep after an upgrade (a year
# of rows due at once) must not hold the single writer for long; the rest goes a
# minute later
SWEEP_LIMIT = 5000
_KEYS = {"bodies": contents.c.message_id, "messages": messages.c.id, "audit_rows": audit.c.id}


async def purge(conn: AsyncConnection, now: float, ages: Ages,
                actor: str | None = None, limit: int | None = None) -> Counts:
    """Delete what is past its time (at most `limit` rows of each kind), in one
    transaction. With `actor` (`guard purge`), one audit row with the counts is
    written, at `now`: it is itself kept."""
    counts = Counts()
    for kind, (table, cond, _age) in _targets(now, ages).items():
        if limit is not None:
            key = _KEYS[kind]
            cond = key.in_(select(key).where(cond).limit(limit))
        res = await conn.execute(delete(table).where(cond))
        setattr(counts, kind, res.rowcount or 0)
    if actor is not None:
        await add_audit(conn, now, "-", actor, "purge", detail={
            **counts.to_json(), "retention_days": ages.body_seconds / DAY,
            "audit_days": ages.audit_seconds / DAY})
    return counts
