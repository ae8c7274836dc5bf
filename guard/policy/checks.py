"""Whole-document checks: what one key cannot tell alone.

A rule naming an unknown group, parameters that do not fit the rule's action, evidence
no detector reports: the models (schema.py) validate each value, these checks the
document as a whole. They return locations, not positions: the loader maps them to
file, line and column. A warning is reported and the policy still loads.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from guard.inspect.envelope import BULK_PRECEDENCE, CLIENT_NAMES
from guard.inspect.lookalike import KINDS as LOOKALIKE_KINDS
from guard.policy.schema import (
    HOLD_ACTIONS,
    SENDER_GROUP,
    Action,
    AllOf,
    Condition,
    ConditionGroup,
    Loc,
    NotOf,
    PolicyDoc,
    Rule,
    Scope,
    ScopeExcept,
)
from guard.policy.scope import RecipientTables
from guard.policy.values import NEW_TEXT

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
        "customer_to_noncustomer",
        "new_address",
        "sender_volume",
        "keyword",
        "malformed",
        "bulk",
        "envelope",
        "client",
        "ppap",
    }
)

# What a condition's `evidence:` may test, per family: the evidence keys whose values are
# names an admin knows (a list, a keyword rule, a customer, a look-alike kind).
EVIDENCE_KEYS: dict[str, frozenset[str]] = {
    "suppressed": frozenset({"list"}),
    "keyword": frozenset({"rule"}),
    "customer_mismatch": frozenset({"named"}),
    "customer_to_noncustomer": frozenset({"named"}),
    "lookalike": frozenset({"kind", "resembles"}),
    "new_domain": frozenset({"domains"}),
    "new_address": frozenset({"domains"}),
    "external_orgs": frozenset({"domains"}),
    "client": frozenset({"name"}),
    "bulk": frozenset({"value"}),  # bulk.precedence: bulk, list or junk
    "ppap": frozenset({"state"}),
}


# Symbols whose evidence says how many lines (or table rows) there were at their place,
# which is what a condition's min_percent is a share of.
SYMBOLS_WITH_LINES = frozenset({"pii.records", "pii.people_list"})

# How deep all/any/not may nest: deeper is unreadable, and "(A and B) or C" needs two.
MAX_DEPTH = 4


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
    "split": HOLD_ACTIONS,
}


def semantic_issues(doc: PolicyDoc) -> list[Issue]:
    return [*_group_issues(doc), *_rule_issues(doc), *_default_issues(doc), *_keyword_issues(doc),
            *_alert_issues(doc)]


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
        for scope, sloc in _scopes(rule, loc):
            for k, group in enumerate(scope.groups):
                if group not in doc.groups:
                    yield Issue((*sloc, "groups", k), _unknown_group(doc, group))
        if rule.action is Action.APPROVE:
            yield from _approver_issues(doc, rule, loc)
        if rule.action is Action.REJECT and rule.message and not rule.message.en.isascii():
            yield Issue(
                (*loc, "message", "en"),
                "expected ASCII text: the English text goes into the SMTP reply",
            )
        for cond, cloc, depth in walk_conditions(rule.conditions, (*loc, "conditions")):
            if isinstance(cond, Condition):
                yield from _condition_issues(doc, cond, cloc, negated="not" in cloc)
            elif depth == MAX_DEPTH + 1:
                yield Issue(cloc, f"conditions nested {depth} groups deep; at most {MAX_DEPTH} "
                                  "(all, any, not inside one another): write them flatter")
        unscoped = rule.scope == Scope() and not rule.conditions
        if unscoped and rule.action.rank >= Action.DELAY.rank and rule.enabled:
            yield Issue(
                (*loc, "action"),
                f"this rule has no scope and no conditions: it will {rule.action.value} "
                "every message",
                warning=True,
            )


def walk_conditions(items: Sequence[Condition | ConditionGroup], loc: Loc
                    ) -> Iterator[tuple[Condition | ConditionGroup, Loc, int]]:
    """Every condition and group with its place; depth counts the groups it is in or is."""
    for k, item in enumerate(items):
        yield from _walk(item, (*loc, k), 0)


def _walk(item: Condition | ConditionGroup, loc: Loc, depth: int
          ) -> Iterator[tuple[Condition | ConditionGroup, Loc, int]]:
    if isinstance(item, Condition):
        yield item, loc, depth
        return
    yield item, loc, depth + 1
    if isinstance(item, NotOf):  # `not` holds one item, at ("not",)
        yield from _walk(item.item, (*loc, "not"), depth + 1)
        return
    key = "all" if isinstance(item, AllOf) else "any"
    for k, sub in enumerate(item.items):
        yield from _walk(sub, (*loc, key, k), depth + 1)


def _condition_issues(doc: PolicyDoc, cond: Condition, loc: Loc, negated: bool = False
                      ) -> Iterator[Issue]:
    family = cond.symbol.split(".", 1)[0]
    if family not in KNOWN_FAMILIES and negated:
        # never matching under `not` is matching every message: not a harmless typo
        yield Issue(
            (*loc, "symbol"),
            f"no detector reports the family {family!r} "
            f"(known: {', '.join(sorted(KNOWN_FAMILIES))}); under not, this condition "
            "holds for every message",
        )
    elif family not in KNOWN_FAMILIES:
        yield Issue(
            (*loc, "symbol"),
            f"no detector reports the family {family!r} "
            f"(known: {', '.join(sorted(KNOWN_FAMILIES))}); this condition never matches",
            warning=True,
        )
    for key in ("where", "except_where"):
        for k, place in enumerate(getattr(cond, key)):
            if not known_place(place):
                yield Issue((*loc, key, k), _unknown_place(place))
    if cond.min_percent is not None and not any(
            s == cond.symbol or s.startswith(cond.symbol + ".") for s in SYMBOLS_WITH_LINES):
        yield Issue((*loc, "min_percent"),
                    f"{cond.symbol} findings carry no line count, so min_percent never holds; "
                    f"it applies to {', '.join(sorted(SYMBOLS_WITH_LINES))}", warning=True)
    yield from _evidence_issues(doc, cond, loc, family)


# The places findings are at (Finding.where), as a condition names them: exactly, or
# as the start of an open-ended one ("attachment:list.xlsx", "header:to").
KNOWN_PLACES = ("subject", "body", "body.quoted", "body.signature", "body.disclaimer",
                "body.all", NEW_TEXT, "attachment", "rcpt", "header", "headers", "message",
                "part")
_OPEN_PLACES = ("attachment:", "header:", "part:")


def known_place(place: str) -> bool:
    """Whether a `where` value names a place some finding can be at (`where` is a
    prefix test, so "attachment" covers every attachment)."""
    return place in KNOWN_PLACES or place.startswith(_OPEN_PLACES)


def _unknown_place(place: str) -> str:
    close = difflib.get_close_matches(place, KNOWN_PLACES, n=1, cutoff=0.6)
    if f"body.{place}" in KNOWN_PLACES:
        close = [f"body.{place}"]
    hint = f"; did you mean {close[0]}?" if close else ""
    return (f"unknown place {place!r}: no finding is there, so this never holds{hint} "
            f"(places: {', '.join(KNOWN_PLACES)}, attachment:NAME, header:NAME)")


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
        elif (family, key) == ("bulk", "value"):
            for v in values:
                if v.lower() not in BULK_PRECEDENCE:
                    yield Issue((*loc, "evidence", key),
                                f"expected one of {', '.join(sorted(BULK_PRECEDENCE))}; "
                                f"got {v!r}")
        elif (family, key) == ("client", "name"):
            for v in values:
                if v.lower() not in CLIENT_NAMES:
                    yield Issue((*loc, "evidence", key),
                                f"expected one of {', '.join(CLIENT_NAMES)}; got {v!r}")
        elif (family, key) == ("suppressed", "list"):
            for v in values:
                if v not in doc.lists.suppression:
                    yield Issue((*loc, "evidence", key),
                                f"no list {v!r} in lists.suppression; fine if it is imported "
                                f"with `guard lists import` (declare it `{v}: {{source: "
                                "store}` to say so)", warning=True)


def _scopes(rule: Rule, loc: Loc) -> Iterator[tuple[Scope | ScopeExcept, Loc]]:
    yield rule.scope, (*loc, "scope")
    if rule.scope.except_ is not None:
        yield rule.scope.except_, (*loc, "scope", "except")


def uses_recipient_classes(doc: PolicyDoc) -> bool:
    """Whether a rule's scope says what a recipient is (the tables must be read)."""
    return any(s.recipient_is or s.every_external_recipient_is
               for i, rule in enumerate(doc.rules) for s, _ in _scopes(rule, ("rules", i)))


