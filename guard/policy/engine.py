"""Rules over findings → one explainable verdict (rspamd-style: named symbols → an action).

Every rule whose scope fits the message and whose conditions hold "matches". The strictest
action among the matching rules wins (pass < tag < bcc < delay < confirm < approve <
reject); ties go to the rule written first. Every matching rule contributes its reasons,
so people see everything that was noticed, not only what decided. Tag and bcc rules also
add modifiers that apply to whatever action wins (except reject: nothing is delivered).

`evaluate` is pure and cheap: all patterns are compiled when the policy is loaded.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.inspect.context import KeywordRule
from guard.inspect.domains import registrable_domain
from guard.inspect.finding import Finding
from guard.mail.addresses import address_key, domain_of, normalize_domain
from guard.policy.schema import (
    SENDER_GROUP,
    Action,
    Condition,
    Defaults,
    Group,
    PolicyDoc,
    Rule,
)

UNINSPECTABLE_DEFAULT_RULE = "defaults.uninspectable"
_SMTP_TEXT_MAX = 400  # an SMTP reply line is at most 512 octets with code and CRLF


# ---------------------------------------------------------------------------
# The verdict


@dataclass(frozen=True)
class TagMark:
    """Marks to add to the delivered message (headers are X- headers, one line each)."""

    headers: tuple[tuple[str, str], ...] = ()
    subject_prefix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"headers": dict(self.headers), "subject_prefix": self.subject_prefix}


@dataclass(frozen=True)
class Modifiers:
    tag: TagMark | None = None
    # move visible external addresses out of To/Cc (the rewrite is done elsewhere)
    bcc: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag.to_json() if self.tag else None, "bcc": self.bcc}


@dataclass(slots=True)
class Reason:
    """One finding that made one rule match (or the rule itself, for scope-only rules).

    Not frozen: a message with many findings builds dozens of these, and a frozen
    dataclass costs five times as much to build. Treat it as read-only all the same.
    """

    rule: str
    symbol: str
    where: str
    evidence: Mapping[str, Any]
    score: float
    count: int
    reason_ja: str
    reason_en: str
    recipients: tuple[str, ...]
    action: Action = Action.PASS  # the action of the rule this reason belongs to

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "action": self.action.value,
            "symbol": self.symbol,
            "where": self.where,
            "evidence": dict(self.evidence),
            "score": round(self.score, 3),
            "count": self.count,
            "recipients": list(self.recipients),
            "reason_ja": self.reason_ja,
            "reason_en": self.reason_en,
        }


@dataclass(frozen=True)
class Verdict:
    """What to do with one message, why, and the parameters of the winning rule."""

    action: Action
    modifiers: Modifiers = Modifiers()
    reasons: list[Reason] = field(default_factory=list)
    rule: str | None = None  # the winning rule; None when nothing matched
    delay_minutes: int | None = None
    approver_group: str | None = None
    approvers: tuple[str, ...] = ()  # the sender is never among them
    backup_approvers: tuple[str, ...] = ()
    escalate_after_minutes: int | None = None
    approvals_required: int | None = None
    expiry_minutes: int | None = None  # for delay: the delay itself
    on_expiry: str | None = None  # "send" | "cancel" (cancel always tells the sender)
    message_ja: str = ""
    message_en: str = ""
    reject_code: int | None = None
    reject_status: str | None = None  # enhanced status code, "5.7.1"
    reject_text: str | None = None  # ASCII, safe in any SMTP session: "5.7.1 ..."
    reject_text_utf8: str | None = None  # with Japanese, for SMTPUTF8 sessions

    @property
    def held(self) -> bool:
        return self.action in (Action.DELAY, Action.CONFIRM, Action.APPROVE)

    @property
    def delivered_now(self) -> bool:
        return self.action in (Action.PASS, Action.TAG, Action.BCC)

    def to_json(self) -> dict[str, Any]:
        # "action" and "reasons" are a stable contract (admins' scripts, CI checks).
        return {
            "action": self.action.value,
            "reasons": [r.to_json() for r in self.reasons],
            "modifiers": self.modifiers.to_json(),
            "rule": self.rule,
            "delay_minutes": self.delay_minutes,
            "approver_group": self.approver_group,
            "approvers": list(self.approvers),
            "backup_approvers": list(self.backup_approvers),
            "escalate_after_minutes": self.escalate_after_minutes,
            "approvals_required": self.approvals_required,
            "expiry_minutes": self.expiry_minutes,
            "on_expiry": self.on_expiry,
            "message_ja": self.message_ja,
            "message_en": self.message_en,
            "reject_code": self.reject_code,
            "reject_status": self.reject_status,
            "reject_text": self.reject_text,
        }


# ---------------------------------------------------------------------------
# Compiled policy


class _DomainSet:
    """Domains and their subdomains; "*.example.com" means subdomains only."""

    __slots__ = ("exact", "suffixes")

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        suffixes: list[str] = []
        for pattern in patterns:
            if pattern.startswith("*."):
                suffixes.append(pattern[1:])
            else:
                exact.add(pattern)
                suffixes.append("." + pattern)
        self.exact = frozenset(exact)
        self.suffixes = tuple(suffixes)

    def __contains__(self, domain: object) -> bool:
        return isinstance(domain, str) and (
            domain in self.exact or (bool(self.suffixes) and domain.endswith(self.suffixes))
        )


def _glob(patterns: Iterable[str]) -> re.Pattern[str] | None:
    parts = [fnmatch.translate(p) for p in patterns]
    return re.compile("|".join(parts)) if parts else None


def _index(findings: Sequence[Finding]) -> dict[str, list[Finding]]:
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


def _address_or_domain(value: str) -> str:
    return address_key(value) if "@" in value else normalize_domain(value)


def _same(value: str) -> str:
    return value


# Evidence values compared in one form on both sides: an organisation's registrable
# domain in A-labels ("Mail.例え.jp" finds "xn--r8jz45g.jp"), an address by its key or
# a domain in A-labels (guard.mail.addresses); names (lists, keyword rules, customers,
# kinds) as written.
_EVIDENCE_FORM: dict[str, Callable[[str], str]] = {
    "domains": registrable_domain, "resembles": _address_or_domain}


def _evidence_has(value: Any, wanted: frozenset[str], form: Callable[[str], str]) -> bool:
    """An evidence value (a name, or a list of names) holds one of `wanted`."""
    if isinstance(value, str):
        return form(value) in wanted
    if isinstance(value, list | tuple):
        return any(isinstance(v, str) and form(v) in wanted for v in value)
    return False


class _Condition:
    __slots__ = ("evidence", "min_count", "min_score", "symbol", "where")

    def __init__(self, spec: Condition) -> None:
        self.symbol = spec.symbol
        self.min_count = spec.min_count
        self.min_score = spec.min_score
        self.where = spec.where
        evidence = []
        for key, values in spec.evidence.items():
            form = _EVIDENCE_FORM.get(key, _same)
            evidence.append((key, frozenset(map(form, values)), form))
        self.evidence = tuple(evidence)

    def select(self, index: Mapping[str, list[Finding]]) -> list[Finding]:
        where = self.where
        return [
            f
            for f in index.get(self.symbol, ())
            if f.count >= self.min_count
            and f.score >= self.min_score
            and (where is None or f.where.startswith(where))
            and all(_evidence_has(f.evidence.get(k), v, form) for k, v, form in self.evidence)
        ]


class CompiledRule:
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
        self.senders = _glob(spec.scope.senders)
        self.groups = frozenset(spec.scope.groups) or None
        domains = spec.scope.recipient_domains
        self.domains = _DomainSet(domains) if domains else None
        self.match_all = spec.match == "all"
        self.conditions = tuple(_Condition(c) for c in spec.conditions)
        self.tag = _tag_mark(spec)

    def hits(self, index: Mapping[str, list[Finding]]) -> list[Finding] | None:
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


@dataclass(frozen=True, eq=False)
class Policy:
    """A validated, compiled policy. Immutable: reload builds a new one."""

    doc: PolicyDoc
    rules: tuple[CompiledRule, ...]
    source: Path | None = None  # the main policy file
    files: tuple[Path, ...] = ()  # YAML files read: the main file and its includes
    partners_file: Path | None = None
    customers_file: Path | None = None
    suppression_lists: Mapping[str, Path] = field(default_factory=dict)  # synced from files
    store_lists: frozenset[str] = frozenset()  # managed by `guard lists import`
    digest: str = ""  # sha256 of the YAML files, to record which policy decided
    warnings: tuple[str, ...] = ()
    internal_domains: frozenset[str] = frozenset()
    keywords: tuple[KeywordRule, ...] = ()
    _internal: _DomainSet = field(default_factory=lambda: _DomainSet(()), repr=False)
    _exact_members: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _pattern_members: tuple[tuple[str, re.Pattern[str]], ...] = field(default=(), repr=False)
    _group_cache: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    @property
    def defaults(self) -> Defaults:
        return self.doc.defaults

    @property
    def groups(self) -> Mapping[str, Group]:
        return self.doc.groups

    @property
    def new_domain_scope(self) -> str:
        return self.doc.defaults.new_domain_scope

    @property
    def language(self) -> str:
        return self.doc.defaults.language

    @property
    def data_files(self) -> tuple[Path, ...]:
        files = [self.partners_file, self.customers_file, *self.suppression_lists.values()]
        return tuple(f for f in files if f is not None)

    @property
    def watched_files(self) -> tuple[Path, ...]:
        """Files whose change means "reload": the YAML files and the lists they name."""
        return (*self.files, *self.data_files)

    def is_internal(self, address: str) -> bool:
        return domain_of(address) in self._internal

    def groups_of(self, sender: str) -> tuple[str, ...]:
        """The sender's groups: exact member entries first, then patterns, in file order."""
        address = address_key(sender)
        cached = self._group_cache.get(address)
        if cached is not None:
            return cached
        found = list(self._exact_members.get(address, ()))
        for name, pattern in self._pattern_members:
            if name not in found and pattern.match(address):
                found.append(name)
        result = tuple(found)
        if len(self._group_cache) > 10_000:  # bounded: senders are few, but be safe
            self._group_cache.clear()
        self._group_cache[address] = result
        return result

    def group_of(self, sender: str) -> str | None:
        groups = self.groups_of(sender)
        return groups[0] if groups else None


