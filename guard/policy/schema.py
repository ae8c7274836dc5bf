"""The policy file schema: pydantic v2 models for what admins write in YAML.

The models validate one merged document (the main file plus its includes). Checks that
need the whole document (a rule naming an unknown group, parameters that do not fit the
rule's action) live in `semantic_issues`, which returns locations, not positions: the
loader maps both kinds of error back to file, line and column.

Names of keys are part of the admin-facing contract (policies/README.md): rename nothing
without a migration note.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    field_validator,
)
from pydantic import Tag as FormTag  # (`Tag` is the policy's subject/header mark below)

from guard.inspect.lookalike import KINDS as LOOKALIKE_KINDS
from guard.mail.addresses import InvalidAddress, address_key, ascii_domain

try:  # google-re2 is a project dependency; tolerate its absence in odd environments
    import re2 as _re2
except ImportError:  # pragma: no cover - exercised only without google-re2
    _re2 = None


class Action(StrEnum):
    """What happens to a message. Declared from most lenient to strictest."""

    PASS = "pass"
    TAG = "tag"
    BCC = "bcc"
    DELAY = "delay"
    CONFIRM = "confirm"
    APPROVE = "approve"
    REJECT = "reject"

    @property
    def rank(self) -> int:
        return _ACTION_RANK[self]


# The strictest action wins; the order is the declaration order above.
_ACTION_RANK: dict[Action, int] = {a: i for i, a in enumerate(Action)}
HOLD_ACTIONS = frozenset({Action.DELAY, Action.CONFIRM, Action.APPROVE})

Direction = Literal["outbound-external", "internal", "any"]
OnExpiry = Literal["send", "cancel"]
Language = Literal["ja", "en", "both"]
NewDomainScope = Literal["org", "sender"]
KeywordField = Literal["subject", "body", "filename", "attachment"]

# The special approver group: "the approvers of the sender's own group".
SENDER_GROUP = "@sender"

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
}

MAX_HOLD_MINUTES = 7 * 24 * 60  # a hold longer than a week is a forgotten message


# ---------------------------------------------------------------------------
# Small validated string types. Errors say what was expected, because admins read them.


def _one_or_many(value: Any) -> Any:
    # `senders: tanaka@example.co.jp` is as natural to write as a one-item list.
    return [value] if isinstance(value, str) else value


_GLOB_CHARS = frozenset("*?[]")


def normalise_domain(value: str, *, wildcard: bool = False) -> str:
    """A domain as written in a policy -> lower-case A-labels (guard.mail.addresses).

    A leading "@" is dropped; with `wildcard`, "*.example.co.jp" keeps its "*.".
    """
    text = unicodedata.normalize("NFKC", value).strip().removeprefix("@")
    prefix = ""
    if wildcard and text.startswith("*."):
        prefix, text = "*.", text[2:]
    expected = "a domain name like example.co.jp" + (" or *.example.co.jp" if wildcard else "")
    try:
        return prefix + ascii_domain(text)
    except InvalidAddress:
        raise ValueError(f"expected {expected}; got {value!r}") from None


def _domain(value: str) -> str:
    return normalise_domain(value)


def _domain_pattern(value: str) -> str:
    return normalise_domain(value, wildcard=True)


def _split_address(value: str, expected: str) -> tuple[str, str]:
    text = unicodedata.normalize("NFKC", value).strip()
    if text.count("@") != 1 or any(c.isspace() or ord(c) < 32 for c in text):
        raise ValueError(f"expected {expected}; got {value!r}")
    local, domain = text.split("@")
    if not local or not domain:
        raise ValueError(f"expected {expected}; got {value!r}")
    return local, domain


def _address_pattern(value: str) -> str:
    """A member or sender: an address, compared by its key, or a glob over keys."""
    expected = "an address or pattern like tanaka@example.co.jp or *@example.co.jp"
    local, domain = _split_address(value, expected)
    try:
        if not _GLOB_CHARS & set(domain):
            domain = ascii_domain(domain)
        elif domain.startswith("*.") and not _GLOB_CHARS & set(domain[2:]):
            domain = "*." + ascii_domain(domain[2:])
        else:
            domain = domain.lower()
    except InvalidAddress:
        raise ValueError(f"expected {expected}; got {value!r}") from None
    if _GLOB_CHARS & set(local + domain):
        return f"{local.lower()}@{domain}"  # matched against keys: lower-case too
    return address_key(f"{local}@{domain}")


def _address(value: str) -> str:
    """An approver: the address's key (guard.mail.addresses), which is how people are compared."""
    expected = "a mail address like tanaka@example.co.jp (no wildcards)"
    local, domain = _split_address(value, expected)
    if _GLOB_CHARS & set(value):
        raise ValueError(f"expected {expected}; got {value!r}")
    return address_key(f"{local}@{_domain(domain)}")


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_GROUP_NAME = re.compile(r"^[\w][\w.-]*$")
_SYMBOL = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
_STATUS = re.compile(r"^5\.\d{1,3}\.\d{1,3}$")
_HEADER_NAME = re.compile(r"^X-[!-9;-~]+$", re.IGNORECASE)


