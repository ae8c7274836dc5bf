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
    OneLineList,
    PathList,
    PhoneList,
    PlaceList,
    PostalAddressList,
    PostalCodeList,
    RecipientClassList,
    Symbol,
    check_regex,
    one_or_many,
)


class Action(StrEnum):
    """What happens to a message. Declared from most lenient to strictest."""

    PASS = "pass"
    TAG = "tag"
    BCC = "bcc"
    # the recipients the rule's findings name are taken out; the rest get the mail
    DROP = "drop"
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


class OwnContactsDecl(_Model):
    """The organisation's own contact data: not personal data where it appears (a
    signature, a newsletter footer, the branch-office list). The internal domains and
    the company name count without being repeated here."""

    names: OneLineList = []  # company and branch names: a line holding one is a signature's
    addresses: PostalAddressList = []  # compared by prefix: "東京都千代田区丸の内1-2-3"
    phones: PhoneList = []  # phone and fax numbers
    postal_codes: PostalCodeList = []
    domains: DomainList = []


class Defaults(_Model):
    internal_domains: DomainList = []
    company_name: str = ""
    language: Language = "both"
    new_domain_scope: NewDomainScope = "org"
    # new_address: first message to this address from anyone (org) or from this sender
    new_address_scope: NewDomainScope = "org"
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
    own_contacts: OwnContactsDecl = OwnContactsDecl()
    # hold rules hold only the recipients their findings name (a rule's `split` wins)
    split_holds: bool = False


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
    # the organisation's own contact data, one office a row (name, postal_code,
    # address, phone, fax, domain): added to defaults.own_contacts
    own_contacts: FilePath | None = None
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
    # count >= this share of the finding's evidence.lines (pii.records, pii.people_list)
    min_percent: float | None = Field(default=None, gt=0.0, le=100.0)
    # prefixes of Finding.where ("attachment", "body", "subject") or new_text; any of them
    where: PlaceList = []
    except_where: PlaceList = []  # prefixes (or new_text) a finding must not be at
    # evidence values the finding must have: {list: withdrawn}, {rule: [a, b]} (any of)
    evidence: dict[str, Annotated[list[OneLine], BeforeValidator(one_or_many),
                                  Field(min_length=1)]] = {}


def _condition_shorthand(value: Any) -> Any:
    # `- pii.my_number` is short for `- symbol: pii.my_number`
    return {"symbol": value} if isinstance(value, str) else value


class AllOf(_Model):
    """`{all: [...]}`: every condition in the list holds."""

    items: list[ConditionItem] = Field(alias="all", min_length=1)


class AnyOf(_Model):
    """`{any: [...]}`: at least one condition in the list holds."""

    items: list[ConditionItem] = Field(alias="any", min_length=1)


def _one_condition(value: Any) -> Any:
    if isinstance(value, list):
        raise ValueError(
            "expected one condition; for several write {not: {any: [...]}} (none of them "
            "holds) or {not: {all: [...]}} (not all of them hold)"
        )
    return value


class NotOf(_Model):
    """`{not: <condition>}`: the condition does not hold (no finding satisfies it)."""

    item: Annotated[ConditionItem, BeforeValidator(_one_condition)] = Field(alias="not")


# The keys that make a condition item a group; a group holds nothing else.
GROUP_KEYS = ("all", "any", "not")


def _condition_form(value: Any) -> str:
    if isinstance(value, dict):
        for key in GROUP_KEYS:
            if key in value:
                return "{" + key + "}"
    elif isinstance(value, AllOf | AnyOf | NotOf):
        return "{" + {AllOf: "all", AnyOf: "any", NotOf: "not"}[type(value)] + "}"
    return "{condition}"


# A condition item: a condition, or a group of them. The forms' tags ("{all}") are not
# keys; the error explainer leaves them out of the places it shows.
ConditionItem = Annotated[
    Annotated[Condition, BeforeValidator(_condition_shorthand), FormTag("{condition}")]
    | Annotated[AllOf, FormTag("{all}")]
    | Annotated[AnyOf, FormTag("{any}")]
    | Annotated[NotOf, FormTag("{not}")],
    Discriminator(_condition_form),
]
ConditionGroup = AllOf | AnyOf | NotOf


class ScopeExcept(_Model):
    """`scope.except`: the rule does not apply when any one of these tests holds."""

    senders: AddressPatternList = []
    groups: GroupNameList = []
    recipient_domains: DomainPatternList = []
    recipient_is: RecipientClassList = []
    every_external_recipient_is: RecipientClassList = []


class Scope(_Model):
    """Which messages a rule looks at. Empty lists mean "no limit"."""

    direction: Direction = "any"
    senders: AddressPatternList = []
    groups: GroupNameList = []
    recipient_domains: DomainPatternList = []
    # some recipient is one of these: customer, partner, partner:KIND, list:NAME
    recipient_is: RecipientClassList = []
    # there are external recipients and each of them is one of these
    every_external_recipient_is: RecipientClassList = []
    except_: ScopeExcept | None = Field(default=None, alias="except")


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
    # hold only the recipients the findings name; the others get the mail now
    split: bool | None = None

    @field_validator("reject_status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if value is not None and not _STATUS.match(value):
            raise ValueError(f"expected an enhanced status code like 5.7.1; got {value!r}")
        return value


for _model in (AllOf, AnyOf, NotOf, Rule):
    _model.model_rebuild()


class Alerts(_Model):
    """Who is told of severe events at once (a first report by mail) and who gets the
    daily digest of the others. When mail goes out is the guard's [alerts] setting."""

    # always get the first reports: the privacy officer, the security desk
    officers: AddressList = []
    # group name -> addresses told of severe events of that group's senders (too)
    by_group: dict[GroupName, AddressList] = {}
    # first reports name organisations and domains; full addresses only when true
    show_addresses: bool = False
    # the daily digest of the less severe events (holds, near misses, look-alikes, ...)
    digest_to: AddressList = []
    # how many people's records make a mail to an outside recipient severe
    min_records: int = Field(default=10, ge=1)


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
    alerts: Alerts = Alerts()
