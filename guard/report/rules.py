"""The yearly review of the rules (the PDCA input): for each rule of the current
policy, how often it acted and what people then did; the rules that never fired; the
rubber stamps; and the rules that acted during the year but are no longer in the
policy ("removed rules").

What counts:
- fired: messages received in the year whose verdict names the rule among its reasons;
- held / tagged / refused: messages on which the rule won (verdict.rule) and the action
  was a hold (delay, confirm, approve), a tag or bcc, or a reject;
- the outcomes of the holds that rule won, from their audit rows: approved (the last
  approval), confirmed (the sender), released (an admin), cancelled, rejected (an
  approver said no), expired (the hold's time ran out, sent or not), escalated;
- median approval time: from the hold to its last approval;
- a rubber stamp: at least `min_holds` holds of which at least 95 % were approved or
  confirmed — the rule is too wide, or the people asked do not look.
Messages withdrawn after a 451 are left out: their client sent them again.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from guard.report.periods import Period
from guard.store.reports import ReportMessage

HOLD_ACTIONS = frozenset({"delay", "confirm", "approve"})
TAG_ACTIONS = frozenset({"tag", "bcc"})
REFUSE_ACTIONS = frozenset({"reject"})
MIN_HOLDS = 10
STAMP_SHARE = 0.95
OUTCOMES = ("approved", "confirmed", "released", "cancelled", "rejected", "expired",
            "escalated")


@dataclass
class RuleCount:
    rule: str
    fired: int = 0
    held: int = 0
    tagged: int = 0
    refused: int = 0
    approved: int = 0
    confirmed: int = 0
    released: int = 0
    cancelled: int = 0
    rejected: int = 0
    expired: int = 0
    escalated: int = 0
    approval_seconds: list[float] = field(default_factory=list)

    @property
    def median_approval_seconds(self) -> float | None:
        return statistics.median(self.approval_seconds) if self.approval_seconds else None

    @property
    def passed_share(self) -> float | None:
        """Approved or confirmed, of the holds (None: no holds)."""
        return (self.approved + self.confirmed) / self.held if self.held else None

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["approval_seconds"]
        d["median_approval_seconds"] = self.median_approval_seconds
        return d


@dataclass
class RulesReport:
    period: Period
    rules: list[RuleCount]  # the current policy's, in its order
    removed: list[RuleCount]  # acted in the year, no longer in the policy
    min_holds: int = MIN_HOLDS

    @property
    def never_fired(self) -> list[str]:
        return [r.rule for r in self.rules if r.fired == 0]

    @property
    def rubber_stamps(self) -> list[RuleCount]:
        return [r for r in self.rules + self.removed
                if r.held >= self.min_holds and (r.passed_share or 0.0) >= STAMP_SHARE]


def _outcome(action: str, to_state: str, by: str) -> str | None:
    if action == "release":
        return "confirmed" if by == "sender" else "released"
    if action == "approve":
        return "approved" if to_state == "queued" else None
    return {"cancel": "cancelled", "reject": "rejected", "expire": "expired",
            "escalate": "escalated"}.get(action)


def _count_holds(c: RuleCount, msg: ReportMessage) -> None:
    held_at = msg.received_at
    for a in msg.audit:
        if a.action in ("held", "hold"):
            held_at = a.at
        if a.from_state != "held":
            continue
        outcome = _outcome(a.action, a.to_state, str(a.detail.get("by") or ""))
        if outcome is None:
            continue
        setattr(c, outcome, getattr(c, outcome) + 1)
        if outcome == "approved":
            c.approval_seconds.append(max(a.at - held_at, 0.0))


def build(period: Period, current: Sequence[str], messages: Iterable[ReportMessage], *,
          min_holds: int = MIN_HOLDS) -> RulesReport:
    counts: dict[str, RuleCount] = {name: RuleCount(name) for name in current}

    def of(name: str) -> RuleCount:
        if name not in counts:
            counts[name] = RuleCount(name)
        return counts[name]

    for msg in messages:
        if any(a.action == "withdrawn" for a in msg.audit):
            continue
        named = {str(r.get("rule")) for r in msg.verdict.get("reasons") or []
                 if isinstance(r, dict) and r.get("rule")}
        for name in named:
            of(name).fired += 1
        winner = msg.verdict.get("rule")
        if not winner:
            continue
        c = of(str(winner))
        action = str(msg.verdict.get("action") or "")
        if action in HOLD_ACTIONS:
            c.held += 1
            _count_holds(c, msg)
        elif action in TAG_ACTIONS:
            c.tagged += 1
        elif action in REFUSE_ACTIONS:
            c.refused += 1
    wanted = set(current)
    return RulesReport(period, [counts[n] for n in current],
                       sorted((c for n, c in counts.items() if n not in wanted),
                              key=lambda c: c.rule),
                       min_holds)
