"""What one hold transaction did, counted once it has committed.

A lifecycle function runs inside a writer transaction that may be rolled back, or run
again alone when its batch failed; so it writes down what happened here, and the
lifecycle counts it (guard.metrics) only after the commit, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from guard import metrics
from guard.hold.model import KINDS

# who acted, as the metrics name them (the timers act as "system")
BY = {"sender": "sender", "approver": "approver", "admin": "admin", "system": "timer"}


def hold_kind(action: object) -> str:
    """A stored verdict's action as a hold kind (unknown: confirm, like hold.model)."""
    return action if isinstance(action, str) and action in KINDS else "confirm"


def outcome_of(action: str, to_state: str, role: str) -> str | None:
    """The hold outcome an audited move is, or None (not an outcome: first notices, an
    approval that is not the last one)."""
    if action == "release":
        return "confirmed" if role == "sender" else "released"
    if action == "approve":
        return "approved" if to_state == "queued" else None
    if action == "expire":
        return "released" if to_state == "queued" else "expired"
    return {"cancel": "cancelled", "reject": "rejected", "escalate": "escalated",
            "drop_recipient": "recipient_removed"}.get(action)


@dataclass
class Tally:
    notices: list[str] = field(default_factory=list)  # kinds queued
    notices_failed: list[str] = field(default_factory=list)  # kinds that could not be built
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # kind, outcome, by
    decisions: list[tuple[str, float]] = field(default_factory=list)  # kind, seconds held
    near_misses: list[tuple[str, str]] = field(default_factory=list)  # by, kind
    created: list[tuple[str, str]] = field(default_factory=list)  # kind, rule

    def moved(self, kind: str, action: str, to_state: str, role: str, held_for: float) -> None:
        by = BY.get(role, "admin")
        outcome = outcome_of(action, to_state, role)
        if outcome is not None:
            self.outcomes.append((kind, outcome, by))
        if to_state != "held" and by != "timer":  # a person decided
            self.decisions.append((kind, max(held_for, 0.0)))

    def observe(self) -> None:
        for kind in self.notices:
            metrics.NOTICES_SENT.labels(kind).inc()
        for kind in self.notices_failed:
            metrics.NOTICES_FAILED.labels(kind).inc()
        for labels in self.outcomes:
            metrics.HOLD_OUTCOMES.labels(*labels).inc()
        for kind, seconds in self.decisions:
            metrics.DECISION_LATENCY.labels(kind).observe(seconds)
        for by, kind in self.near_misses:
            metrics.NEAR_MISSES.labels(by, kind).inc()
        for kind, rule in self.created:
            metrics.HOLDS_CREATED.labels(kind, rule).inc()
