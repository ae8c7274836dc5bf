"""A rule compiled for evaluation: scope, conditions and the marks it adds.

The scope (direction, senders, groups, recipient domains) is tested by engine.evaluate,
which looks the sender's groups up once per message for all rules; `hits` tests the
conditions: any one of them (match: any) or every one (match: all).
"""

from __future__ import annotations

from guard.inspect.finding import Finding
from guard.policy.conditions import CompiledCondition, FindingIndex
from guard.policy.patterns import DomainSet, glob_pattern
from guard.policy.schema import Action, Rule
from guard.policy.verdict import TagMark


class CompiledRule:
    """One enabled rule, compiled: its scope as sets and patterns, its conditions, its marks."""

    __slots__ = (
        "action",
        "conditions",
        "direction",
        "domains",
        "groups",
        "match_all",
        "name",
        "rank",
        "senders",
        "spec",
        "tag",
    )

    def __init__(self, spec: Rule) -> None:
        self.spec = spec
        self.name = spec.name
        self.action = spec.action
        self.rank = spec.action.rank
        self.direction = spec.scope.direction
        self.senders = glob_pattern(spec.scope.senders)
        self.groups = frozenset(spec.scope.groups) or None
        domains = spec.scope.recipient_domains
        self.domains = DomainSet(domains) if domains else None
        self.match_all = spec.match == "all"
        self.conditions = tuple(CompiledCondition(c) for c in spec.conditions)
        self.tag = _tag_mark(spec)

    def hits(self, index: FindingIndex) -> list[Finding] | None:
        """The findings that make this rule match, or None if it does not match."""
        if not self.conditions:
            return []
        if len(self.conditions) == 1:
            return self.conditions[0].select(index) or None
        out: list[Finding] = []
        seen: set[int] = set()
        for cond in self.conditions:
            found = cond.select(index)
            if not found and self.match_all:
                return None
            for f in found:
                if id(f) not in seen:  # one finding, one reason, even if two conditions hit
                    seen.add(id(f))
                    out.append(f)
        return out or None


def _tag_mark(spec: Rule) -> TagMark | None:
    if spec.tag is not None:
        return TagMark(tuple(spec.tag.headers.items()), spec.tag.subject_prefix)
    if spec.action is Action.TAG:  # a tag rule without marks still says who tagged
        return TagMark((("X-Guard-Tag", spec.name),))
    return None
