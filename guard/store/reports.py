"""What the reports read (guard/report/): the near misses of a period and the held,
tagged and refused mail of a period with its audit rows. Reads only; the counting is
done by guard/report/, so that it can be checked without a database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.ids import GUARD_SENDER  # the guard's own notices and DSNs: never in a report
from guard.store.lifecycle import State
from guard.store.schema import audit, json_object, messages


@dataclass(frozen=True)
class AuditRow:
    at: float
    actor: str
    action: str
    from_state: str
    to_state: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class ReportMessage:
    id: str
    mail_from: str
    received_at: float
    state: str
    verdict: dict[str, Any]
    audit: list[AuditRow] = field(default_factory=list)


async def near_misses(conn: AsyncConnection, since: float, until: float
                      ) -> list[tuple[AuditRow, ReportMessage]]:
    """Near misses decided in [since, until): a held message cancelled by a person
    (sender, admin, or an approver's reject), audited with `near_miss` by the hold
    lifecycle (the same events guard_near_misses_total counts)."""
    rows = await conn.execute(
        select(audit.c.at, audit.c.actor, audit.c.action, audit.c.from_state,
               audit.c.to_state, audit.c.detail, messages.c.id, messages.c.mail_from,
               messages.c.received_at, messages.c.state, messages.c.verdict)
        .join(messages, messages.c.id == audit.c.message_id)
        .where(audit.c.at >= since, audit.c.at < until,
               audit.c.action.in_(("cancel", "reject")),
               and_(audit.c.from_state == State.HELD, audit.c.to_state == State.CANCELLED))
        .order_by(audit.c.at, audit.c.id))
    out = []
    for r in rows:
        detail = json_object(r.detail)
        if not detail.get("near_miss"):
            continue  # cancelled by the guard itself (a linked mail's recipients gone)
        out.append((AuditRow(float(r.at), r.actor, r.action, r.from_state, r.to_state,
                             detail),
                    ReportMessage(r.id, r.mail_from, float(r.received_at), r.state,
                                  json_object(r.verdict))))
    return out


async def messages_with_audit(conn: AsyncConnection, since: float, until: float
                              ) -> list[ReportMessage]:
    """Messages received in [since, until) that some rule acted on (a verdict with
    reasons), each with its audit rows in order. The guard's own mail is left out."""
    out: dict[str, ReportMessage] = {}
    rows = await conn.execute(
        select(messages.c.id, messages.c.mail_from, messages.c.received_at,
               messages.c.state, messages.c.verdict)
        .where(messages.c.received_at >= since, messages.c.received_at < until,
               messages.c.sender != GUARD_SENDER)
        .order_by(messages.c.received_at, messages.c.id))
    for r in rows:
        v = json_object(r.verdict)
        if v.get("reasons"):
            out[r.id] = ReportMessage(r.id, r.mail_from, float(r.received_at), r.state, v)
    if not out:
        return []
    ids = list(out)
    for i in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[i:i + 500]
        for a in await conn.execute(
                select(audit).where(audit.c.message_id.in_(chunk))
                .order_by(audit.c.at, audit.c.id)):
            out[a.message_id].audit.append(AuditRow(
                float(a.at), a.actor, a.action, a.from_state, a.to_state,
                json_object(a.detail)))
    return list(out.values())
