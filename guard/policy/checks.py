"""Whole-document checks: what one key cannot tell alone.

A rule naming an unknown group, parameters that do not fit the rule's action, evidence
no detector reports: the models (schema.py) validate each value, these checks the
document as a whole. They return locations, not positions: the loader maps them to
file, line and column. A warning is reported and the policy still loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from guard.inspect.lookalike import KINDS as LOOKALIKE_KINDS
from guard.policy.schema import (
    HOLD_ACTIONS,
    SENDER_GROUP,
    Action,
    Condition,
    Loc,
    PolicyDoc,
    Rule,
    Scope,
)

# Finding families the detectors emit (guard/inspect/finding.py). A condition on another
# family is most likely a typo that would silently never match, so the loader warns.
KNOWN_FAMILIES = frozenset(
    {
        "pii",
        "new_domain",
        "lookalike",
        "suppressed",
        "visible_external",
        "external_orgs",
        "uninspectable",
        "customer_mismatch",
        "keyword",
        "malformed",
        "ppap",
    }
)

# What a condition's `evidence:` may test, per family: the evidence keys whose values are
# names an admin knows (a list, a keyword rule, a customer, a look-alike kind).
EVIDENCE_KEYS: dict[str, frozenset[str]] = {
    "suppressed": frozenset({"list"}),
    "keyword": frozenset({"rule"}),
    "customer_mismatch": frozenset({"named"}),
    "lookalike": frozenset({"kind", "resembles"}),
    "new_domain": frozenset({"domains"}),
    "external_orgs": frozenset({"domains"}),
    "ppap": frozenset({"state"}),
}


@dataclass(frozen=True)
class Issue:
    loc: Loc
    message: str
    warning: bool = False
    # another location the message refers to ("first defined at ..."); the loader
    # appends its file position
    other: Loc | None = None


_PARAM_ACTIONS: dict[str, frozenset[Action]] = {
    "delay_minutes": frozenset({Action.DELAY}),
    "approver_group": frozenset({Action.APPROVE}),
    "expiry_minutes": frozenset({Action.CONFIRM, Action.APPROVE}),
    "on_expiry": HOLD_ACTIONS,
    "reject_code": frozenset({Action.REJECT}),
    "reject_status": frozenset({Action.REJECT}),
    "tag": frozenset(Action) - {Action.REJECT},
}


def semantic_issues(doc: PolicyDoc) -> list[Issue]:
    return [*_group_issues(doc), *_rule_issues(doc), *_default_issues(doc), *_keyword_issues(doc)]


def _has_approvers(doc: PolicyDoc, group: str) -> bool:
    return group in doc.groups and bool(doc.groups[group].approvers)


def _unknown_group(doc: PolicyDoc, name: str) -> str:
    known = ", ".join(doc.groups) or "(no groups are defined)"
    return f"unknown group {name!r}; expected one of {known}"


def _group_issues(doc: PolicyDoc) -> Iterator[Issue]:
    for name, group in doc.groups.items():
        loc: Loc = ("groups", name)
        # a group without approvers is fine (it scopes rules); one that approves needs enough
        explicit = "approvals_required" in group.model_fields_set
        if (group.approvers or explicit) and group.approvals_required > len(group.approvers):
            yield Issue(
                (*loc, "approvals_required"),
                f"expected at least {group.approvals_required} approvers for "
                f"approvals_required {group.approvals_required}; "
                f"got {len(group.approvers)}",
            )
        if group.escalate_after is not None and not group.backup_approvers:
            yield Issue(
                (*loc, "escalate_after"),
                "escalate_after needs backup_approvers to escalate to",
            )


def _rule_issues(doc: PolicyDoc) -> Iterator[Issue]:
    first_use: dict[str, int] = {}
    for i, rule in enumerate(doc.rules):
        loc: Loc = ("rules", i)
        if rule.name in first_use:
            yield Issue(
                (*loc, "name"),
                f"duplicate rule name {rule.name!r}",
                other=("rules", first_use[rule.name], "name"),
            )
        else:
            first_use[rule.name] = i
        for param, actions in _PARAM_ACTIONS.items():
            if getattr(rule, param) is not None and rule.action not in actions:
                allowed = ", ".join(a.value for a in Action if a in actions)
                message = f"{param} applies to action {allowed}, not to {rule.action.value}"
                if param == "tag":
                    message = "tag has no effect on a rejected message (nothing is delivered)"
                yield Issue((*loc, param), message)
        for k, group in enumerate(rule.scope.groups):
            if group not in doc.groups:
                yield Issue((*loc, "scope", "groups", k), _unknown_group(doc, group))
        if rule.action is Action.APPROVE:
            yield from _approver_issues(doc, rule, loc)
        if rule.action is Action.REJECT and rule.message and not rule.message.en.isascii():
            yield Issue(
                (*loc, "message", "en"),
                "expected ASCII text: the English text goes into the SMTP reply",
            )
        for k, cond in enumerate(rule.conditions):
            family = cond.symbol.split(".", 1)[0]
            if family not in KNOWN_FAMILIES:
                yield Issue(
                    (*loc, "conditions", k, "symbol"),
                    f"no detector reports the family {family!r} "
                    f"(known: {', '.join(sorted(KNOWN_FAMILIES))}); this condition never matches",
                    warning=True,
                )
            yield from _evidence_issues(doc, cond, (*loc, "conditions", k), family)
        unscoped = rule.scope == Scope() and not rule.conditions
        if unscoped and rule.action.rank >= Action.DELAY.rank and rule.enabled:
            yield Issue(
                (*loc, "action"),
                f"this rule has no scope and no conditions: it will {rule.action.value} "
                "every message",
                warning=True,
            )


def _evidence_issues(doc: PolicyDoc, cond: Condition, loc: Loc, family: str
                     ) -> Iterator[Issue]:
    """A misspelt key or keyword name would make the rule silently never match."""
    keys = EVIDENCE_KEYS.get(family, frozenset())
    for key, values in cond.evidence.items():
        if key not in keys:
            known = ", ".join(sorted(keys)) or f"none: {family} has no evidence to test"
            yield Issue((*loc, "evidence", key, "[key]"),  # (positioned at the key)
                        f"unknown evidence {key!r} for {family} (known: {known})")
        elif (family, key) == ("keyword", "rule"):
            names = {kw.name for kw in doc.keywords}
            for v in values:
                if v not in names:
                    yield Issue((*loc, "evidence", key),
                                f"no keyword named {v!r}; expected one of "
                                f"{', '.join(sorted(names)) or '(no keywords are defined)'}")
        elif (family, key) == ("lookalike", "kind"):
            for v in values:
                if v not in LOOKALIKE_KINDS:
                    yield Issue((*loc, "evidence", key),
                                f"expected one of {', '.join(LOOKALIKE_KINDS)}; got {v!r}")
        elif (family, key) == ("suppressed", "list"):
            for v in values:
                if v not in doc.lists.suppression:
                    yield Issue((*loc, "evidence", key),
                                f"no list {v!r} in lists.suppression; fine if it is imported "
                                f"with `guard lists import` (declare it `{v}: {{source: "
                                "store}` to say so)", warning=True)


def _approver_issues(doc: PolicyDoc, rule: Rule, loc: Loc) -> Iterator[Issue]:
    group = rule.approver_group or SENDER_GROUP
    if group == SENDER_GROUP:
        if doc.defaults.approver_group is None:
            where = (*loc, "approver_group") if rule.approver_group else (*loc, "action")
            yield Issue(
                where,
                "approval by the sender's group needs defaults.approver_group "
                "for senders outside every group",
            )
    elif group not in doc.groups:
        yield Issue((*loc, "approver_group"), _unknown_group(doc, group) + f" or {SENDER_GROUP}")
    elif not doc.groups[group].approvers:
        yield Issue((*loc, "approver_group"), f"group {group!r} has no approvers")


def _default_issues(doc: PolicyDoc) -> Iterator[Issue]:
    defaults = doc.defaults
    fallback = defaults.approver_group
    if fallback is not None:
        if fallback not in doc.groups:
            yield Issue(("defaults", "approver_group"), _unknown_group(doc, fallback))
        elif not _has_approvers(doc, fallback):
            yield Issue(("defaults", "approver_group"), f"group {fallback!r} has no approvers")
    if defaults.uninspectable is Action.APPROVE and fallback is None:
        yield Issue(
            ("defaults", "uninspectable"),
            "uninspectable: approve needs defaults.approver_group for senders outside every group",
        )
    if defaults.uninspectable is Action.BCC:
        yield Issue(
            ("defaults", "uninspectable"),
            "expected one of pass, tag, delay, confirm, approve, reject; got 'bcc'",
        )
    if not defaults.reject.message.en.isascii():
        yield Issue(
            ("defaults", "reject", "message", "en"),
            "expected ASCII text: the English text goes into the SMTP reply",
        )


def _keyword_issues(doc: PolicyDoc) -> Iterator[Issue]:
    first_use: dict[str, int] = {}
    for i, keyword in enumerate(doc.keywords):
        if keyword.name in first_use:
            yield Issue(
                ("keywords", i, "name"),
                f"duplicate keyword name {keyword.name!r}",
                other=("keywords", first_use[keyword.name], "name"),
            )
        else:
            first_use[keyword.name] = i
