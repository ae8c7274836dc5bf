"""Tables of the hold lifecycle, on the same MetaData as the queue tables.

    holds           one row per held message once its first notice went out:
                    the kind, when it was notified, when to escalate (and whether it did)
    hold_approvals  who approved (one row per approver; two-approval mode counts them)
    used_tokens     nonces of link tokens that have acted: a token acts once
    message_links   one row per linked message (a PPAP password mail): the message it
                    goes with, the kind, when it was linked (read and written by links.py)
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, String, Table

from guard.store.schema import metadata

holds = Table(
    "holds", metadata,
    Column("message_id", String(32), ForeignKey("messages.id", ondelete="CASCADE"),
           primary_key=True),
    Column("kind", String(16), nullable=False),  # delay | confirm | approve
    Column("notified_at", Float, nullable=False),
    Column("escalate_at", Float),  # NULL = never (not approve, or nobody to escalate to)
    Column("escalated_at", Float),
    Column("approvals_required", Integer, nullable=False, default=1),
    Index("ix_holds_escalate", "escalate_at"),
)

hold_approvals = Table(
    "hold_approvals", metadata,
    Column("message_id", String(32), ForeignKey("messages.id", ondelete="CASCADE"),
           primary_key=True),
    Column("approver", String(320), primary_key=True),
    Column("at", Float, nullable=False),
)

used_tokens = Table(
    "used_tokens", metadata,
    Column("nonce", String(32), primary_key=True),
    Column("message_id", String(32), nullable=False),
    Column("used_at", Float, nullable=False),
    # kept until the token would have expired anyway, then purged by the timers
    Column("expires_at", Float, nullable=False),
    Index("ix_used_tokens_expires", "expires_at"),
)

message_links = Table(
    "message_links", metadata,
    Column("message_id", String(32), ForeignKey("messages.id", ondelete="CASCADE"),
           primary_key=True),
    Column("linked_to", String(32), nullable=False),  # the message it goes with
    Column("kind", String(16), nullable=False),  # ppap
    Column("created_at", Float, nullable=False),
    Index("ix_message_links_linked_to", "linked_to"),
)
