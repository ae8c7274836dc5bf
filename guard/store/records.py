"""What the guard recorded, read out for people outside it: the audit trail for the
company's SIEM (`guard audit export`) and every message to or from one address for a
data subject's request (`guard lookup`). Never bytes: only rows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.queue import add_audit
from guard.store.schema import audit, messages, recipients


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: float
    message_id: str
    actor: str
    action: str
    from_state: str
    to_state: str
    detail: Any  # the JSON, parsed


async def audit_rows(conn: AsyncConnection, since: float, until: float | None
                     ) -> AsyncIterator[AuditRow]:
    """The audit rows written in [since, until), oldest first, streamed (a server-side
    cursor on PostgreSQL): a year of rows never sits in memory at once."""
    q = select(audit).where(audit.c.at >= since)
    if until is not None:
        q = q.where(audit.c.at < until)
    result = await conn.stream(q.order_by(audit.c.at, audit.c.id).execution_options(
        yield_per=500))
    async for r in result:
        try:
            detail = json.loads(r.detail) if r.detail else {}
        except ValueError:
            detail = r.detail
        yield AuditRow(r.id, r.at, r.message_id, r.actor, r.action, r.from_state,
                       r.to_state, detail)


@dataclass(frozen=True)
class Recorded:
    id: str
    received_at: float
    direction: str  # "from", "to", or "from,to"
    state: str
    subject: str  # "" when none was stored
    rule: str  # the rule of the verdict, "" when none acted


async def messages_of(conn: AsyncConnection, address: str) -> list[Recorded]:
    """Every stored message sent by `address` (envelope sender, authenticated user or the
    From: header) or to it (a recipient), newest first; compared case-insensitively."""
    addr = address.strip().lower()
    to_ids = select(recipients.c.message_id).where(func.lower(recipients.c.address) == addr)
    sent = or_(func.lower(messages.c.mail_from) == addr, func.lower(messages.c.sender) == addr)
    # From: is stored as written ("山田 <a@b>"): SQL finds the candidates, the parsed
    # field decides (a@b.co.jp must not match xa@b.co.jp)
    in_from = func.lower(messages.c.header_from).contains(addr, autoescape=True)
    rows = (await conn.execute(
        select(messages.c.id, messages.c.received_at, messages.c.state, messages.c.subject,
               messages.c.verdict, messages.c.header_from, sent.label("sent"),
               messages.c.id.in_(to_ids).label("got"))
        .where(or_(sent, in_from, messages.c.id.in_(to_ids)))
        .order_by(messages.c.received_at.desc(), messages.c.id))).all()
    out = []
    for r in rows:
        from_header = any(a.strip().lower() == addr
                          for _name, a in getaddresses([r.header_from or ""]))
        if not (r.sent or r.got or from_header):
            continue
        try:
            rule = str(json.loads(r.verdict or "{}").get("rule") or "")
        except (ValueError, AttributeError):
            rule = ""
        direction = ",".join(d for d, yes in (("from", r.sent or from_header),
                                              ("to", r.got)) if yes)
        out.append(Recorded(r.id, r.received_at, direction, r.state, r.subject or "", rule))
    return out


async def record_lookup(conn: AsyncConnection, now: float, actor: str,
                        detail: dict[str, Any]) -> None:
    """The audit row of a lookup (who asked, which address as a keyed hash and masked,
    how many were found): a lookup of personal data is itself on record."""
    await add_audit(conn, now, "-", actor, "lookup", detail=detail)