def recipient_class_issues(doc: PolicyDoc, tables: RecipientTables) -> Iterator[Issue]:
    """A class that needs a file the policy does not name is an error (it would never
    hold); a partner kind no row of partners.csv has, or a list not declared, a warning
    (the file may gain the kind; the list may be imported with `guard lists import`)."""
    kinds = tables.kinds
    for i, rule in enumerate(doc.rules):
        for scope, sloc in _scopes(rule, ("rules", i)):
            for key in ("recipient_is", "every_external_recipient_is"):
                for k, cls in enumerate(getattr(scope, key)):
                    here: Loc = (*sloc, key, k)
                    if cls in ("customer", "partner") and getattr(doc.lists, cls + "s") is None:
                        yield Issue(here, f"{cls} needs lists.{cls}s (the {cls}s.csv file)")
                    elif cls.startswith("partner:"):
                        kind = cls.removeprefix("partner:")
                        if doc.lists.partners is None:
                            yield Issue(here, f"{cls} needs lists.partners (the partners.csv "
                                              "file, with a kind column)")
                        elif kind not in kinds:
                            known = ", ".join(sorted(kinds)) or "none: add a kind column"
                            yield Issue(here, f"no partner in partners.csv has the kind {kind!r} "
                                              f"(kinds there: {known}); this never holds "
                                              "until one does", warning=True)
                    elif cls.startswith("list:"):
                        name = cls.removeprefix("list:")
                        if name not in doc.lists.suppression:
                            yield Issue(here, f"no list {name!r} in lists.suppression; fine "
                                              "if it is imported with `guard lists import` "
                                              f"(declare it `{name}: {{source: store}}` to "
                                              "say so)", warning=True)


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
    if defaults.uninspectable in (Action.BCC, Action.DROP):
        yield Issue(
            ("defaults", "uninspectable"),
            "expected one of pass, tag, delay, confirm, approve, reject; "
            f"got {defaults.uninspectable.value!r}",
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


def _alert_issues(doc: PolicyDoc) -> Iterator[Issue]:
    """A department named in alerts.by_group must exist (a typo would leave its alerts
    unsent); a digest or department list without officers is allowed, but warned of:
    severe events would reach nobody who watches the whole company."""
    alerts = doc.alerts
    for name in alerts.by_group:
        if name not in doc.groups:
            yield Issue(("alerts", "by_group", name, "[key]"), _unknown_group(doc, name))
    # alert mail is plain ASCII SMTP (no SMTPUTF8): a non-ASCII address would get none
    lists: list[tuple[Loc, list[str]]] = [
        (("alerts", "officers"), alerts.officers), (("alerts", "digest_to"), alerts.digest_to),
        *((("alerts", "by_group", name), addrs) for name, addrs in alerts.by_group.items())]
    for loc, addrs in lists:
        for i, addr in enumerate(addrs):
            if not addr.isascii():
                yield Issue((*loc, i), "expected an address in ASCII (alert mail cannot be "
                            f"sent to a non-ASCII address); got {addr!r}")
    if (alerts.by_group or alerts.digest_to) and not alerts.officers:
        yield Issue(("alerts", "officers"),
                    "alerts has no officers: severe events of senders outside the listed "
                    "groups alert nobody", warning=True)
