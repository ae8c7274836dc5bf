"""The verdict: what to do with one message, why, and the winning rule's parameters.

Its JSON (`Verdict.to_json`) is a contract: "action" and "reasons" are read by admins'
scripts and CI checks, and the store keeps it with the message.

How to add an action modifier (something that applies to whatever action wins, like
tag and bcc): give `Modifiers` a field (and its `to_json` key); declare the rule key in
schema.Rule and, if only some actions take it, in checks' table of parameters per
action; combine it over the matching rules in engine's `_modifiers`; apply it where the
message is rewritten before delivery (guard.accept.decide.apply_modifiers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guard.policy.schema import Action


@dataclass(frozen=True)
class TagMark:
    """Marks to add to the delivered message (headers are X- headers, one line each)."""

    headers: tuple[tuple[str, str], ...] = ()
    subject_prefix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"headers": dict(self.headers), "subject_prefix": self.subject_prefix}


@dataclass(frozen=True)
class Modifiers:
    tag: TagMark | None = None
    # move visible external addresses out of To/Cc (the rewrite is done elsewhere)
    bcc: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag.to_json() if self.tag else None, "bcc": self.bcc}


@dataclass(slots=True)
class Reason:
    """One finding that made one rule match (or the rule itself, for scope-only rules).

    Not frozen: a message with many findings builds dozens of these, and a frozen
    dataclass costs five times as much to build. Treat it as read-only all the same.
    """

    rule: str
    symbol: str
    where: str
    evidence: Mapping[str, Any]
    score: float
    count: int
    reason_ja: str
    reason_en: str
    recipients: tuple[str, ...]
    action: Action = Action.PASS  # the action of the rule this reason belongs to

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "action": self.action.value,
            "symbol": self.symbol,
            "where": self.where,
            "evidence": dict(self.evidence),
            "score": round(self.score, 3),
            "count": self.count,
            "recipients": list(self.recipients),
            "reason_ja": self.reason_ja,
            "reason_en": self.reason_en,
        }


@dataclass(frozen=True)
class Dropped:
    """A recipient a drop rule took out: the mail goes to the others, never to them."""

    address: str
    rule: str
    symbol: str
    reason_ja: str
    reason_en: str

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "rule": self.rule, "symbol": self.symbol,
                "reason_ja": self.reason_ja, "reason_en": self.reason_en}


@dataclass(frozen=True)
class Split:
    """A hold that holds only some recipients: the message becomes two, one delivered
    now to `now_recipients` (verdict `now`), one held for `held_recipients` (`held`)."""

    now_recipients: tuple[str, ...]
    held_recipients: tuple[str, ...]
    now: Verdict
    held: Verdict

    def to_json(self) -> dict[str, Any]:
        def part(rcpts: tuple[str, ...], v: Verdict) -> dict[str, Any]:
            return {"recipients": list(rcpts), "action": v.action.value, "rule": v.rule,
                    "rules": sorted({r.rule for r in v.reasons})}

        return {"now": part(self.now_recipients, self.now),
                "held": part(self.held_recipients, self.held)}


@dataclass(frozen=True)
class LinkedTo:
    """A PPAP password mail goes with the encrypted-attachment mail `queue_id`
    (defaults.linked_password): `hold` = held until, and released or cancelled with,
    that mail; `refuse` = refused because that mail was refused or cancelled."""

    queue_id: str
    effect: str  # hold | refuse
    state: str  # the state of that mail when this one was inspected

    def to_json(self) -> dict[str, Any]:
        return {"queue_id": self.queue_id, "effect": self.effect, "state": self.state}


@dataclass(frozen=True)
class Verdict:
    """What to do with one message, why, and the parameters of the winning rule."""

    action: Action
    modifiers: Modifiers = Modifiers()
    reasons: list[Reason] = field(default_factory=list)
    rule: str | None = None  # the winning rule; None when nothing matched
    delay_minutes: int | None = None
    approver_group: str | None = None
    approvers: tuple[str, ...] = ()  # the sender is never among them
    backup_approvers: tuple[str, ...] = ()
    escalate_after_minutes: int | None = None
    approvals_required: int | None = None
    expiry_minutes: int | None = None  # for delay: the delay itself
    on_expiry: str | None = None  # "send" | "cancel" (cancel always tells the sender)
    message_ja: str = ""
    message_en: str = ""
    reject_code: int | None = None
    reject_status: str | None = None  # enhanced status code, "5.7.1"
    reject_text: str | None = None  # ASCII, safe in any SMTP session: "5.7.1 ..."
    reject_text_utf8: str | None = None  # with Japanese, for SMTPUTF8 sessions
    # per-recipient actions: who a drop rule took out; a hold split in two; and, when a
    # rule asked for a split that cannot be made, why not (for --explain)
    dropped: tuple[Dropped, ...] = ()
    split: Split | None = None
    no_split: str = ""
    linked_to: LinkedTo | None = None  # a password mail that goes with an attachment mail

    @property
    def held(self) -> bool:
        return self.action in (Action.DELAY, Action.CONFIRM, Action.APPROVE)

    @property
    def delivered_now(self) -> bool:
        return self.action in (Action.PASS, Action.TAG, Action.BCC, Action.DROP)

    def to_json(self) -> dict[str, Any]:
        # "action" and "reasons" are a stable contract (admins' scripts, CI checks).
        return {
            "action": self.action.value,
            "reasons": [r.to_json() for r in self.reasons],
            "modifiers": self.modifiers.to_json(),
            "rule": self.rule,
            "delay_minutes": self.delay_minutes,
            "approver_group": self.approver_group,
            "approvers": list(self.approvers),
            "backup_approvers": list(self.backup_approvers),
            "escalate_after_minutes": self.escalate_after_minutes,
            "approvals_required": self.approvals_required,
            "expiry_minutes": self.expiry_minutes,
            "on_expiry": self.on_expiry,
            "message_ja": self.message_ja,
            "message_en": self.message_en,
            "reject_code": self.reject_code,
            "reject_status": self.reject_status,
            "reject_text": self.reject_text,
            "dropped": [d.to_json() for d in self.dropped],
            "split": self.split.to_json() if self.split is not None else None,
            "no_split": self.no_split,
            "linked_to": self.linked_to.to_json() if self.linked_to else None,
        }