def _name(value: str) -> str:
    # Rule and keyword names appear in JSON verdicts, metrics labels and log lines.
    if not _NAME.match(value):
        raise ValueError(
            f"expected a name of ASCII letters, digits, '_', '-' or '.'; got {value!r}"
        )
    return value


def _group_name(value: str) -> str:
    if not _GROUP_NAME.match(value):
        raise ValueError(f"expected a group name without spaces; got {value!r}")
    return value


def _symbol(value: str) -> str:
    text = value.strip()
    if not _SYMBOL.match(text):
        raise ValueError(
            f"expected a finding symbol like pii.my_number or a family like pii; got {value!r}"
        )
    return text


def _one_line(value: str) -> str:
    # Marks and headers end up in mail headers: a CR or LF would inject new header lines.
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"expected text on one line without control characters; got {value!r}")
    return value


Name = Annotated[str, AfterValidator(_name)]
GroupName = Annotated[str, AfterValidator(_group_name)]
Domain = Annotated[str, AfterValidator(_domain)]
DomainPattern = Annotated[str, AfterValidator(_domain_pattern)]
Address = Annotated[str, AfterValidator(_address)]
AddressPattern = Annotated[str, AfterValidator(_address_pattern)]
Symbol = Annotated[str, AfterValidator(_symbol)]
OneLine = Annotated[str, AfterValidator(_one_line)]
Minutes = Annotated[int, Field(ge=1, le=MAX_HOLD_MINUTES)]
FilePath = Annotated[str, Field(min_length=1)]

DomainList = Annotated[list[Domain], BeforeValidator(_one_or_many)]
DomainPatternList = Annotated[list[DomainPattern], BeforeValidator(_one_or_many)]
AddressList = Annotated[list[Address], BeforeValidator(_one_or_many)]
AddressPatternList = Annotated[list[AddressPattern], BeforeValidator(_one_or_many)]
GroupNameList = Annotated[list[GroupName], BeforeValidator(_one_or_many)]
PathList = Annotated[list[FilePath], BeforeValidator(_one_or_many)]


class _Model(BaseModel):
    # Unknown keys are errors: a misspelt key silently ignored is a rule that never applies.
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------
# Sections


class Text(_Model):
    """A text in Japanese and English; either may be left out."""

    ja: str = ""
    en: str = ""


class DelayDefaults(_Model):
    minutes: Minutes = 5
    on_expiry: OnExpiry = "send"  # a delay is a pause, not a question: send when it ends


class ReviewDefaults(_Model):
    minutes: Minutes = 1440
    on_expiry: OnExpiry = "cancel"  # nobody said yes: do not send; the sender is told


class HoldDefaults(_Model):
    delay: DelayDefaults = DelayDefaults()
    confirm: ReviewDefaults = ReviewDefaults()
    # Two days, like Exchange moderation: approvers are away more often than senders.
    approve: ReviewDefaults = ReviewDefaults(minutes=2880)


class RejectDefaults(_Model):
    code: int = Field(default=550, ge=500, le=599)
    status: str = "5.7.1"
    message: Text = Text(
        ja="送信ポリシーによりこのメールの送信を拒否しました。",
        en="Message refused by the outbound mail policy.",
    )

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        if not _STATUS.match(value):
            raise ValueError(f"expected an enhanced status code like 5.7.1; got {value!r}")
        return value


class Defaults(_Model):
    internal_domains: DomainList = []
    company_name: str = ""
    language: Language = "both"
    new_domain_scope: NewDomainScope = "org"
    # Attachments that cannot be inspected (encrypted ZIP, PPAP, over the size limit) in
    # mail to outside addresses, when no rule says otherwise: the safe default holds.
    uninspectable: Action = Action.CONFIRM
    # Approvers for senders that belong to no group (rules with approver_group @sender).
    approver_group: GroupName | None = None
    hold: HoldDefaults = HoldDefaults()
    reject: RejectDefaults = RejectDefaults()


class StoreList(_Model):
    """A suppression list managed in the guard's store (`guard lists import`), not synced
    from a file: `withdrawn: {source: store}`."""

    source: Literal["store"]


