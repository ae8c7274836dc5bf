"""Who may approve a held message: the rule's approvers, else the admins; the backup
approvers too once the hold was escalated; never the sender. The lifecycle asks it
before an approval counts, the review pages before they show an approver's link."""

from __future__ import annotations

from collections.abc import Iterable

from guard.config import Settings
from guard.hold.model import Hold
from guard.mail.addresses import address_key
from guard.store.holds import HoldRow


def first_approvers(hold: Hold, settings: Settings) -> list[str]:
    """Who is asked first: the rule's approvers, else the admins (never the sender)."""
    if hold.approvers:
        return list(hold.approvers)
    return [a for a in _norm(settings.review.admin_addresses) if not hold.is_sender(a)]


def backup_approvers(hold: Hold, settings: Settings) -> list[str]:
    first = set(first_approvers(hold, settings))
    pool = list(hold.backup_approvers) or _norm(settings.review.admin_addresses)
    return [a for a in pool if a not in first and not hold.is_sender(a)]


def allowed_approvers(hold: Hold, hold_row: HoldRow | None, settings: Settings) -> set[str]:
    allowed = set(first_approvers(hold, settings))
    if hold_row is not None and hold_row.escalated_at is not None:
        allowed |= set(backup_approvers(hold, settings))
    return {a for a in allowed if not hold.is_sender(a)}


def _norm(addrs: Iterable[str]) -> list[str]:
    return [address_key(a) for a in addrs if "@" in a]