def compile_policy(
    doc: PolicyDoc,
    *,
    source: Path | None = None,
    files: tuple[Path, ...] = (),
    partners_file: Path | None = None,
    customers_file: Path | None = None,
    suppression_lists: Mapping[str, Path] | None = None,
    store_lists: frozenset[str] = frozenset(),
    digest: str = "",
    warnings: tuple[str, ...] = (),
) -> Policy:
    exact: dict[str, list[str]] = {}
    patterns: list[tuple[str, re.Pattern[str]]] = []
    for name, group in doc.groups.items():
        globs = [m for m in group.members if set("*?[") & set(m)]
        for member in group.members:
            if member not in globs and name not in exact.setdefault(member, []):
                exact[member].append(name)
        compiled = _glob(globs)
        if compiled is not None:
            patterns.append((name, compiled))
    return Policy(
        doc=doc,
        rules=tuple(CompiledRule(r) for r in doc.rules if r.enabled),
        source=source,
        files=files,
        partners_file=partners_file,
        customers_file=customers_file,
        suppression_lists=dict(suppression_lists or {}),
        store_lists=store_lists,
        digest=digest,
        warnings=warnings,
        internal_domains=frozenset(doc.defaults.internal_domains),
        keywords=tuple(KeywordRule(k.name, k.pattern, tuple(k.fields)) for k in doc.keywords),
        _internal=_DomainSet(doc.defaults.internal_domains),
        _exact_members={k: tuple(v) for k, v in exact.items()},
        _pattern_members=tuple(patterns),
    )


