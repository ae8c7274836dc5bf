"""Conditions: the findings that satisfy one test of a rule.

A condition names a finding symbol or family ("pii.my_number", "pii") and may ask for a
count, a share of the message's lines, a score, a place (`where`, `except_where`) and
evidence values; conditions group into `all`, `any` and `not` (Group). A rule matches
on the findings its conditions select (rules.CompiledRule); `explain` says which
branch held, for `guard policy test --explain`.

How to add a condition key (a new test on findings, like min_score): declare it on
schema.Condition (validated there; a value that must name something defined elsewhere
in the policy gets a check in checks.py), compile it in CompiledCondition.__init__ and
test it in `select`, and document it in policies/README.md ("Conditions"). A test on
the message rather than its findings (who sends, to where) belongs to a rule's scope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guard.inspect.finding import Finding
from guard.policy.evidence import evidence_form, evidence_has
from guard.policy.schema import AllOf, Condition, ConditionGroup, NotOf
from guard.policy.values import NEW_TEXT, NOT_NEW_TEXT, WHOLE_BODY

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


def _place_test(places: Sequence[str], excluding: bool = False
                ) -> Callable[[str], bool] | None:
    """A test of Finding.where: a prefix of it, or the named place new_text.

    The whole body (WHOLE_BODY, all its parts together) is not new text; and when the
    places are left out (`excluding`, except_where), leaving out any part of the body
    leaves out the whole body too, which holds that part."""
    if not places:
        return None
    prefixes = tuple(p for p in places if p != NEW_TEXT)
    new_text = NEW_TEXT in places
    whole = excluding and (new_text or any(
        p.startswith("body") or WHOLE_BODY.startswith(p) for p in prefixes))

    def test(where: str) -> bool:
        if where == WHOLE_BODY:
            return whole or (bool(prefixes) and where.startswith(prefixes))
        if prefixes and where.startswith(prefixes):
            return True
        return new_text and (where == "body" or (
            where.startswith("body.") and not where.startswith(NOT_NEW_TEXT)))

    return test


def share_of_lines(f: Finding) -> float | None:
    """The finding's count as a percentage of evidence.lines; None without lines."""
    lines = f.evidence.get("lines")
    if isinstance(lines, bool) or not isinstance(lines, int) or lines <= 0:
        return None
    return 100.0 * f.count / lines


class CompiledCondition:
    """One condition of a rule, compiled: `select` gives the findings that satisfy it."""

    __slots__ = ("evidence", "except_where", "label", "min_count", "min_percent", "min_score",
                 "symbol", "where")

    def __init__(self, spec: Condition) -> None:
        self.symbol = spec.symbol
        self.min_count = spec.min_count
        self.min_score = spec.min_score
        self.min_percent = spec.min_percent
        self.where = _place_test(spec.where)
        self.except_where = _place_test(spec.except_where, excluding=True)
        evidence = []
        for key, values in spec.evidence.items():
            form = evidence_form(key)
            evidence.append((key, frozenset(map(form, values)), form))
        self.evidence = tuple(evidence)
        self.label = describe(spec)

    def select(self, index: FindingIndex) -> list[Finding]:
        candidates = index.get(self.symbol)
        if not candidates:  # the common case: most rules name symbols the message lacks
            return []
        where, except_where, percent = self.where, self.except_where, self.min_percent
        return [
            f
            for f in candidates
            if f.count >= self.min_count
            and f.score >= self.min_score
            and (where is None or where(f.where))
            and (except_where is None or not except_where(f.where))
            and (percent is None or (share_of_lines(f) or 0.0) >= percent)
            and all(evidence_has(f.evidence.get(k), v, form) for k, v, form in self.evidence)
        ]

    def hits(self, index: FindingIndex) -> list[Finding] | None:
        return self.select(index) or None

    def explain(self, index: FindingIndex) -> Trace:
        found = self.select(index)
        return Trace(self.label, bool(found), found)


def describe(spec: Condition) -> str:
    """A condition as an admin would write it, short: "pii.records min_percent 30"."""
    parts = [spec.symbol]
    for key in ("min_count", "min_score", "min_percent", "where", "except_where", "evidence"):
        if key in spec.model_fields_set:
            value = getattr(spec, key)
            if isinstance(value, list):
                value = ", ".join(value)
            elif isinstance(value, dict):
                value = ", ".join(f"{k}={'|'.join(v)}" for k, v in value.items())
            parts.append(f"{key} {value}")
    return " ".join(parts)


@dataclass(frozen=True)
class Trace:
    """Why a condition (or a group of them) held or not, for `guard policy test --explain`."""

    label: str  # "pii.card min_score 0.9", "all", "any", "not"
    held: bool
    findings: list[Finding]  # the findings that made it hold (none for a `not`)
    children: tuple[Trace, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"test": self.label, "held": self.held,
                               "findings": [f"{f.symbol}@{f.where}" if f.where else f.symbol
                                            for f in self.findings]}
        if self.children:
            doc["children"] = [c.to_json() for c in self.children]
        return doc

    def lines(self, indent: str = "") -> list[str]:
        found = ""
        if self.findings and not self.children:
            found = ": " + ", ".join(_finding_words(f) for f in self.findings)
        out = [f"{indent}{'holds' if self.held else 'fails'}  {self.label}{found}"]
        for c in self.children:
            out += c.lines(indent + "    ")
        return out


def _finding_words(f: Finding) -> str:
    words = f"{f.symbol} x{f.count} score {f.score:.2f}"
    if f.where:
        words += f" at {f.where}"
    share = share_of_lines(f)
    if share is not None:
        words += f" ({f.count} of {f.evidence['lines']} lines, {share:.0f}%)"
    return words


def _union(into: list[Finding], seen: set[int], found: Iterable[Finding]) -> None:
    for f in found:
        if id(f) not in seen:  # one finding, one reason, even if two conditions hit
            seen.add(id(f))
            into.append(f)


class Group:
    """`all`, `any` or `not` over condition items; `hits` like CompiledCondition's:
    the findings that made it hold ([] for a `not`), or None when it does not hold."""

    __slots__ = ("children", "kind")

    def __init__(self, kind: str, children: Sequence[Node]) -> None:
        self.kind = kind  # "all" | "any" | "not"
        self.children = tuple(children)

    def hits(self, index: FindingIndex) -> list[Finding] | None:
        if self.kind == "not":
            return [] if self.children[0].hits(index) is None else None
        if len(self.children) == 1:
            return self.children[0].hits(index)
        out: list[Finding] = []
        seen: set[int] = set()
        held = False
        for child in self.children:
            found = child.hits(index)
            if found is None:
                if self.kind == "all":
                    return None
                continue
            held = True
            _union(out, seen, found)
        return out if held else None

    def explain(self, index: FindingIndex) -> Trace:
        children = tuple(c.explain(index) for c in self.children)
        if self.kind == "not":
            return Trace("not", not children[0].held, [], children)
        held = (all if self.kind == "all" else any)(c.held for c in children)
        out: list[Finding] = []
        if held:
            _union(out, set(), (f for c in children if c.held for f in c.findings))
        return Trace(self.kind, held, out, children)


Node = CompiledCondition | Group


def compile_item(item: Condition | ConditionGroup) -> Node:
    if isinstance(item, Condition):
        return CompiledCondition(item)
    if isinstance(item, NotOf):
        return Group("not", [compile_item(item.item)])
    return Group("all" if isinstance(item, AllOf) else "any",
                 [compile_item(i) for i in item.items])
