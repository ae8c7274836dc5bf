"""`guard policy replay`: what a policy would have decided for past mail.

Each stored message is inspected again as it was received (the bytes before the
verdict's edits: a Bcc fix or a tag changed what was relayed, not what was sent)
against the delivery history as it was when it arrived: the known domains and addresses
(org-wide and per sender) whose first_seen is before its received_at, and the sender's
volume counted from the stored messages received before it. With an unchanged policy
every recorded verdict comes out again.

Not reproducible (today's state is used): suppression list membership, the partners
and customers files, and for the sender's volume the states of earlier messages (one
held then and refused since no longer counts). Nor is the running guard's cache lag:
history learned in the moment between a message's inspection and its commit, or
learned by another instance or imported by `guard domains import` less than the
cache's 30 s before (new domains; new addresses are asked of the store each time).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from guard.accept.decide import Inspector
from guard.policy import Policy
from guard.store import AsyncEngine, knowledge, reads

HELD = ("delay", "confirm", "approve")


class HistoryAsOf:
    """The known domains and addresses as of a moment, moved forward message by message
    (replay goes in time order; a step back starts again from the beginning). Also the
    history a file seeds for `guard policy test --history` (no engine: the sender's
    volume is then the message's own recipients)."""

    def __init__(self, domains: list[tuple[str, str, float]],
                 addresses: list[tuple[str, str, float]],
                 engine: AsyncEngine | None = None) -> None:
        self._domain_rows = sorted(domains, key=lambda r: r[2])
        self._address_rows = sorted(addresses, key=lambda r: r[2])
        self._engine = engine
        self._reset()

    def _reset(self) -> None:
        self._at = -math.inf
        self._next_domain = self._next_address = 0
        self.domains: dict[str, set[str]] = {}
        self._addresses: set[str] = set()
        self._scoped: set[tuple[str, str]] = set()  # (address, scope)
        # frozensets are replaced only when something was added: the look-alike index
        # is cached on their identity
        self.all_domains: frozenset[str] = frozenset()
        self.addresses: frozenset[str] = frozenset()

    def at(self, moment: float) -> HistoryAsOf:
        """The history of everything first seen strictly before `moment`."""
        if moment < self._at:
            self._reset()
        self._at = moment
        new_domain = new_address = False
        rows = self._domain_rows
        while self._next_domain < len(rows) and rows[self._next_domain][2] < moment:
            domain, scope, _ = rows[self._next_domain]
            new_domain |= domain not in self.domains
            self.domains.setdefault(domain, set()).add(scope)
            self._next_domain += 1
        arows = self._address_rows
        while self._next_address < len(arows) and arows[self._next_address][2] < moment:
            address, scope, _ = arows[self._next_address]
            self._scoped.add((address, scope))
            if scope == knowledge.ORG:
                self._addresses.add(address)
                new_address = True
            self._next_address += 1
        if new_domain:
            self.all_domains = frozenset(self.domains)
        if new_address:
            self.addresses = frozenset(self._addresses)
        return self

    async def recipient_facts(self, scope: str, sender: str, keys: Sequence[str],
                              lowered: Sequence[str], internal: frozenset[str],
                              volume_cap: int) -> tuple[set[str], knowledge.Volume]:
        known = {k for k in keys if (k, scope) in self._scoped}
        if not volume_cap:
            return known, knowledge.Volume(0, 0)
        if self._engine is None or self._at == -math.inf:  # nothing before: its own
            return known, knowledge.Volume(len(lowered), len(lowered), volume_cap)
        async with self._engine.connect() as conn:  # the store's count before the moment
            volume = await knowledge.sender_volume(conn, sender, lowered, internal,
                                                   until=self._at, cap=volume_cap)
        return known, volume


@dataclass
class Replayed:
    id: str
    received_at: float
    before: str  # action
    after: str
    before_rules: tuple[str, ...]
    after_rules: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return (self.before, self.before_rules) != (self.after, self.after_rules)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "received_at": self.received_at,
                "before": {"action": self.before, "rules": list(self.before_rules)},
                "after": {"action": self.after, "rules": list(self.after_rules)}}


@dataclass
class ReplayReport:
    messages: list[Replayed] = field(default_factory=list)
    without_bytes: int = 0  # received in the window, bytes already purged (or never kept)
    per_rule: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, action)

    @property
    def before(self) -> Counter[str]:
        return Counter(m.before for m in self.messages)

    @property
    def after(self) -> Counter[str]:
        return Counter(m.after for m in self.messages)

    @property
    def changed(self) -> list[Replayed]:
        return [m for m in self.messages if m.changed]


def _recorded_rules(verdict: dict[str, Any]) -> tuple[str, ...]:
    reasons = verdict.get("reasons") or []
    # an administrator's hold adds a reason of its own; it was no rule's decision
    return tuple(sorted({str(r.get("rule")) for r in reasons
                         if isinstance(r, dict) and r.get("symbol") != "admin_hold"}))


async def replay(engine: AsyncEngine, inspector: Inspector, policy: Policy,
                 since: float) -> ReplayReport:
    report = ReplayReport()
    async with engine.connect() as conn:
        history = HistoryAsOf(await knowledge.domain_history(conn),
                              await knowledge.address_history(conn), engine)
        report.without_bytes = await reads.count_without_bytes(conn, since)
    last = ""
    while True:
        async with engine.connect() as conn:
            page = await reads.stored_page(conn, since, last)
        if not page:
            break
        for m in sorted(page, key=lambda m: m.received_at):
            if not m.listener:  # notices and DSNs: the guard's own mail
                continue
            ins = await inspector.inspect(policy, m.data, m.mail_from, m.rcpts, m.sender,
                                          history=history.at(m.received_at))
            v = ins.verdict
            report.messages.append(Replayed(
                m.id, m.received_at, m.received_action, v.action.value,
                _recorded_rules(m.verdict), tuple(sorted({r.rule for r in v.reasons}))))
            for rule in {r.rule for r in v.reasons}:
                action = next(r.action for r in v.reasons if r.rule == rule)
                report.per_rule[(rule, str(getattr(action, "value", action)))] += 1
        last = page[-1].id
    return report
