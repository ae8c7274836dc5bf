"""Rules over findings -> one explainable verdict (rspamd-style: named symbols -> an action).

Every rule whose scope fits the message and whose conditions hold "matches". The strictest
action among the matching rules wins (pass < tag < bcc < drop < delay < confirm <
approve < reject); ties go to the rule written first. Every matching rule contributes its
reasons, so people see everything that was noticed, not only what decided. Tag and bcc
rules also add modifiers that apply to whatever action wins (except reject: nothing is
delivered).

Per-recipient actions: a drop rule takes out the recipients its findings name, and the
rules are matched again on the others (findings about the dropped ones no longer count);
no recipient left is a reject. A hold whose rules all `split` (or defaults.split_holds),
and whose findings all name recipients, becomes two parts (`Verdict.split`).

`evaluate` is pure and cheap: all patterns are compiled when the policy is loaded
(compiled.py, rules.py, conditions.py); the winner's parameters come from parameters.py.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from guard.inspect.finding import Finding
from guard.mail.addresses import address_key, domain_of, normalize_domain
from guard.mail.replytext import ascii_line, one_line
from guard.policy.compiled import Policy
from guard.policy.conditions import index_findings
from guard.policy.parameters import winner_parameters
from guard.policy.patterns import DomainSet
from guard.policy.rules import CompiledRule
from guard.policy.schema import HOLD_ACTIONS, Action
from guard.policy.scope import Envelope, suppression_by_recipient
from guard.policy.verdict import Dropped, LinkedTo, Modifiers, Reason, Split, TagMark, Verdict

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


def envelope(
    policy: Policy,
    findings: Sequence[Finding],
    *,
    sender: str,
    rcpt_tos: Sequence[str],
    internal: InternalTest = None,
) -> Envelope:
    """What the rules' scopes ask about this message, worked out once for all of them."""
    return Envelope(
        sender=address_key(sender),
        rcpt_tos=rcpt_tos,
        is_internal=_internal_test(policy, internal),
        groups_of=policy.groups_of,
        tables=policy.tables,
        lists=suppression_by_recipient(findings),
    )


@dataclass
class _Match:
    rule: CompiledRule | None  # None: an implicit default (uninspectable, linked password)
    name: str
    action: Action
    findings: list[Finding]
    link: LinkedTo | None = None  # defaults.linked_password: the zip mail it goes with


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
    rcpts = list(rcpt_tos)
    live = list(findings)
    dropped: dict[str, Dropped] = {}  # address_key → why
    drop_matches: list[_Match] = []
    # Drop rules take out the recipients their findings name; what concerned only those
    # recipients no longer counts, and the rules are matched again on the rest (fewer
    # recipients can change a scope). Each pass drops someone or ends: bounded.
    for _ in range(len(rcpts) + 1):
        matches = _matches(policy, live, rcpt_tos=rcpts, sender=sender, internal=is_internal)
        newly = _drops(matches, dropped, {address_key(r) for r in rcpts})
        if not newly:
            break
        drop_matches += [m for m in matches if m.action is Action.DROP
                         and any(f.recipients for f in m.findings)]
        rcpts = [r for r in rcpts if address_key(r) not in dropped]
        live = [f for f in live if not _only_about(f, dropped)]
        if not rcpts:
            return _all_dropped(policy, drop_matches, dropped, sender_address)
    verdict = _aggregate(policy, matches, sender_address, drop_matches, dropped)
    if verdict.held:
        return _maybe_split(policy, verdict, matches, live, rcpts, sender_address,
                            is_internal, dropped)
    return verdict


def _matches(policy: Policy, findings: Sequence[Finding], *, rcpt_tos: Sequence[str],
             sender: str, internal: Callable[[str], bool]) -> list[_Match]:
    """Every rule that fits the message and whose conditions hold (in policy order),
    and the uninspectable default when no rule took the uninspectable findings."""
    env = envelope(policy, findings, sender=sender, rcpt_tos=rcpt_tos, internal=internal)
    external = env.external

    index = index_findings(findings)
    matches: list[_Match] = []
    for rule in policy.rules:
        if not rule.scope.applies(env):
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
        matches.append(link)
    return matches


def _aggregate(policy: Policy, matches: list[_Match], sender_address: str,
               drop_matches: Sequence[_Match] = (),
               dropped: Mapping[str, Dropped] | None = None) -> Verdict:
    """The strictest action wins; every reason is kept; tag and bcc combine. A drop rule
    that took recipients out ranks like a modifier: the strictest action for the
    remaining recipients still wins over it."""
    dropped = dropped or {}
    # a drop rule left in the last pass took nobody out (its findings name no recipient)
    deciding = [m for m in matches if m.action is not Action.DROP]
    reasons = [reason for m in (*drop_matches, *matches) for reason in _reasons(m)]
    if not deciding and not dropped:
        return Verdict(action=Action.PASS, reasons=reasons)
    winner: _Match | None = deciding[0] if deciding else None
    for m in deciding[1:]:
        if winner is not None and m.action.rank > winner.action.rank:
            winner = m
    if winner is None or (dropped and winner.action.rank < Action.DROP.rank):
        return Verdict(action=Action.DROP, modifiers=_modifiers(matches), reasons=reasons,
                       rule=drop_matches[0].name if drop_matches else None,
                       dropped=tuple(dropped.values()))
    linked_to = None
    link = next((m for m in matches if m.link is not None), None)
    if link is not None and winner.action.rank <= link.action.rank:
        # a rule that asks for more (approve, reject) keeps the password mail to itself
        linked_to = link.link
        winner = link
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
        dropped=tuple(dropped.values()),
        linked_to=linked_to,
        **params,
    )


