"""The snapshot of outside knowledge that detectors read.

The pipeline builds it (from the policy files and the store) before inspection, so the
detectors themselves stay pure and `guard policy test` / `replay` give exact answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from guard.inspect.owndata import OwnContacts


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
    # this message's external recipients (comparison form) already mailed in the scope
    # the policy chose (org-wide, or by this sender): the others are new_address. Read
    # from the store for each message, so every instance answers alike.
    known_recipients: frozenset[str] = frozenset()
    # distinct external recipients this sender sent to in the last hour and the last 24
    # hours, this message's included; (0, 0) = nothing to count (no external recipient)
    sender_volume: tuple[int, int] = (0, 0)
    # the store stopped counting there (the most a rule asks for, plus one): a count
    # at or above it is a lower bound; 0 = the counts are exact
    sender_volume_cap: int = 0
    partner_domains: frozenset[str] = frozenset()
    # suppression list name -> set of HMAC-SHA256 digests of normalised addresses
    suppression: Mapping[str, frozenset[bytes]] = field(default_factory=dict)
    suppression_key: bytes = b""
    customers: tuple[Customer, ...] = ()
    keywords: tuple[KeywordRule, ...] = ()
    # the organisation's own addresses, phones, postal codes, names and domains
    # (policy: defaults.own_contacts, lists.own_contacts); the internal domains are
    # own domains too (run.py adds them)
    own_contacts: OwnContacts = field(default_factory=OwnContacts)
    # the sender's encrypted-attachment mail of the last minutes, newest first: asked of
    # the store only for a message that announces a password (inspect/ppap.py)
    recent_encrypted: tuple[RecentEncrypted, ...] = ()
