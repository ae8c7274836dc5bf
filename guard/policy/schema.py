"""The policy file schema: pydantic v2 models for what admins write in YAML.

The models validate one merged document (the main file plus its includes), each value
through the types in values.py. Checks that need the whole document (a rule naming an
unknown group, parameters that do not fit the rule's action) are in checks.py; the
loader maps both kinds of error back to file, line and column.

Names of keys are part of the admin-facing contract (policies/README.md): rename nothing
without a migration note.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, field_validator
from pydantic import Tag as FormTag  # (`Tag` is the policy's subject/header mark below)

from guard.policy.values import (
    AddressList,
    AddressPatternList,
    DomainList,
    DomainPatternList,
    FilePath,
    GroupName,
    GroupNameList,
    Minutes,
    Name,
    OneLine,
    PathList,
    Symbol,
    check_regex,
    one_or_many,
)


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

# A place in the policy document: keys and list indices, ("rules", 3, "action").
Loc = tuple[str | int, ...]

# an enhanced status code of a permanent failure, and the only headers a tag may add
_STATUS = re.compile(r"^5\.\d{1,3}\.\d{1,3}$")
_HEADER_NAME = re.compile(r"^X-[!-9;-~]+$", re.IGNORECASE)


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
    # A PPAP password mail (ppap.password) that no rule covers: hold_with_attachment =
    # held with the encrypted-attachment mail it follows while that one is held, refused
    # when that one was refused or cancelled; policy = only the rules decide.
    linked_password: Literal["hold_with_attachment", "policy"] = "hold_with_attachment"
    # how long after the attachment mail a password mail is linked to it
    linked_password_minutes: int = Field(default=60, ge=1, le=1440)
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
    fields: Annotated[list[KeywordField], BeforeValidator(one_or_many)] = [
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
    evidence: dict[str, Annotated[list[OneLine], BeforeValidator(one_or_many),
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
