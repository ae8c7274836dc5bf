"""Linked messages: a PPAP password mail and the encrypted-attachment mail it follows.

    message_links   one row per linked message: which message it goes with, the kind
                    ("ppap"), when it was linked; written in the transaction that stores
                    the linked message, read by the hold lifecycle when the message it
                    goes with is released or cancelled

`recent_encrypted` is the recipient stage's question "which encrypted-attachment mail
did this sender send in the last minutes?": asked only for a message that announces a
password, answered from the stored verdicts (the content stage recorded the
`uninspectable.encrypted` finding there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.db import now_sql
from guard.store.holds_schema import message_links
from guard.store.schema import messages, recipients

ENCRYPTED_SYMBOL = "uninspectable.encrypted"


@dataclass(frozen=True)
class EncryptedMail:
    id: str
    state: str
    seconds_ago: float
    recipients: list[str]


async def recent_encrypted(conn: AsyncConnection, sender: str, window_seconds: float,
                           limit: int = 20) -> list[EncryptedMail]:
    """The sender's messages of the last `window_seconds` (database clock) whose stored
    findings include an encrypted attachment, newest first."""
    now = float((await conn.execute(text("SELECT " + now_sql(conn)))).scalar_one())
    rows = (await conn.execute(
        select(messages.c.id, messages.c.state, messages.c.received_at, messages.c.verdict)
        .where(messages.c.sender == sender,
               messages.c.received_at >= now - window_seconds,
               messages.c.verdict.contains(ENCRYPTED_SYMBOL, autoescape=True))
        .order_by(messages.c.received_at.desc()).limit(limit))).all()
    found = [r for r in rows if _has_encrypted(r.verdict)]
    if not found:
        return []
    rcpts: dict[str, list[str]] = {}
    for r in await conn.execute(select(recipients.c.message_id, recipients.c.address).where(
            recipients.c.message_id.in_([r.id for r in found]))):
        rcpts.setdefault(r.message_id, []).append(r.address)
    return [EncryptedMail(r.id, r.state, max(0.0, now - r.received_at), rcpts.get(r.id, []))
            for r in found]


def _has_encrypted(verdict: str | None) -> bool:
    """The LIKE above is a cheap filter; the finding itself decides (a subject that
    says "uninspectable.encrypted" is not an encrypted attachment)."""
    try:
        doc = json.loads(verdict or "{}")
    except ValueError:
        return False
    items = [*(doc.get("findings") or []), *(doc.get("reasons") or [])]
    return any(isinstance(f, dict) and f.get("symbol") == ENCRYPTED_SYMBOL for f in items)


async def add_link(conn: AsyncConnection, now: float, message_id: str, linked_to: str,
                   kind: str = "ppap") -> None:
    """Part of the transaction that stores `message_id` (after its row). Its hold lasts
    at least as long as the one it goes with, so its own expiry never cancels it while
    an approver still has the attachment mail (approve holds last two days, confirm
    holds one)."""
    await conn.execute(insert(message_links).values(
        message_id=message_id, linked_to=linked_to, kind=kind, created_at=now))
    lead = (await conn.execute(select(messages.c.hold_until).where(
        messages.c.id == linked_to))).scalar()
    if lead is not None:
        await conn.execute(update(messages).where(
            messages.c.id == message_id, messages.c.hold_until.is_not(None),
            messages.c.hold_until < lead).values(hold_until=lead))


async def linked_to(conn: AsyncConnection, message_id: str) -> str | None:
    """The message that `message_id` goes with, if any."""
    return (await conn.execute(select(message_links.c.linked_to).where(
        message_links.c.message_id == message_id))).scalar()


@dataclass(frozen=True)
class LinkedMessage:
    id: str
    subject: str
    state: str


async def linked_messages(conn: AsyncConnection, message_id: str
                          ) -> tuple[LinkedMessage | None, list[LinkedMessage]]:
    """For the review pages: the message `message_id` waits for (if linked), and the
    messages that go with it (its password mails)."""
    lead = await linked_to(conn, message_id)
    ids = [*(await followers(conn, message_id)), *([lead] if lead else [])]
    if not ids:
        return None, []
    found = {r.id: LinkedMessage(r.id, r.subject, r.state) for r in await conn.execute(
        select(messages.c.id, messages.c.subject, messages.c.state)
        .where(messages.c.id.in_(ids)))}
    return (found.get(lead) if lead else None,
            [found[i] for i in ids if i != lead and i in found])


async def followers(conn: AsyncConnection, message_id: str) -> list[str]:
    """The messages linked to `message_id` (its password mails), oldest first."""
    rows = await conn.execute(select(message_links.c.message_id).where(
        message_links.c.linked_to == message_id).order_by(message_links.c.created_at))
    return [r.message_id for r in rows]
