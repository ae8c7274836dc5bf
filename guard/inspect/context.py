"""The snapshot of outside knowledge that detectors read.

The pipeline builds it (from the policy files and the store) before inspection, so the
detectors themselves stay pure and `guard policy test` / `replay` give exact answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Customer:
    """A known customer organisation: the names it goes by and its mail domains."""

    name: str
    aliases: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeywordRule:
    """A named regular expression applied to some fields of the message."""

    name: str
    pattern: str
    # any of "subject", "body", "filename", "attachment"
    fields: tuple[str, ...] = ("subject", "body", "filename")


@dataclass(frozen=True)
class RecentEncrypted:
    """One of the sender's recent messages with an encrypted attachment (a PPAP zip),
    as the store has it: a password mail that follows is linked to it."""

    queue_id: str
    state: str  # held, queued, delivered, rejected, cancelled, ...
    seconds_ago: float  # how long before the message being inspected it was received
    recipients: frozenset[str]  # address keys (guard.mail.addresses.address_key)


@dataclass(frozen=True)
class InspectContext:
    sender: str = ""  # authenticated identity (or MAIL FROM on a trusted listener)
    internal_domains: frozenset[str] = frozenset()  # registrable domains of the company
    # registrable domains already delivered to (for the scope the policy chose:
    # org-wide, or this sender's), learned from delivered mail and seeded by import
    known_domains: frozenset[str] = frozenset()
    # every domain known to anyone (look-alike comparisons), when known_domains is
    # narrowed to one sender's history; empty = use known_domains
    all_known_domains: frozenset[str] = frozenset()
    # full addresses already delivered to; look-alike checks compare against these
    known_addresses: frozenset[str] = frozenset()
    partner_domains: frozenset[str] = frozenset()
    # suppression list name -> set of HMAC-SHA256 digests of normalised addresses
    suppression: Mapping[str, frozenset[bytes]] = field(default_factory=dict)
    suppression_key: bytes = b""
    customers: tuple[Customer, ...] = ()
    keywords: tuple[KeywordRule, ...] = ()
    # the sender's encrypted-attachment mail of the last minutes, newest first: asked of
    # the store only for a message that announces a password (inspect/ppap.py)
    recent_encrypted: tuple[RecentEncrypted, ...] = ()
