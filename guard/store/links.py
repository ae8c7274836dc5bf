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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.db import now_sql
from guard.store.holds import get_message
from guard.store.holds_schema import message_links
from guard.store.lifecycle import RecipientState, State
from guard.store.queue import transition
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


# The states of a message that went out (or is going): its password mail goes too.
_RELEASED = (State.QUEUED, State.DEFERRED, State.DELIVERED, State.BOUNCED)
# Its recipients that got it or will: the only ones its password mail may go to.
_LIVE = (RecipientState.PENDING, RecipientState.DELIVERED)
NOT_A_RECIPIENT = "removed: not a recipient of the linked mail it goes with"
# A password mail released with (or after) its attachment mail is due this much later,
# so the attachment mail is delivered first (claims go in next_attempt_at order).
LINKED_AFTER_SECONDS = 2.0


async def confine(conn: AsyncConnection, now: float, message_id: str, linked_to: str,
                  key: Callable[[str], str]) -> tuple[list[str], int]:
    """The password mail `message_id` goes only where its attachment mail `linked_to`
    went or goes: its pending recipients that are not live on that mail (removed from
    it, never on it, refused) become dropped, with why as their last word. (Their
    addresses, how many pending recipients are left.) `key`: the address comparison
    form (guard.mail.addresses.address_key, handed in: the store does not parse mail)."""
    live = {key(r.address) for r in await conn.execute(
        select(recipients.c.address).where(recipients.c.message_id == linked_to,
                                           recipients.c.state.in_([str(s) for s in _LIVE])))}
    pending = (await conn.execute(
        select(recipients.c.idx, recipients.c.address).where(
            recipients.c.message_id == message_id,
            recipients.c.state == str(RecipientState.PENDING)))).all()
    gone = [r for r in pending if key(r.address) not in live]
    for r in gone:
        await conn.execute(update(recipients).where(
            recipients.c.message_id == message_id, recipients.c.idx == r.idx,
            recipients.c.state == str(RecipientState.PENDING)).values(
            state=str(RecipientState.DROPPED), last_reply=NOT_A_RECIPIENT, updated_at=now))
    return [r.address for r in gone], len(pending) - len(gone)


async def add_link(conn: AsyncConnection, now: float, message_id: str, linked_to: str, *,
                   actor: str, key: Callable[[str], str], kind: str = "ppap") -> str:
    """Part of the transaction that stores the held password mail `message_id` (after its
    row); its state afterwards (held | queued | cancelled).

    The attachment mail was held when the message was inspected; it is read again here
    under its row lock (PostgreSQL; SQLite has one writer), and when it has been decided
    meanwhile, what its decision did to its password mails happens now (one audit row):
    released, this one is queued for the recipients it went to (the others dropped, and
    cancelled when none is left); cancelled, expired or gone, this one is cancelled.
    Still held: the link is in force and this hold lasts at least as long as that one
    (without an end if that one has none), so its own expiry never decides it first."""
    await conn.execute(insert(message_links).values(
        message_id=message_id, linked_to=linked_to, kind=kind, created_at=now))
    lead = await get_message(conn, linked_to, lock=True)
    detail: dict[str, Any] = {"linked_to": linked_to, "decided_before_commit": True}
    if lead is not None and lead.state == State.HELD:
        await ends_with(conn, message_id, lead.hold_until)
        return str(State.HELD)
    if lead is not None and lead.state in _RELEASED:
        dropped, left = await confine(conn, now, message_id, linked_to, key)
        detail.update(dropped=dropped)
        if left:
            when = now + LINKED_AFTER_SECONDS
            await transition(conn, now, message_id, from_states=(State.HELD,),
                             to_state=State.QUEUED, actor=actor, action="release",
                             detail={**detail, "with": "release"},
                             values={"queued_at": now, "next_attempt_at": when,
                                     "hold_until": None})
            return str(State.QUEUED)
        detail.update(reason="linked_recipients_removed")
    else:
        detail.update(reason="linked_cancelled", near_miss=True)
    await transition(conn, now, message_id, from_states=(State.HELD,),
                     to_state=State.CANCELLED, actor=actor, action="cancel",
                     detail={**detail, "with": "cancel"})
    return str(State.CANCELLED)


async def ends_with(conn: AsyncConnection, message_id: str, lead_until: float | None) -> None:
    """The hold of `message_id` ends no sooner than `lead_until`, the end of the hold of
    the mail it goes with (None: that one has no end, nor has this one)."""
    until = update(messages).where(messages.c.id == message_id,
                                   messages.c.hold_until.is_not(None))
    if lead_until is None:
        await conn.execute(until.values(hold_until=None))
    else:
        await conn.execute(until.where(messages.c.hold_until < lead_until)
                           .values(hold_until=lead_until))


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