def _drops(matches: list[_Match], dropped: dict[str, Dropped], envelope: set[str]) -> bool:
    """Add the recipients the drop rules' findings name to `dropped` (envelope recipients
    only: an address only written in To/Cc gets nothing anyway); True if any was new."""
    new = False
    for m in matches:
        if m.action is not Action.DROP:
            continue
        for f in m.findings:
            for a in f.recipients:
                key = address_key(a)
                if key in envelope and key not in dropped:
                    message = m.rule.spec.message if m.rule is not None else None
                    dropped[key] = Dropped(
                        a, m.name, f.symbol,
                        f.reason_ja or (message.ja if message else ""),
                        f.reason_en or (message.en if message else ""))
                    new = True
    return new


def _only_about(f: Finding, recipients: Collection[str]) -> bool:
    """The finding concerns recipients only, and only these (address keys)."""
    return bool(f.recipients) and all(address_key(a) in recipients for a in f.recipients)


def _all_dropped(policy: Policy, drop_matches: list[_Match], dropped: dict[str, Dropped],
                 sender_address: str) -> Verdict:
    """No recipient is left: the message is refused at DATA, so the sender's client
    shows at once that nothing was sent and why (a 250 would say it was sent)."""
    first = drop_matches[0]
    spec = first.rule.spec if first.rule is not None else None
    params = winner_parameters(policy, spec, Action.REJECT, sender_address)
    if spec is None or spec.message is None:  # say why, not the generic refusal
        why = next(iter(dropped.values()))
        params.update(_refusal(
            policy, params["reject_status"],
            f"すべての宛先が除外されたため送信しません（{why.reason_ja or why.symbol}）",
            f"Not sent: every recipient was dropped ({why.reason_en or why.symbol})"))
    return Verdict(action=Action.REJECT,
                   reasons=[r for m in drop_matches for r in _reasons(m)],
                   rule=first.name, dropped=tuple(dropped.values()), **params)


def _splits(policy: Policy, m: _Match) -> bool:
    if m.rule is None:
        return False
    split = m.rule.spec.split
    return policy.defaults.split_holds if split is None else split


def _maybe_split(policy: Policy, verdict: Verdict, matches: list[_Match],
                 findings: list[Finding], rcpts: list[str], sender_address: str,
                 is_internal: Callable[[str], bool], dropped: dict[str, Dropped]) -> Verdict:
    """A hold whose holding rules all split, and whose findings all name recipients,
    becomes two parts: the recipients no rule holds get the mail now, the others wait.
    Otherwise the whole message is held; `no_split` says why when a rule asked."""
    holding = [m for m in matches if m.action in HOLD_ACTIONS]
    if not any(_splits(policy, m) for m in holding):
        return verdict

    def refused(why: str) -> Verdict:
        return replace(verdict, no_split=why)

    held: dict[str, None] = {}
    for m in holding:
        if not _splits(policy, m):
            return refused(f"rule {m.name} holds the whole message (split is off for it)")
        if m.rule is None or not m.findings:
            return refused(f"rule {m.name} holds the whole message (it names no recipient)")
        for f in m.findings:
            if not f.recipients:
                at = f" in {f.where}" if f.where else ""
                return refused(f"rule {m.name} holds for {f.symbol}{at}, which concerns "
                               "the whole message, not some recipients")
            held.update((address_key(a), None) for a in f.recipients)
    now = [r for r in rcpts if address_key(r) not in held]
    wait = [r for r in rcpts if address_key(r) in held]
    if not now:
        return refused("every recipient is held")
    gone = set(dropped)
    now_v = _aggregate(policy, _matches(
        policy, [f for f in findings if not _only_about(f, gone | set(held))],
        rcpt_tos=now, sender=sender_address, internal=is_internal), sender_address)
    if not now_v.delivered_now:
        return refused(f"the other recipients alone are still {now_v.action.value} "
                       f"(rule {now_v.rule})")
    now_keys = {address_key(r) for r in now}
    held_v = _aggregate(policy, _matches(
        policy, [f for f in findings if not _only_about(f, gone | now_keys)],
        rcpt_tos=wait, sender=sender_address, internal=is_internal),
        sender_address)
    if not held_v.held:
        return refused("the held recipients alone would not be held")
    return replace(verdict, split=Split(tuple(now), tuple(wait), now_v, held_v))


def _linked_password(policy: Policy, findings: Sequence[Finding], matches: list[_Match]
                     ) -> _Match | None:
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
            return _Match(None, LINKED_PASSWORD_RULE, Action.CONFIRM, [f],
                          LinkedTo(queue_id, "hold", state))
        if state in _STOPPED:
            return _Match(None, LINKED_PASSWORD_RULE, Action.REJECT, [f],
                          LinkedTo(queue_id, "refuse", state))
    return None


def _refusal_texts(policy: Policy, link: LinkedTo) -> dict[str, str]:
    """The refusal of a password mail says why: its attachment mail was not sent."""
    return _refusal(
        policy, policy.defaults.reject.status,
        f"このパスワードに対応する暗号化添付メール（{link.queue_id}）は送信されなかったため、"
        "このメールも送信しません。",
        f"The encrypted attachment mail this password belongs to ({link.queue_id}) was "
        "not sent, so this mail is not sent either.")


def _refusal(policy: Policy, status: str, ja: str, en: str) -> dict[str, str]:
    """A refusal's texts that say why: for people (ja, en) and as SMTP reply lines (ASCII,
    and with Japanese for SMTPUTF8 sessions, per defaults.language)."""
    utf8 = {"ja": ja, "en": en, "both": f"{ja} / {en}"}[policy.defaults.language]
    return {"message_ja": ja, "message_en": ascii_line(en),
            "reject_text": ascii_line(f"{status} {en}"),
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
