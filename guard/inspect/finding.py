"""What a detector reports: a named symbol with its evidence (rspamd symbols, Presidio results).

Detectors are pure: they read a MessageView and an InspectContext and return Findings.
No database, no network, no SMTP. The policy engine turns findings into one verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    # Dotted symbol, family first: "pii.my_number", "new_domain", "lookalike",
    # "suppressed", "visible_external", "external_orgs", "uninspectable.encrypted",
    # "customer_mismatch", "keyword", "malformed.address". Policies match a family
    # ("pii") or an exact symbol ("pii.my_number").
    symbol: str
    # Confidence or severity, 0.0 .. 1.0 (Presidio-style: pattern score raised by
    # validation and context words).
    score: float
    # Distinct values counted (e.g. 12 distinct phone numbers), or the size of the
    # thing measured (e.g. 37 visible external addresses).
    count: int = 1
    # Where it was found: "subject", "body", "attachment:顧客.xlsx",
    # "attachment:a.zip/b.csv", "rcpt", "header:to".
    where: str = ""
    # JSON-serialisable details for people: masked samples, "did you mean", list name.
    # Never the full personal data value (evidence is stored and shown on pages).
    evidence: dict[str, Any] = field(default_factory=dict)
    # Envelope recipients this finding concerns (empty = the whole message).
    recipients: tuple[str, ...] = ()
    # One line for people, Japanese and English ("初めての送信先ドメイン example.net",
    # "first message to example.net").
    reason_ja: str = ""
    reason_en: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "score": round(self.score, 3),
            "count": self.count,
            "where": self.where,
            "evidence": self.evidence,
            "recipients": list(self.recipients),
            "reason_ja": self.reason_ja,
            "reason_en": self.reason_en,
        }

    @property
    def family(self) -> str:
        return self.symbol.split(".", 1)[0]
