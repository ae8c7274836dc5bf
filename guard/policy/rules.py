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
from guard.policy.values import NOT_NEW_TEXT, WHOLE_BODY
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
        found = self.conditions.hits(index)
        return None if found is None else _one_reason_per_count(found)

    def explain(self, index: FindingIndex) -> Trace | None:
        """Why the conditions hold or not; None for a rule without conditions."""
        children = self.conditions.children
        if not children:
            return None
        # one condition: `match` says nothing, so the trace is the condition's own
        return children[0].explain(index) if len(children) == 1 else self.conditions.explain(index)


def _one_reason_per_count(found: list[Finding]) -> list[Finding]:
    """Without the body-part findings of a symbol the whole body's finding (WHOLE_BODY,
    a higher count over the same parts) is there for: one reason says it, not three."""
    whole = {_what(f) for f in found if f.where == WHOLE_BODY}
    if not whole:
        return found
    return [f for f in found if f.where == WHOLE_BODY or _what(f) not in whole
            or not (f.where == "body" or f.where.startswith(NOT_NEW_TEXT))]


def _what(f: Finding) -> tuple[str, object]:
    return f.symbol, f.evidence.get("rule")  # a keyword finding is its rule's


def _tag_mark(spec: Rule) -> TagMark | None:
    if spec.tag is not None:
        return TagMark(tuple(spec.tag.headers.items()), spec.tag.subject_prefix)
    if spec.action is Action.TAG:  # a tag rule without marks still says who tagged
        return TagMark((("X-Guard-Tag", spec.name),))
    return None