def _source_kind(value: Any) -> str:
    return "store" if isinstance(value, dict) else "file"


# a file name, or {source: store}; errors come from the form written, not from both
SuppressionSource = Annotated[
    Annotated[FilePath, FormTag("file")] | Annotated[StoreList, FormTag("store")],
    Discriminator(_source_kind)]


class Lists(_Model):
    """Data files, relative to the YAML file that names them."""

    partners: FilePath | None = None
    customers: FilePath | None = None
    # list name -> CSV file of addresses (opt-out 利用停止, withdrawn 退会, ...), synced
    # into the store on every load; or {source: store}: managed by `guard lists import`
    suppression: dict[Name, SuppressionSource] = {}


class Keyword(_Model):
    name: Name
    pattern: str = Field(min_length=1)
    fields: Annotated[list[KeywordField], BeforeValidator(_one_or_many)] = [
        "subject",
        "body",
        "filename",
    ]
    description: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        check_regex(value)
        return value


def check_regex(pattern: str) -> None:
    """Accept only patterns that both Python `re` and RE2 compile.

    RE2 (google-re2) runs in linear time, so a keyword pattern cannot stall the relay;
    requiring the common subset keeps the detector free to use either engine.
    """
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"expected a valid regular expression; got {pattern!r} ({exc})") from None
    if _re2 is not None:
        options = _re2.Options()
        options.log_errors = False
        try:
            _re2.compile(pattern, options)
        except _re2.error as exc:
            detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise ValueError(
                "expected a regular expression RE2 supports (no backreferences or "
                f"look-around); got {pattern!r} ({detail})"
            ) from None


class Group(_Model):
    """A department: who is in it, and who approves its held mail."""

    label: Text = Text()
    members: AddressPatternList = []
    approvers: AddressList = []
    backup_approvers: AddressList = []
    escalate_after: Minutes | None = None  # minutes before backup approvers are asked
    approvals_required: Literal[1, 2] = 1


class Condition(_Model):
    """One test over the findings: some finding of this symbol, this big, here."""

    symbol: Symbol  # exact ("pii.my_number") or a family ("pii")
    min_count: int = Field(default=1, ge=1)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    where: str | None = None  # prefix of Finding.where: "attachment", "body", "subject"
    # evidence values the finding must have: {list: withdrawn}, {rule: [a, b]} (any of)
    evidence: dict[str, Annotated[list[OneLine], BeforeValidator(_one_or_many),
                                  Field(min_length=1)]] = {}


def _condition_shorthand(value: Any) -> Any:
    # `- pii.my_number` is short for `- symbol: pii.my_number`
    return {"symbol": value} if isinstance(value, str) else value


class Scope(_Model):
    """Which messages a rule looks at. Empty lists mean "no limit"."""

    direction: Direction = "any"
    senders: AddressPatternList = []
    groups: GroupNameList = []
    recipient_domains: DomainPatternList = []


ConditionItem = Annotated[Condition, BeforeValidator(_condition_shorthand)]


class Tag(_Model):
    """Marks added to a delivered message."""

    headers: dict[str, OneLine] = {}
    subject_prefix: Annotated[OneLine, Field(max_length=64)] = ""

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            # Only X- headers: a policy must not be able to rewrite From, To or Subject.
            if not _HEADER_NAME.match(name):
                raise ValueError(f"expected header names starting with X-; got {name!r}")
        return value


class Rule(_Model):
    name: Name
    description: str = ""
    enabled: bool = True
    scope: Scope = Scope()
    match: Literal["all", "any"] = "any"
    conditions: list[ConditionItem] = []
    action: Action
    # parameters; which ones apply depends on the action (checked in semantic_issues)
    delay_minutes: Minutes | None = None
    approver_group: str | None = None
    expiry_minutes: Minutes | None = None
    on_expiry: OnExpiry | None = None
    message: Text | None = None
    tag: Tag | None = None
    reject_code: int | None = Field(default=None, ge=500, le=599)
    reject_status: str | None = None

    @field_validator("reject_status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if value is not None and not _STATUS.match(value):
            raise ValueError(f"expected an enhanced status code like 5.7.1; got {value!r}")
        return value


class PolicyDoc(_Model):
    """The whole policy after includes are merged."""

    version: Literal[1] = 1
    name: str = ""
    include: PathList = []  # consumed by the loader; kept so the schema knows the key
    defaults: Defaults = Defaults()
    lists: Lists = Lists()
    keywords: list[Keyword] = []
    groups: dict[GroupName, Group] = {}
    rules: list[Rule] = []


# ---------------------------------------------------------------------------
# Whole-document checks


Loc = tuple[str | int, ...]


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
