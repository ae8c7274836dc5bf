"""Conditions: the findings that satisfy one test of a rule.

A condition names a finding symbol or family ("pii.my_number", "pii") and may ask for a
count, a score, a place (`where`) and evidence values; a rule matches on the findings
its conditions select (rules.CompiledRule).

How to add a condition key (a new test on findings, like min_score): declare it on
schema.Condition (validated there; a value that must name something defined elsewhere
in the policy gets a check in checks.py), compile it in CompiledCondition.__init__ and
test it in `select`, and document it in policies/README.md ("Conditions"). A test on
the message rather than its findings (who sends, to where) belongs to a rule's scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from guard.inspect.finding import Finding
from guard.policy.evidence import evidence_form, evidence_has
from guard.policy.schema import Condition

# findings by symbol and by every family prefix (index_findings)
FindingIndex = Mapping[str, list[Finding]]


def index_findings(findings: Sequence[Finding]) -> dict[str, list[Finding]]:
    """Findings by symbol and by every family prefix: "pii.table" under "pii" too.

    Built once per message, so each condition looks up its candidates instead of
    scanning every finding (20 rules x 20 findings stays well under the budget).
    """
    index: dict[str, list[Finding]] = {}
    for f in findings:
        name = f.symbol
        while True:
            index.setdefault(name, []).append(f)
            cut = name.rfind(".")
            if cut < 0:
                break
            name = name[:cut]
    return index


class CompiledCondition:
    """One condition of a rule, compiled: `select` gives the findings that satisfy it."""

    __slots__ = ("evidence", "min_count", "min_score", "symbol", "where")

    def __init__(self, spec: Condition) -> None:
        self.symbol = spec.symbol
        self.min_count = spec.min_count
        self.min_score = spec.min_score
        self.where = spec.where
        evidence = []
        for key, values in spec.evidence.items():
            form = evidence_form(key)
            evidence.append((key, frozenset(map(form, values)), form))
        self.evidence = tuple(evidence)

    def select(self, index: FindingIndex) -> list[Finding]:
        where = self.where
        return [
            f
            for f in index.get(self.symbol, ())
            if f.count >= self.min_count
            and f.score >= self.min_score
            and (where is None or f.where.startswith(where))
            and all(evidence_has(f.evidence.get(k), v, form) for k, v, form in self.evidence)
        ]
