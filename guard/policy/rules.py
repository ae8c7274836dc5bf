"""A rule compiled for evaluation: scope, conditions and the marks it adds.

The scope (scope.CompiledScope) is tested against the message's Envelope, built once
per message for all rules; `hits` tests the conditions: any one of them (match: any)
or every one (match: all), each a condition or a group (all, any, not).
"""

from __future__ import annotations

from guard.inspect.finding import Finding
from guard.policy.conditions import FindingIndex, Group, Trace, compile_item
from guard.policy.schema import Action, Rule
from guard.policy.scope import CompiledScope
from guard.policy.verdict import TagMark


class CompiledRule:
    """One enabled rule, compiled: its scope, its conditions as one group, its marks."""

    __slots__ = ("action", "conditions", "name", "rank", "scope", "spec", "tag")

    def __init__(self, spec: Rule) -> None:
        self.spec = spec
        self.name = spec.name
        self.action = spec.action
        self.rank = spec.action.rank
        self.scope = CompiledScope(spec.scope)
        # `match: any|all` over the list is a group like any other
        self.conditions = Group("all" if spec.match == "all" else "any",
                                [compile_item(c) for c in spec.conditions])
        self.tag = _tag_mark(spec)

    def hits(self, index: FindingIndex) -> list[Finding] | None:
        """The findings that make this rule match, or None if it does not match."""
        if not self.conditions.children:
            return []
        return self.conditions.hits(index)

    def explain(self, index: FindingIndex) -> Trace | None:
        """Why the conditions hold or not; None for a rule without conditions."""
        children = self.conditions.children
        if not children:
            return None
        # one condition: `match` says nothing, so the trace is the condition's own
        return children[0].explain(index) if len(children) == 1 else self.conditions.explain(index)


def _tag_mark(spec: Rule) -> TagMark | None:
    if spec.tag is not None:
        return TagMark(tuple(spec.tag.headers.items()), spec.tag.subject_prefix)
    if spec.action is Action.TAG:  # a tag rule without marks still says who tagged
        return TagMark((("X-Guard-Tag", spec.name),))
    return None