def default_policy() -> Policy:
    """Pass everything: used when no policy is configured."""
    doc = PolicyDoc(defaults=Defaults(uninspectable=Action.PASS))
    return compile_policy(doc, digest="default")


# ---------------------------------------------------------------------------
# Evaluation


InternalTest = Callable[[str], bool] | Collection[str] | None


def _internal_test(policy: Policy, internal: InternalTest) -> Callable[[str], bool]:
    if internal is None:
        return policy.is_internal
    if callable(internal):
        return internal
    if isinstance(internal, str):  # one domain, not a collection of characters
        internal = (internal,)
    domains = _DomainSet(normalize_domain(d.strip().lstrip("@")) for d in internal)
    return lambda address: domain_of(address) in domains


@dataclass
class _Match:
    rule: CompiledRule | None  # None: the implicit uninspectable default
    name: str
    action: Action
    findings: list[Finding]


def evaluate(
    policy: Policy,
    findings: Sequence[Finding],
    *,
    sender: str,
    rcpt_tos: Sequence[str],
    internal: InternalTest = None,
) -> Verdict:
    """Decide what happens to one message.

    `internal` tells internal recipients from external ones: a callable taking an
    address, or a collection of internal domains (subdomains included); by default the
    policy's defaults.internal_domains.
    """
    is_internal = _internal_test(policy, internal)
    sender_address = address_key(sender)
    external = any(not is_internal(r) for r in rcpt_tos)
    rcpt_domains = [domain_of(r) for r in rcpt_tos]
    sender_groups: tuple[str, ...] | None = None

    index = _index(findings)
    matches: list[_Match] = []
    for rule in policy.rules:
        if rule.direction == "outbound-external" and not external:
            continue
        if rule.direction == "internal" and external:
            continue
        if rule.senders is not None and not rule.senders.match(sender_address):
            continue
        if rule.groups is not None:
            if sender_groups is None:
                sender_groups = policy.groups_of(sender_address)
            if rule.groups.isdisjoint(sender_groups):
                continue
        if rule.domains is not None and not any(d in rule.domains for d in rcpt_domains):
            continue
        hits = rule.hits(index)
        if hits is not None:
            matches.append(_Match(rule, rule.name, rule.action, hits))

    default = policy.defaults.uninspectable
    if external and default is not Action.PASS:
        # The safe default holds uninspectable mail to outside addresses unless a rule
        # that fits this message has already said what to do with it.
        covered = {id(f) for m in matches for f in m.findings}
        loose = [
            f
            for f in findings
            if (f.symbol == "uninspectable" or f.symbol.startswith("uninspectable."))
            and id(f) not in covered
        ]
        if loose:
            matches.append(_Match(None, UNINSPECTABLE_DEFAULT_RULE, default, loose))

    if not matches:
        return Verdict(action=Action.PASS)
    winner = matches[0]
    for m in matches[1:]:
        if m.action.rank > winner.action.rank:
            winner = m
    reasons = [reason for m in matches for reason in _reasons(m)]
    modifiers = Modifiers() if winner.action is Action.REJECT else _modifiers(matches)
    return Verdict(
        action=winner.action,
        modifiers=modifiers,
        reasons=reasons,
        rule=winner.name,
        **_parameters(policy, winner, sender_address),
    )


