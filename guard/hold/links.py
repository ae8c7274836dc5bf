"""What a notice's link opens: the token checked, the held message read, the holder's
role and the operations open to them. The review pages ask this module what to show;
it knows nothing of HTTP.

A link is refused (a code, never an exception) when its token was tampered with or
belongs to another message or person ("forbidden"), has expired ("expired"), or its
message is gone ("gone")."""

from __future__ import annotations

from dataclasses import dataclass, field

from guard.config import Settings
from guard.hold.approvers import allowed_approvers
from guard.hold.model import Hold, parse_hold
from guard.hold.tokens import LinkToken, TokenError, TokenExpired, TokenSigner
from guard.mail.addresses import address_key
from guard.store import AsyncEngine
from guard.store import holds as H
from guard.store import links as L
from guard.store.db import db_now
from guard.store.lifecycle import FINAL_STATES

SENDER_OPS = {"delay": ("send_now", "cancel"), "confirm": ("confirm", "cancel"),
              "approve": ("cancel",)}
APPROVER_OPS = ("approve", "reject")

EXPIRED, FORBIDDEN, GONE = "expired", "forbidden", "gone"


def allowed_ops(role: str, kind: str) -> tuple[str, ...]:
    if role == "sender":
        return SENDER_OPS.get(kind, ())
    return APPROVER_OPS if kind == "approve" else ()


@dataclass
class LinkView:
    """Everything a request learned about its link, read in one read transaction."""

    token: LinkToken
    role: str  # sender | approver
    msg: H.MessageRow
    hold: Hold
    hold_row: H.HoldRow | None
    rcpts: list[H.RecipientRow]
    approvals: list[str]
    used: bool
    data: bytes | None = None
    # a finished message whose bytes the retention sweep deleted: the page says so
    bytes_purged: bool = False
    ops: tuple[str, ...] = ()
    # PPAP: the attachment mail this password mail goes with, and the password mails
    # that go with this one
    waits_for: L.LinkedMessage | None = None
    linked: list[L.LinkedMessage] = field(default_factory=list)


class ReviewLinks:
    def __init__(self, engine: AsyncEngine, signer: TokenSigner, settings: Settings) -> None:
        self.engine = engine
        self.signer = signer
        self.settings = settings

    async def open(self, message_id: str, token_text: str, *, with_content: bool
                   ) -> LinkView | str:
        """The view of a link, or why it is refused (EXPIRED, FORBIDDEN, GONE). The
        message's bytes only when asked, and only while it is held and the link unused."""
        async with self.engine.connect() as conn:
            now = await db_now(conn)
            try:
                token = self.signer.verify(token_text, now)
            except TokenExpired:
                return EXPIRED
            except TokenError:
                return FORBIDDEN
            if token.message_id != message_id:
                return FORBIDDEN
            msg = await H.get_message(conn, message_id)
            if msg is None or msg.state == "rejected":
                return GONE
            hold = parse_hold(msg.verdict, mail_from=msg.mail_from, sender=msg.sender)
            hold_row = await H.get_hold(conn, message_id)
            role = "sender" if token.action == "review" else "approver"
            actor = address_key(token.actor)
            if role == "sender":
                allowed = actor == address_key(msg.mail_from)
            else:
                allowed = (hold.kind == "approve" and not hold.is_sender(actor)
                           and actor in allowed_approvers(hold, hold_row, self.settings))
            if not allowed:
                return FORBIDDEN
            view = LinkView(token, role, msg, hold, hold_row,
                            await H.get_recipients(conn, message_id),
                            await H.get_approvals(conn, message_id),
                            await H.nonce_used(conn, token.nonce))
            view.ops = allowed_ops(role, hold.kind)
            view.waits_for, view.linked = await L.linked_messages(conn, message_id)
            if role == "sender" and view.waits_for and view.waits_for.state == "held":
                # it goes with its attachment mail, never before it (hold.lifecycle
                # refuses it too); cancelling it alone is always open
                view.ops = tuple(op for op in view.ops if op == "cancel")
            if with_content and msg.state == "held" and not view.used:
                view.data = await H.get_content(conn, message_id)
            elif msg.state in FINAL_STATES:
                view.bytes_purged = not await H.has_content(conn, message_id)
        return view

    async def content(self, message_id: str) -> bytes | None:
        """The stored bytes of a message (the page shown again with a form error)."""
        async with self.engine.connect() as conn:
            return await H.get_content(conn, message_id)
