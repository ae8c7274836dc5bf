"""One report from the store: read its events (store/reports.py), count them (pure
modules beside this one). The CLI and the web page call these, so both show the same
figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo

from guard.policy import Policy
from guard.report import nearmiss, rules
from guard.report.periods import Period
from guard.store import AsyncConnection
from guard.store import reports as R


@dataclass(frozen=True)
class PolicyFacts:
    """What a report needs from the current policy: its rule names in order, and the
    department (first group) of a sender."""

    rules: tuple[str, ...]
    group_of: Callable[[str], str | None]

    @classmethod
    def of(cls, policy: Policy) -> PolicyFacts:
        """Every rule of the policy (disabled ones too: they are still the policy's),
        and a department as people know it: "営業部 / Sales (sales)"."""
        return cls(tuple(r.name for r in policy.doc.rules), policy.department_of)


async def near_miss_report(conn: AsyncConnection, period: Period, facts: PolicyFacts,
                           tz: tzinfo, *, names: bool = False) -> nearmiss.NearMissReport:
    events = await R.near_misses(conn, period.since, period.until)
    return nearmiss.build(period, events, facts.group_of, tz, names=names)


async def rules_report(conn: AsyncConnection, period: Period, facts: PolicyFacts, *,
                       min_holds: int = rules.MIN_HOLDS) -> rules.RulesReport:
    msgs = await R.messages_with_audit(conn, period.since, period.until)
    return rules.build(period, facts.rules, msgs, min_holds=min_holds)