def _reasons(m: _Match) -> Iterable[Reason]:
    spec = m.rule.spec if m.rule is not None else None
    message = spec.message if spec is not None and spec.message is not None else None
    if not m.findings:  # a scope-only rule: the rule itself is the reason
        yield Reason(
            rule=m.name,
            symbol="",
            where="",
            evidence={},
            score=1.0,
            count=1,
            reason_ja=message.ja if message else "",
            reason_en=message.en if message else (spec.description if spec else ""),
            recipients=(),
            action=m.action,
        )
        return
    for f in m.findings:
        yield Reason(
            rule=m.name,
            symbol=f.symbol,
            where=f.where,
            evidence=f.evidence,
            score=f.score,
            count=f.count,
            reason_ja=f.reason_ja or (message.ja if message else ""),
            reason_en=f.reason_en or (message.en if message else ""),
            recipients=f.recipients,
            action=m.action,
        )


def _modifiers(matches: list[_Match]) -> Modifiers:
    headers: dict[str, str] = {}
    prefixes: list[str] = []
    tagged = False
    for m in matches:
        tag = m.rule.tag if m.rule is not None else None
        if tag is None:
            continue
        tagged = True
        for name, value in tag.headers:
            headers.setdefault(name, value)  # the first rule that sets a header wins
        if tag.subject_prefix and tag.subject_prefix not in prefixes:
            prefixes.append(tag.subject_prefix)
    mark = TagMark(tuple(headers.items()), "".join(prefixes)) if tagged else None
    return Modifiers(tag=mark, bcc=any(m.action is Action.BCC for m in matches))


