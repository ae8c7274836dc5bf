"""Recipient detectors: new domains and addresses, look-alikes, suppression lists,
exposure in To/Cc, the sender's recent volume.

Decisions are made on the SMTP envelope (who really receives the mail); the To/Cc
headers only matter for what recipients can see of each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

from guard.inspect.context import InspectContext
from guard.inspect.domains import is_free_mail, is_internal, registrable_domain
from guard.inspect.finding import Finding
from guard.inspect.lookalike import build_index
from guard.mail.addresses import (
    address_form,
    address_key,
    domain_of,
    domain_to_unicode,
    in_domain_set,
)
from guard.mail.digests import canonical_digest

__all__ = [
    "EnvelopeView",
    "HeaderView",
    "detect_external_orgs",
    "detect_lookalike",
    "detect_new_address",
    "detect_new_domain",
    "detect_sender_volume",
    "detect_suppressed",
    "detect_visible_external",
    "mask_address",
]

# How many masked addresses a visible_external finding shows as a sample.
_SAMPLE = 5


class EnvelopeView(Protocol):
    """The part of guard.mail.message.MessageView these detectors read."""

    @property
    def rcpt_tos(self) -> Sequence[str]: ...


class HeaderView(Protocol):
    @property
    def to_addrs(self) -> Sequence[str]: ...

    @property
    def cc_addrs(self) -> Sequence[str]: ...


def _distinct(addresses: Sequence[str]) -> list[tuple[str, str]]:
    """(as given, comparison key) for each distinct address, in first-seen order."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for a in addresses:
        c = address_key(a)
        if c and c not in seen:
            seen.add(c)
            out.append((a, c))
    return out


def _external(view: EnvelopeView, ctx: InspectContext) -> list[tuple[str, str]]:
    return [(a, c) for a, c in _distinct(view.rcpt_tos) if not is_internal(c, ctx)]


def _shown(domain: str) -> str:
    """A domain for people: "例え.jp (xn--r8jz45g.jp)" for IDN, otherwise as is."""
    u = domain_to_unicode(domain)
    return u if u == domain else f"{u} ({domain})"


def mask_address(address: str) -> str:
    """"tanaka@abc.co.jp" -> "ta***@abc.co.jp": enough to recognise, not to harvest."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address[:2] + "***"
    return f"{local[:2]}***@{domain}"


@lru_cache(maxsize=8)
def _orgs(domains: frozenset[str]) -> frozenset[str]:
    # Registrable domains of a context set, once per set: should a store record
    # "mail.abc.co.jp", the organisation abc.co.jp still counts as known.
    return frozenset(registrable_domain(d) for d in domains if d.strip())


def detect_new_domain(view: EnvelopeView, ctx: InspectContext) -> list[Finding]:
    """One finding per external organisation never mailed before (not a partner either)."""
    known = _orgs(ctx.known_domains)
    by_org: dict[str, list[str]] = {}
    for given, addr in _external(view, ctx):
        domain = domain_of(addr)
        org = registrable_domain(domain)
        if not org or org in known or in_domain_set(domain, ctx.partner_domains):
            continue
        by_org.setdefault(org, []).append(given)
    findings = []
    for org, rcpts in by_org.items():
        evidence: dict[str, object] = {"domains": [org]}
        if domain_to_unicode(org) != org:
            evidence["domains_unicode"] = [domain_to_unicode(org)]
        findings.append(Finding(
            "new_domain",
            score=1.0,
            where="rcpt",
            evidence=evidence,
            recipients=tuple(rcpts),
            reason_ja=f"初めての送信先ドメイン {_shown(org)}",
            reason_en=f"first message to {_shown(org)}",
        ))
    return findings


def detect_new_address(view: EnvelopeView, ctx: InspectContext) -> list[Finding]:
    """One finding per external address never mailed before (in the scope the policy
    chose): once anyone wrote to gmail.com the domain is known, each private address
    still is new the first time. A new domain's addresses are new too."""
    findings = []
    for given, addr in _external(view, ctx):
        if addr in ctx.known_recipients or "@" not in addr:
            continue
        org = registrable_domain(domain_of(addr))
        shown = address_form(given)
        findings.append(Finding(
            "new_address",
            score=1.0,
            where="rcpt",
            evidence={"domains": [org], "address": mask_address(shown)},
            recipients=(given,),
            reason_ja=f"初めての送信先アドレス {shown}",
            reason_en=f"first message to {shown}",
        ))
    return findings


def detect_sender_volume(view: EnvelopeView, ctx: InspectContext) -> list[Finding]:
    """sender_volume.hour and .day: distinct external recipients this sender wrote to
    in the last hour and 24 hours, this message's included (counted by the store, as
    Exchange Online's outbound recipient limits count). The policy sets the limit."""
    hour, day = ctx.sender_volume
    if not day:
        return []
    cap = ctx.sender_volume_cap
    findings = []
    for window, n, ja, en in (("hour", hour, "直近1時間", "hour"),
                              ("day", day, "直近24時間", "24 hours")):
        if not n:
            continue
        # the store stops counting past the largest count a rule asks for
        at_least = bool(cap) and n >= cap
        findings.append(Finding(
            f"sender_volume.{window}",
            score=1.0,
            count=n,
            where="rcpt",
            evidence={"recipients": n, **({"at_least": True} if at_least else {})},
            reason_ja=(f"この送信者は{ja}に社外の {n} 宛先{'以上' if at_least else ''}"
                       "へ送信しています"),
            reason_en=(f"this sender wrote to {'at least ' if at_least else ''}{n} external "
                       f"recipients in the last {en}"),
        ))
    return findings


