"""What a hold is, read from the stored verdict only (never from the policy files).

The verdict was written when the message was accepted; the policy may have changed
since. Reading only the verdict keeps a hold's meaning fixed for its whole life and
keeps this package independent of inspection and policy. Missing or null keys take
the safe defaults: an unknown action is treated as "confirm", an unknown expiry
default as "cancel" (except for delay, whose default is "send").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from guard.mail.addresses import address_key, domain_of

KINDS = ("delay", "confirm", "approve")


@dataclass(frozen=True)
class Reason:
    symbol: str
    where: str
    reason_ja: str
    reason_en: str
    recipients: tuple[str, ...]
    evidence: Mapping[str, Any]

    @property
    def attachment(self) -> str | None:
        """'attachment:顧客.xlsx' / 'attachment:a.zip/b.csv' → the top-level file name."""
        if self.where.startswith("attachment:"):
            return self.where[len("attachment:"):].split("/", 1)[0]
        return None


@dataclass(frozen=True)
class Hold:
    kind: str
    reasons: tuple[Reason, ...]
    on_expiry: str  # send | cancel
    expiry_minutes: float | None
    delay_minutes: float | None
    approvers: tuple[str, ...]
    backup_approvers: tuple[str, ...]
    approvals_required: int
    escalate_after_minutes: float | None
    language: str  # ja | en | both | "" (not said)
    message_ja: str
    message_en: str
    sender_addresses: frozenset[str] = field(default_factory=frozenset)
    # the company's domains when the message was judged: "move to Bcc" keeps these
    internal_domains: tuple[str, ...] = ()
    # the held part of a split message: the recipients the other part went to at once
    sent_now: tuple[str, ...] = ()

    def reasons_for(self, address: str) -> list[Reason]:
        """The findings about one recipient, each once (two rules that matched the same
        finding give it twice in the verdict)."""
        a = address_key(address)
        return _once(r for r in self.reasons if a in {address_key(x) for x in r.recipients})

    def general_reasons(self) -> list[Reason]:
        """The findings about neither a recipient nor an attachment, each once: what a
        page or notice lists under "why" (the others go with their recipient or file)."""
        return _once(r for r in self.reasons if not r.recipients and not r.attachment)

    def needs_tick(self, address: str) -> bool:
        """Recipients the sender must confirm one by one: those a reason names, and
        every address outside the sender's own domain."""
        if self.reasons_for(address):
            return True
        own = {domain_of(a) for a in self.sender_addresses if "@" in a}
        return domain_of(address) not in own

    @property
    def risky_attachments(self) -> dict[str, list[Reason]]:
        """Findings about each attachment (by its top-level name), each once; those that
        name recipients are shown with the recipients."""
        out: dict[str, list[Reason]] = {}
        for r in self.reasons:
            if r.attachment and not r.recipients:
                out.setdefault(r.attachment, []).append(r)
        return {name: _once(rs) for name, rs in out.items()}

    def is_sender(self, address: str) -> bool:
        return address_key(address) in self.sender_addresses


def _once(reasons: Iterable[Reason]) -> list[Reason]:
    """Each finding once, as people read it (same words = same finding)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for r in reasons:
        if (r.reason_ja, r.reason_en) not in seen:
            seen.add((r.reason_ja, r.reason_en))
            out.append(r)
    return out


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if v >= 0 else None


def _addrs(v: Any) -> tuple[str, ...]:
    if not isinstance(v, Sequence) or isinstance(v, str):
        return ()
    out: list[str] = []
    for a in v:
        if isinstance(a, str) and "@" in a and address_key(a) not in out:
            out.append(address_key(a))
    return tuple(out)


def parse_hold(verdict: Mapping[str, Any], *, mail_from: str, sender: str) -> Hold:
    kind = verdict.get("action")
    if kind not in KINDS:
        kind = "confirm"
    reasons = []
    for r in verdict.get("reasons") or []:
        if not isinstance(r, Mapping):
            continue
        ev = r.get("evidence")
        reasons.append(Reason(
            symbol=str(r.get("symbol") or ""), where=str(r.get("where") or ""),
            reason_ja=str(r.get("reason_ja") or r.get("reason_en") or r.get("symbol") or ""),
            reason_en=str(r.get("reason_en") or r.get("reason_ja") or r.get("symbol") or ""),
            recipients=_addrs(r.get("recipients")),
            evidence=ev if isinstance(ev, Mapping) else {}))
    on_expiry = verdict.get("on_expiry")
    if on_expiry not in ("send", "cancel"):
        on_expiry = "send" if kind == "delay" else "cancel"
    sender_addresses = {address_key(a) for a in (mail_from, sender,
                                               str(verdict.get("sender_address") or ""))
                        if a and "@" in a}
    # the sender never approves their own mail, whatever the rule says
    approvers = tuple(a for a in _addrs(verdict.get("approvers")) if a not in sender_addresses)
    backups = tuple(a for a in _addrs(verdict.get("backup_approvers"))
                    if a not in sender_addresses and a not in approvers)
    required = verdict.get("approvals_required")
    required_n = required if isinstance(required, int) and not isinstance(required, bool) else 1
    language = verdict.get("language")
    return Hold(
        kind=kind, reasons=tuple(reasons), on_expiry=on_expiry,
        expiry_minutes=_num(verdict.get("expiry_minutes")),
        delay_minutes=_num(verdict.get("delay_minutes")),
        approvers=approvers, backup_approvers=backups,
        approvals_required=min(max(required_n, 1), 5),
        escalate_after_minutes=_num(verdict.get("escalate_after_minutes")),
        language=language if language in ("ja", "en", "both") else "",
        message_ja=str(verdict.get("message_ja") or ""),
        message_en=str(verdict.get("message_en") or ""),
        sender_addresses=frozenset(sender_addresses),
        internal_domains=tuple(str(d) for d in verdict.get("internal_domains") or ()
                               if isinstance(d, str)),
        sent_now=_sent_now(verdict.get("split")))


def _sent_now(split: Any) -> tuple[str, ...]:
    if not isinstance(split, Mapping) or split.get("part") != "held":
        return ()
    return _addrs(split.get("other_recipients"))
