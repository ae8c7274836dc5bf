"""The organisation's own contact data: addresses, phone and fax numbers, postal codes,
names and domains the policy declares (`defaults.own_contacts`, `lists.own_contacts`).

They are printed in every signature, newsletter footer and branch-office table, and are
not anybody's personal data: the personal-data scan discounts them. The keys here are
the scan's distinct-value keys (guard.inspect.pii), so a declared "+81 3-1234-5678"
meets a "03(1234)5678" in a mail.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property

__all__ = [
    "OwnContacts",
    "address_key",
    "checked_address",
    "checked_phone",
    "checked_postal_code",
    "phone_key",
    "postal_key",
]

_NON_DIGIT = re.compile(r"\D")
_SPACES = re.compile(r"\s+")
_DASHES = re.compile(r"[‐‑‒–—―−﹣ー－]")
# "1丁目2番3号", "1丁目2番地3" are "1-2-3" in another spelling
_BLOCK_WORDS = re.compile(r"(?<=\d)(?:丁目|番地|番|の(?=\d))")
_GO = re.compile(r"(?<=\d)号")
_PREFECTURE = re.compile(r"^(?:北海道|東京都|大阪府|京都府|\D{2,3}?県)")


def phone_key(text: str) -> str:
    """Digits only, +81 in domestic form: the scan's key for a Japanese number."""
    value = unicodedata.normalize("NFKC", text).strip()
    digits = _NON_DIGIT.sub("", value)
    if value.startswith("+81"):
        return "0" + digits[2:].removeprefix("0")
    if value.startswith("+"):
        return "+" + digits
    return digits


def postal_key(text: str) -> str:
    return _NON_DIGIT.sub("", unicodedata.normalize("NFKC", text))


def address_key(text: str) -> str:
    """NFKC, no spaces, one dash, 丁目/番地/番/号 as dashes, no prefecture: the form in
    which a declared address and a found one are compared (by prefix)."""
    a = _SPACES.sub("", unicodedata.normalize("NFKC", text))
    a = _DASHES.sub("-", a)
    a = _GO.sub("", _BLOCK_WORDS.sub("-", a))
    return _PREFECTURE.sub("", a).rstrip("-")


def checked_phone(text: str) -> str:
    """phone_key() of a phone or fax number as an admin writes it; ValueError if it
    cannot be one ("03-1234-5678", "+81 3 1234 5678", "0120-123-456")."""
    key = phone_key(text)
    if key.startswith("+") and 8 <= len(key) <= 16:
        return key
    if key.startswith("0") and 10 <= len(key) <= 11:
        return key
    raise ValueError(f"expected a phone or fax number like 03-1234-5678 or "
                     f"+81 3-1234-5678; got {text!r}")


def checked_postal_code(text: str) -> str:
    key = postal_key(text)
    if len(key) != 7:
        raise ValueError(f"expected a postal code of 7 digits like 100-0005; got {text!r}")
    return key


def checked_address(text: str) -> str:
    """address_key() of a postal address; it must reach the block number, or every
    address in that town would be taken for ours."""
    key = address_key(text)
    if not any(c.isdigit() for c in key) or len(key) < 4:
        raise ValueError(f"expected a postal address with its block number like "
                         f"東京都千代田区丸の内1-2-3; got {text!r}")
    return key


def _prefix_of(short: str, long: str) -> bool:
    """`short` begins `long`, and does not stop inside a number ("1-2" is not "1-23")."""
    if not long.startswith(short):
        return False
    if len(long) == len(short):
        return True
    nxt = long[len(short)]
    return not (short[-1].isdigit() and (nxt.isdigit() or nxt == "-"))


@dataclass(frozen=True)
class OwnContacts:
    """Declared own data, in comparison-key form (see the *_key functions)."""

    names: tuple[str, ...] = ()  # company and branch names (NFKC)
    addresses: tuple[str, ...] = ()  # address_key()
    phones: frozenset[str] = frozenset()  # phone_key(): phone and fax numbers
    postal_codes: frozenset[str] = frozenset()  # postal_key(): 7 digits
    domains: frozenset[str] = field(default_factory=frozenset)  # lower-case, + subdomains

    def __bool__(self) -> bool:
        return bool(self.names or self.addresses or self.phones or self.postal_codes
                    or self.domains)

    def merged(self, other: OwnContacts) -> OwnContacts:
        return OwnContacts(
            names=tuple(dict.fromkeys((*self.names, *other.names))),
            addresses=tuple(dict.fromkeys((*self.addresses, *other.addresses))),
            phones=self.phones | other.phones,
            postal_codes=self.postal_codes | other.postal_codes,
            domains=self.domains | other.domains,
        )

    def has_phone(self, key: str) -> bool:
        return key in self.phones

    def has_postal_code(self, key: str) -> bool:
        return key in self.postal_codes

    def has_address(self, found: str) -> bool:
        """A found address is ours when it and a declared one start the same way: the
        scan stops at the block number, the declaration may name the building."""
        key = address_key(found)
        if len(key) < 4:
            return False
        # either starts the other, so they share their first 4 characters (a declared
        # key has 4 or more): only those are compared (a list's every row asks)
        by_start = self._addresses_by_start
        return any(_prefix_of(key, a) or _prefix_of(a, key)
                   for a in (*by_start.get(key[:4], ()), *by_start.get("", ())))

    @cached_property
    def _addresses_by_start(self) -> dict[str, tuple[str, ...]]:
        """Declared keys by their first 4 characters ("": shorter ones, always tried)."""
        by_start: dict[str, tuple[str, ...]] = {}
        for a in self.addresses:
            start = a[:4] if len(a) >= 4 else ""
            by_start[start] = (*by_start.get(start, ()), a)
        return by_start

    def has_domain(self, domain: str) -> bool:
        d = domain.lower().rstrip(".")
        while d:
            if d in self.domains:
                return True
            _, _, d = d.partition(".")
        return False

    def has_email(self, address: str) -> bool:
        return self.has_domain(address.rpartition("@")[2])