_KIND_JA = {
    "skeleton": "紛らわしい文字",
    "mixed_script": "文字種の混在",
    "tld_variant": "末尾のドメインだけが違う",
}
_KIND_EN = {
    "skeleton": "look-alike characters",
    "mixed_script": "mixed alphabets",
    "tld_variant": "only the ending differs",
}


def detect_lookalike(view: EnvelopeView, ctx: InspectContext) -> list[Finding]:
    """Recipients that resemble, but are not, an address or organisation we know.

    Internal recipients are skipped (mail to a colleague does not leave the company),
    and so is any address already delivered to.
    """
    index = build_index(ctx.known_addresses, ctx.all_known_domains or ctx.known_domains,
                        ctx.partner_domains, ctx.internal_domains)
    findings = []
    for given, addr in _external(view, ctx):
        m = index.match(addr)
        if m is None:
            continue
        if m.kind == "edit_distance":
            how_ja, how_en = f"{m.distance}文字違い", f"{m.distance} character(s) different"
        else:
            how_ja, how_en = _KIND_JA[m.kind], _KIND_EN[m.kind]
        # the A-label form of the recipient shows a homograph for what it is
        shown = address_form(given)
        findings.append(Finding(
            "lookalike",
            score=m.score,
            where="rcpt",
            evidence={"address": shown, "resembles": m.resembles, "kind": m.kind,
                      "distance": m.distance},
            recipients=(given,),
            reason_ja=f"送信先 {shown} は既知の {m.resembles} に似ています（{how_ja}）。"
                      f"{m.resembles} の間違いではありませんか",
            reason_en=f"{shown} looks like {m.resembles} ({how_en}): "
                      f"did you mean {m.resembles}?",
        ))
    return findings


def detect_suppressed(view: EnvelopeView, ctx: InspectContext) -> list[Finding]:
    """Envelope recipients on a suppression list (opt-out, withdrawn members, …).

    Lists hold keyed digests, not addresses; the recipient's key (guard.mail.addresses) is
    the one guard.policy.datafiles.parse_address_csv makes of imported rows, so the digests meet.
    """
    if not ctx.suppression:
        return []
    findings = []
    for given, addr in _distinct(view.rcpt_tos):
        digest = canonical_digest(ctx.suppression_key, addr)
        for name in sorted(ctx.suppression):
            if digest in ctx.suppression[name]:
                findings.append(Finding(
                    "suppressed",
                    score=1.0,
                    where="rcpt",
                    evidence={"list": name},
                    recipients=(given,),
                    reason_ja=f"送信停止リスト「{name}」に載っている宛先です: {given}",
                    reason_en=f"{given} is on the suppression list '{name}'",
                ))
    return findings


def detect_visible_external(view: HeaderView, ctx: InspectContext) -> list[Finding]:
    """Distinct external addresses that every recipient can see in To/Cc (n ≥ 2).

    The count is reported as is; the policy decides from which count to hold or to
    move them to Bcc. The sample is masked: evidence is stored and shown on pages.
    """
    visible = [(a, c) for a, c in _distinct([*view.to_addrs, *view.cc_addrs])
               if "@" in c and not is_internal(c, ctx)]
    n = len(visible)
    if n < 2:
        return []
    orgs = {registrable_domain(domain_of(c)) for _, c in visible}
    in_to = {address_key(a) for a in view.to_addrs}
    return [Finding(
        "visible_external",
        score=1.0,
        count=n,
        where="header:to" if any(c in in_to for _, c in visible) else "header:cc",
        evidence={"addresses_sample": [mask_address(c) for _, c in visible[:_SAMPLE]],
                  "domains": len(orgs)},
        reason_ja=f"To/Cc に社外のアドレスが {n} 件見えています（{len(orgs)} 組織）",
        reason_en=f"{n} external addresses from {len(orgs)} organisation(s) are visible in To/Cc",
    )]


def detect_external_orgs(view: EnvelopeView, ctx: InspectContext) -> list[Finding]:
    """Several external organisations in one message (n ≥ 2 distinct registrable domains).
    Private addresses at free-mail providers are people, not organisations: not counted."""
    by_org: dict[str, list[str]] = {}
    for given, addr in _external(view, ctx):
        if is_free_mail(domain_of(addr)):
            continue
        by_org.setdefault(registrable_domain(domain_of(addr)), []).append(given)
    by_org.pop("", None)
    n = len(by_org)
    if n < 2:
        return []
    shown = [_shown(o) for o in sorted(by_org)]
    return [Finding(
        "external_orgs",
        score=1.0,
        count=n,
        where="rcpt",
        evidence={"domains": sorted(by_org)},
        recipients=tuple(r for rcpts in by_org.values() for r in rcpts),
        reason_ja=f"社外の {n} 組織に同時に送ろうとしています: {', '.join(shown[:5])}",
        reason_en=f"one message to {n} external organisations: {', '.join(shown[:5])}",
    )]
