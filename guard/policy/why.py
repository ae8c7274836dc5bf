"""Why each rule matched a message or not, for `guard policy test --explain`.

The same tests as engine.evaluate, run the slow way that keeps the words: each scope
test with its outcome (which recipient is a customer), the `except` test that excluded
the rule, and the tree of conditions with the branch of each all/any/not that held and
the findings that made it hold. Evaluation itself never builds any of this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guard.inspect.finding import Finding
from guard.policy.compiled import Policy
from guard.policy.conditions import Trace, index_findings
from guard.policy.engine import InternalTest, envelope
from guard.policy.scope import ScopeResult


@dataclass(frozen=True)
class RuleTrace:
    rule: str
    action: str
    scope: ScopeResult
    conditions: Trace | None  # None: not in scope (not tested), or no conditions

    @property
    def matched(self) -> bool:
        return self.scope.applies and (self.conditions is None or self.conditions.held)

    def to_json(self) -> dict[str, Any]:
        excluded = self.scope.excluded_by
        return {
            "rule": self.rule,
            "action": self.action,
            "matched": self.matched,
            "in_scope": self.scope.applies,
            "scope": [{"test": t, "held": held, "why": why} for t, held, why in self.scope.tests],
            "excluded_by": None if excluded is None else {"test": excluded[0],
                                                          "why": excluded[1]},
            "conditions": None if self.conditions is None else self.conditions.to_json(),
        }

    def lines(self) -> list[str]:
        if self.matched:
            head = "matches"
        elif self.scope.excluded_by is not None:
            head = "not in scope: excluded by except." + self.scope.excluded_by[0]
        elif not self.scope.applies:
            head = "not in scope"
        else:
            head = "in scope, conditions do not hold"
        out = [f"rule {self.rule} ({self.action}): {head}"]
        for test, held, why in self.scope.tests:
            out.append(f"    scope {test}: {'yes' if held else 'no'} ({why})")
        if self.scope.excluded_by is not None:
            test, why = self.scope.excluded_by
            out.append(f"    except {test}: yes ({why})")
        if self.conditions is not None:
            out += self.conditions.lines("    ")
        elif self.scope.applies:
            out.append("    (no conditions: every message in scope matches)")
        return out


def explain(
    policy: Policy,
    findings: Sequence[Finding],
    *,
    sender: str,
    rcpt_tos: Sequence[str],
    internal: InternalTest = None,
) -> list[RuleTrace]:
    """For every enabled rule, in file order: why it matched this message or not."""
    env = envelope(policy, findings, sender=sender, rcpt_tos=rcpt_tos, internal=internal)
    index = index_findings(findings)
    out: list[RuleTrace] = []
    for rule in policy.rules:
        scope = rule.scope.explain(env)
        conditions = rule.explain(index) if scope.applies else None
        out.append(RuleTrace(rule.name, rule.action.value, scope, conditions))
    return out