def _ascii_line(text: str) -> str:
    cleaned = "".join(c if 32 <= ord(c) < 127 else " " for c in text)
    return " ".join(cleaned.split())[:_SMTP_TEXT_MAX]


def _one_line(text: str) -> str:
    cleaned = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)
    return " ".join(cleaned.split())[:_SMTP_TEXT_MAX]


def _parameters(policy: Policy, winner: _Match, sender: str) -> dict[str, Any]:
    spec = winner.rule.spec if winner.rule is not None else None
    defaults = policy.defaults
    action = winner.action
    out: dict[str, Any] = {}
    if spec is not None and spec.message is not None:
        out["message_ja"], out["message_en"] = spec.message.ja, spec.message.en
    if action is Action.DELAY:
        minutes = (spec and spec.delay_minutes) or defaults.hold.delay.minutes
        out["delay_minutes"] = out["expiry_minutes"] = minutes
        out["on_expiry"] = (spec and spec.on_expiry) or defaults.hold.delay.on_expiry
    elif action in (Action.CONFIRM, Action.APPROVE):
        hold = defaults.hold.confirm if action is Action.CONFIRM else defaults.hold.approve
        out["expiry_minutes"] = (spec and spec.expiry_minutes) or hold.minutes
        out["on_expiry"] = (spec and spec.on_expiry) or hold.on_expiry
        if action is Action.APPROVE:
            out.update(_approvers(policy, spec, sender))
    elif action is Action.REJECT:
        message = spec.message if spec is not None and spec.message is not None else None
        ja = (message.ja if message else "") or defaults.reject.message.ja
        en = (message.en if message else "") or defaults.reject.message.en
        status = (spec and spec.reject_status) or defaults.reject.status
        out["message_ja"], out["message_en"] = ja, en
        out["reject_code"] = (spec and spec.reject_code) or defaults.reject.code
        out["reject_status"] = status
        out["reject_text"] = _ascii_line(f"{status} {en}")
        utf8 = {"ja": ja, "en": en, "both": f"{ja} / {en}"}[defaults.language]
        out["reject_text_utf8"] = _one_line(f"{status} {utf8}")
    return out


def _approvers(policy: Policy, spec: Rule | None, sender: str) -> dict[str, Any]:
    """Who approves: the named group, or the sender's group, never the sender alone."""
    wanted = (spec.approver_group if spec is not None else None) or SENDER_GROUP
    candidates: list[str] = []
    if wanted == SENDER_GROUP:
        candidates += [g for g in policy.groups_of(sender) if policy.groups[g].approvers]
    else:
        candidates.append(wanted)
    fallback = policy.defaults.approver_group
    if fallback is not None and fallback not in candidates:
        candidates.append(fallback)
    for name in candidates:
        group = policy.groups[name]
        approvers = tuple(a for a in group.approvers if a != sender)
        backups = tuple(a for a in group.backup_approvers if a != sender)
        required = group.approvals_required
        if len(approvers) >= required:
            return {
                "approver_group": name,
                "approvers": approvers,
                "backup_approvers": backups,
                "escalate_after_minutes": group.escalate_after if backups else None,
                "approvals_required": required,
            }
        if len(approvers) + len(backups) >= required:
            # the head of department's own mail: the deputies approve it
            return {
                "approver_group": name,
                "approvers": approvers + backups,
                "approvals_required": required,
            }
    # The loader refuses policies where this can happen for lack of configuration; it
    # remains possible when the sender is the only approver everywhere. The hold then
    # expires (cancel, with notice) rather than letting the sender approve themselves.
    return {"approver_group": None, "approvals_required": 1}
