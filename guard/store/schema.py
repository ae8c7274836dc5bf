"""Tables. Times are seconds since the epoch from the DATABASE clock (never a host clock),
so several instances with skewed clocks agree on delays, leases and expiry."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

messages = Table(
    "messages", metadata,
    Column("id", String(32), primary_key=True),
    Column("state", String(16), nullable=False),  # lifecycle.State
    Column("mail_from", Text, nullable=False),  # "" for bounces (null reverse-path)
    Column("sender", Text, nullable=False),  # authenticated user, or MAIL FROM when trusted
    Column("client_ip", String(64), nullable=False, default=""),
    Column("helo", Text, nullable=False, default=""),
    Column("listener", String(16), nullable=False, default=""),
    Column("size", Integer, nullable=False),
    Column("subject", Text, nullable=False, default=""),
    Column("header_from", Text, nullable=False, default=""),
    Column("message_id_header", Text, nullable=False, default=""),
    Column("verdict", Text, nullable=False, default="{}"),  # JSON: action + reasons
    Column("received_at", Float, nullable=False),
    # start of the delivery lifetime; reset when a held message is released
    Column("queued_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(128)),
    Column("lease_until", Float),
    Column("hold_until", Float),
    Column("updated_at", Float, nullable=False),
    Index("ix_messages_due", "state", "next_attempt_at"),
    Index("ix_messages_received", "received_at"),
    # the sender_volume count: one sender's messages of the last day
    Index("ix_messages_sender_received", "sender", "received_at"),
)

recipients = Table(
    "recipients", metadata,
    Column("message_id", String(32), ForeignKey("messages.id", ondelete="CASCADE"),
           primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("address", Text, nullable=False),
    Column("state", String(16), nullable=False, default="pending"),  # lifecycle.RecipientState
    Column("last_code", Integer),
    Column("last_reply", Text, nullable=False, default=""),
    Column("updated_at", Float, nullable=False),
)

# The bytes to relay (trace header kept apart, prepended when relaying). `original` is
# the message as received when the verdict's edits (tag, bcc) changed it, else NULL:
# `guard policy replay` inspects what the sender sent, not what was relayed.
# Rejected messages keep their bytes too (replaying a reject rule change), purged
# after delivery.retention_days like finished mail.
contents = Table(
    "contents", metadata,
    Column("message_id", String(32), ForeignKey("messages.id", ondelete="CASCADE"),
           primary_key=True),
    Column("trace_header", LargeBinary, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("original", LargeBinary),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("actor", Text, nullable=False),  # "smtp:alice@…", "relay:host:pid", "web:…", "cli:…"
    Column("action", String(32), nullable=False),
    Column("from_state", String(16), nullable=False, default=""),
    Column("to_state", String(16), nullable=False, default=""),
    Column("detail", Text, nullable=False, default="{}"),  # JSON
    Index("ix_audit_message", "message_id"),
    Index("ix_audit_at", "at"),
)

# --- what the detectors learn and read ------------------------------------------------

# Registrable domains delivered to, org-wide (scope "") and per sender (scope = sender),
# learned when mail is DELIVERED (not when held) and seeded by `guard domains import`.
known_domains = Table(
    "known_domains", metadata,
    Column("domain", String(255), primary_key=True),
    Column("scope", String(320), primary_key=True),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("source", String(16), nullable=False),  # delivered | import
)

# Full addresses (comparison form) delivered to, org-wide (scope "") and per sender,
# like known_domains: what look-alike recipients are compared against (org-wide) and
# what new_address asks (in the scope the policy chose); seeded by `guard history import`.
known_addresses = Table(
    "known_addresses", metadata,
    Column("address", String(320), primary_key=True),
    Column("scope", String(320), primary_key=True),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("source", String(16), nullable=False),  # delivered | import
    # the look-alike cache's reload: org-wide addresses, most recent first
    Index("ix_known_addresses_scope_last_seen", "scope", "last_seen"),
)

# Suppression lists (opt-out, withdrawn members, …): keyed hashes, never addresses.
# Each list has one source (guard/knowledge/listsync.py): kind "file" = synced from the CSV file
# the policy names (`source`), "store" = managed by `guard lists import` (`source` is
# the file last imported, for people).
lists = Table(
    "lists", metadata,
    Column("name", String(64), primary_key=True),
    Column("source", Text, nullable=False),
    Column("fingerprint", String(64), nullable=False),  # sha256 of the imported file
    Column("entries", Integer, nullable=False),
    Column("imported_at", Float, nullable=False),  # last sync or import
    Column("kind", String(8), nullable=False, server_default="file"),  # file | store
    # guard.mail.digests.key_fingerprint of the key that hashed the entries ("" = unknown)
    Column("key_fingerprint", String(16), nullable=False, server_default=""),
    Column("digest_scheme", Integer, nullable=False, server_default="0"),
)

list_entries = Table(
    "list_entries", metadata,
    Column("list_name", String(64), ForeignKey("lists.name", ondelete="CASCADE"),
           primary_key=True),
    Column("digest", LargeBinary(32), primary_key=True),
    Index("ix_list_entries_digest", "digest"),
)

# Small facts about the store: "list_key" = the key fingerprint and digest scheme of
# the guard that serves it (written by `guard serve` at start), so a command run with
# another secret is refused before it hashes a list no message would ever match.
store_meta = Table(
    "store_meta", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)


def json_object(text: str | None) -> dict[str, Any]:
    """A JSON column (messages.verdict, audit.detail) as a dict; {} for empty, broken or
    not an object: what a reader of old or hand-edited rows gets instead of a traceback."""
    try:
        v = json.loads(text or "{}")
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}
