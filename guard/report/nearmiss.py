"""Near misses (ヒヤリハット) of one month: held messages that a person then stopped —
the sender or an admin cancelled, an approver rejected — as the hold lifecycle audits
them (`near_miss` in the audit row; guard_near_misses_total counts the same events).

Counted by reason (the symbols the hold showed), by rule (the rule that held it), by
department (the sender's first group in the current policy), by ISO week, and per
sender: the top senders are named 送信者A / Sender A … unless names are asked for, so
that the report can be shown in a training session."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import tzinfo

from guard.report.periods import Period, iso_week
from guard.store.reports import AuditRow, ReportMessage

TOP_SENDERS = 10
NO_GROUP = "(none)"  # a sender in no group of the policy
NO_RULE = "(none)"


def sender_label(i: int) -> tuple[str, str]:
    """The i-th anonymous sender (0 → 送信者A, Sender A; 26 → 送信者AA …)."""
    letters = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        letters = chr(ord("A") + r) + letters
    return f"送信者{letters}", f"Sender {letters}"


@dataclass(frozen=True)
class SenderCount:
    label_ja: str
    label_en: str
    count: int


@dataclass
class NearMissReport:
    period: Period
    total: int = 0
    by_reason: list[tuple[str, int]] = field(default_factory=list)
    by_rule: list[tuple[str, int]] = field(default_factory=list)
    by_department: list[tuple[str, int]] = field(default_factory=list)
    by_week: list[tuple[str, int]] = field(default_factory=list)
    by_decider: list[tuple[str, int]] = field(default_factory=list)  # sender/admin/approver
    top_senders: list[SenderCount] = field(default_factory=list)
    named: bool = False


def _ranked(c: Counter[str]) -> list[tuple[str, int]]:
    return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))


def _symbols(row: AuditRow, msg: ReportMessage) -> list[str]:
    got = row.detail.get("symbols")
    if isinstance(got, list) and got:
        return sorted({str(s) for s in got})
    # a linked password mail cancelled with its attachment mail: its own verdict's
    return sorted({str(r.get("symbol")) for r in msg.verdict.get("reasons") or []
                   if isinstance(r, dict) and r.get("symbol")})


def build(period: Period, events: Iterable[tuple[AuditRow, ReportMessage]],
          group_of: Callable[[str], str | None], tz: tzinfo, *,
          names: bool = False, top: int = TOP_SENDERS) -> NearMissReport:
    reasons: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    weeks: Counter[str] = Counter()
    deciders: Counter[str] = Counter()
    senders: Counter[str] = Counter()
    total = 0
    for row, msg in events:
        total += 1
        for s in _symbols(row, msg):
            reasons[s] += 1  # a message with two reasons counts under each
        rules[str(msg.verdict.get("rule") or NO_RULE)] += 1
        groups[group_of(msg.mail_from) or NO_GROUP] += 1
        weeks[iso_week(row.at, tz)] += 1
        deciders[str(row.detail.get("by") or "admin")] += 1
        senders[msg.mail_from.lower()] += 1
    ranked = _ranked(senders)[:top]
    top_senders = []
    for i, (addr, n) in enumerate(ranked):
        ja, en = (addr, addr) if names else sender_label(i)
        top_senders.append(SenderCount(ja, en, n))
    return NearMissReport(period, total, _ranked(reasons), _ranked(rules), _ranked(groups),
                          sorted(weeks.items()), _ranked(deciders), top_senders, names)
