"""What the personal-data scan reports: the kinds of values, one scored value (Hit), the
settings the scanners share, and when a hit counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

# Kinds (the part of the symbol after "pii.").
MY_NUMBER = "my_number"
CORPORATE = "corporate_number"
CARD = "card"
PHONE = "phone"
POSTAL = "postal_code"
ADDRESS = "address"
BIRTH_DATE = "birth_date"
EMAIL = "email"
NAME = "name"  # only from table columns, only used for records

# Kinds that make a "record" when two different ones share a line or row. Postal codes
# are part of an address and corporate numbers are public, so neither counts.
RECORD_KINDS = frozenset({MY_NUMBER, CARD, PHONE, ADDRESS, BIRTH_DATE, EMAIL, NAME})


@dataclass(slots=True)
class Hit:
    """One validated, scored value. `key` is the distinct-value key (never shown)."""

    kind: str
    key: str
    score: float
    pos: int
    # What the evidence sample is made from (the matched text, or the key); turned into
    # a masked sample by masks.mask() only for the few samples a finding shows.
    raw: str
    detail: str = ""  # brand, phone type, "era"... listed as evidence "kinds"
    context: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScanSettings:
    """The subset of PiiLimits the scanner needs (kept separate to avoid an import cycle)."""

    min_score: float = 0.5
    context_before: int = 50
    context_after: int = 30
    ignore_values: frozenset[str] = frozenset()
    today: date | None = None
    my_number_list_min: int = 3
    my_number_list_score: float = 0.6


def accept(hit: Hit, settings: ScanSettings) -> bool:
    """Whether a scored value is reported: it qualifies (e-mail addresses always do,
    their count is the signal) and it is not one of the sender's own values."""
    if hit.score + 1e-9 < settings.min_score and hit.kind != EMAIL:
        return False
    return hit.key not in settings.ignore_values


def clamp(x: float) -> float:
    """A score within 0..1, rounded as reported."""
    return max(0.0, min(1.0, round(x, 3)))
