"""Rules over findings -> one explainable verdict (rspamd-style: named symbols -> an action).

Every rule whose scope fits the message and whose conditions hold "matches". The strictest
action among the matching rules wins (pass < tag < bcc < delay < confirm < approve <
reject); ties go to the rule written first. Every matching rule contributes its reasons,
so people see everything that was noticed, not only what decided. Tag and bcc rules also
add modifiers that apply to whatever action wins (except reject: nothing is delivered).

`evaluate` is pure and cheap: all patterns are compiled when the policy is loaded
(compiled.py, rules.py, conditions.py); the winner's parameters come from parameters.py.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from guard.inspect.finding import Finding
from guard.mail.addresses import address_key, domain_of, normalize_domain
from guard.mail.replytext import ascii_line, one_line
from guard.policy.compiled import Policy
from guard.policy.conditions import index_findings
from guard.policy.parameters import winner_parameters
from guard.policy.patterns import DomainSet
from guard.policy.rules import CompiledRule
from guard.policy.schema import Action
from guard.policy.verdict import LinkedTo, Modifiers, Reason, TagMark, Verdict

UNINSPECTABLE_DEFAULT_RULE = "defaults.uninspectable"
LINKED_PASSWORD_RULE = "defaults.linked_password"
PPAP_SYMBOL = "ppap.password"
# states of the attachment mail: still held (the password mail waits with it), or
# stopped (the password mail is refused with it); any other state (queued, delivered,
# …): the password mail follows the rules like any mail
_WAITING = frozenset({"held"})
_STOPPED = frozenset({"rejected", "cancelled", "expired"})

# who is internal: a test of an address, internal domains, or None (the policy's)
InternalTest = Callable[[str], bool] | Collection[str] | None


def _internal_test(policy: Policy, internal: InternalTest) -> Callable[[str], bool]:
    if internal is None:
        return policy.is_internal
    if callable(internal):
        return internal
    if isinstance(internal, str):  # one domain, not a collection of characters
        internal = (internal,)
    domains = DomainSet(normalize_domain(d.strip().lstrip("@")) for d in internal)
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

    index = index_findings(findings)
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
    link = _linked_password(policy, findings, matches)
    if link is not None:
        matches.append(link[0])

    if not matches:
        return Verdict(action=Action.PASS)
    winner = matches[0]
    for m in matches[1:]:
        if m.action.rank > winner.action.rank:
            winner = m
    linked_to = None
    if link is not None and winner.action.rank <= link[0].action.rank:
        # a rule that asks for more (approve, reject) keeps the password mail to itself
        linked_to = link[1]
        winner = link[0]
    reasons = [reason for m in matches for reason in _reasons(m)]
    modifiers = Modifiers() if winner.action is Action.REJECT else _modifiers(matches)
    params = winner_parameters(policy, winner.rule.spec if winner.rule is not None else None,
                               winner.action, sender_address)
    if linked_to is not None and linked_to.effect == "refuse":
        params.update(_refusal_texts(policy, linked_to))
    elif linked_to is not None:  # the held notice and the page say what it waits for
        params["message_ja"] = ("このパスワードのメールは、暗号化添付メール"
                                f"（{linked_to.queue_id}）と一緒に送信または取り消しされます。")
        params["message_en"] = (f"This password mail is sent or cancelled together with the "
                                f"encrypted attachment mail {linked_to.queue_id}.")
    return Verdict(
        action=winner.action,
        modifiers=modifiers,
        reasons=reasons,
        rule=winner.name,
        linked_to=linked_to,
        **params,
    )


def _linked_password(policy: Policy, findings: Sequence[Finding], matches: list[_Match]
                     ) -> tuple[_Match, LinkedTo] | None:
    """defaults.linked_password: a password mail no rule covers goes with the attachment
    mail it follows — held while that one is held, refused when that one was stopped."""
    if policy.defaults.linked_password != "hold_with_attachment":
        return None
    covered = {id(f) for m in matches for f in m.findings}
    for f in findings:
        if f.symbol != PPAP_SYMBOL or id(f) in covered:
            continue
        state = str(f.evidence.get("state", ""))
        queue_id = str(f.evidence.get("queue_id", ""))
        if state in _WAITING:
            return (_Match(None, LINKED_PASSWORD_RULE, Action.CONFIRM, [f]),
                    LinkedTo(queue_id, "hold", state))
        if state in _STOPPED:
            return (_Match(None, LINKED_PASSWORD_RULE, Action.REJECT, [f]),
                    LinkedTo(queue_id, "refuse", state))
    return None


def _refusal_texts(policy: Policy, link: LinkedTo) -> dict[str, str]:
    """The refusal of a password mail says why: its attachment mail was not sent."""
    status = policy.defaults.reject.status
    ja = (f"このパスワードに対応する暗号化添付メール（{link.queue_id}）は送信されなかったため、"
          "このメールも送信しません。")
    en = (f"The encrypted attachment mail this password belongs to ({link.queue_id}) was "
          "not sent, so this mail is not sent either.")
    utf8 = {"ja": ja, "en": en, "both": f"{ja} / {en}"}[policy.defaults.language]
    return {"message_ja": ja, "message_en": en, "reject_text": ascii_line(f"{status} {en}"),
            "reject_text_utf8": one_line(f"{status} {utf8}")}


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
