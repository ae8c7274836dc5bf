"""What a run of digits can be: a phone number, a My Number, a corporate number, a card
number or a postal code, each a reading with its base score, before any context.

Numeric candidates are whole digit runs, not fixed-width windows: a 16-digit card is
one candidate, so its first 12 digits can never be read as a My Number, and overlap
resolution is simply "pick the best-scoring reading of the run" (guard.inspect.pii.scan).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from guard.inspect.pii.checkdigits import (
    is_valid_card,
    is_valid_corporate_number,
    is_valid_my_number,
)
from guard.inspect.pii.hits import CARD, CORPORATE, MY_NUMBER, PHONE, POSTAL

# Separators allowed between digit groups: hyphen family (NFKC leaves U+2010..U+2015 and
# U+2212 alone), dot, a single space, and the katakana long-vowel mark, which an IME
# produces for 090ー1234ー5678. ー is matched only between digits, not mapped to a
# hyphen everywhere (which would break マイナンバー).
_SEP_CHARS = "-‐‑‒–—―−﹣ー. "
SEP = "[-‐‑‒–—―−﹣ー. ]"  # one separator, as a regex class
HYPHEN = "[-‐‑‒–—―−﹣ー]"  # one hyphen, as a regex class
_HYPHENS = frozenset("-‐‑‒–—―−﹣ー")
_SEP_SET = frozenset(_SEP_CHARS)
_DELETE_SEPARATORS = {ord(c): None for c in _SEP_CHARS}
_SEPARATOR = re.compile(SEP)
_DIGITS = frozenset("0123456789")
NON_DIGIT = re.compile(r"[^0-9]+")

# A phone reading's score: its type's base, plus these (scan.py adds the context one
# when a phone label is near, cells.py when the column has a header).
PHONE_CONTEXT_BOOST = 0.2
PHONE_FORMAT_BOOST = 0.1  # 03-1234-5678 is a phone number; 0312345678 may be anything


# --- phone numbers ----------------------------------------------------------------------

_PT = phonenumbers.PhoneNumberType
# Business numbers (toll-free, ナビダイヤル, premium) are not anybody's personal phone.
_PHONE_TYPES: dict[int, tuple[str, float]] = {
    _PT.MOBILE: ("mobile", 0.6),
    _PT.FIXED_LINE: ("fixed", 0.4),
    _PT.FIXED_LINE_OR_MOBILE: ("fixed_or_mobile", 0.4),
    _PT.VOIP: ("ip", 0.4),
    _PT.PAGER: ("pager", 0.4),
    _PT.PERSONAL_NUMBER: ("personal", 0.4),
    _PT.TOLL_FREE: ("toll_free", 0.3),
    _PT.UAN: ("navi_dial", 0.3),
    _PT.SHARED_COST: ("shared_cost", 0.3),
    _PT.PREMIUM_RATE: ("premium", 0.3),
}


@lru_cache(maxsize=1 << 16)
def _jp_phone_type(national: str) -> int | None:
    """phonenumbers type of a domestic number "0XXXXXXXXX", or None when invalid.

    Builds the PhoneNumber directly: phonenumbers.parse() costs ~70 µs, number_type()
    on a ready object ~15 µs, and the cache makes repeated numbers free.
    """
    number = phonenumbers.PhoneNumber(country_code=81, national_number=int(national[1:]))
    kind = phonenumbers.number_type(number)
    return None if kind == _PT.UNKNOWN else kind


@lru_cache(maxsize=1 << 14)
def _intl_phone(raw: str) -> tuple[str, int] | None:
    """(key, type) for a "+CC..." number, or None."""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return None
    kind = phonenumbers.number_type(number)
    if kind == _PT.UNKNOWN:
        return None
    if number.country_code == 81:
        return "0" + str(number.national_number), kind
    return f"+{number.country_code}{number.national_number}", kind


# --- readings of digit runs ---------------------------------------------------------------

@dataclass(slots=True)
class Reading:
    """One possible meaning of a digit run, before context scoring."""

    kind: str
    key: str
    raw: str
    detail: str
    base: float
    # Score when a positive context word is in the window (None: base + fixed boost).
    with_context: float | None = None
    formatted: bool = False
    marked: bool = False  # 〒 right before a postal code, T before a corporate number


@dataclass(slots=True)
class Candidate:
    """A value's place in the text, text[start:end], and what it can be."""

    start: int
    end: int
    readings: list[Reading]


# Punctuation that makes a digit run part of a code: X-1234…, A_1234…, #1234…, 1234-X.
# Sets, not strings: `"" in "-_/"` is True, and prev/next are "" at the text's edges.
_CODE_BEFORE = frozenset("-_/#")
_CODE_AFTER = frozenset("-_/")


def _ascii_letter(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def phone_reading(digits: str, raw: str, formatted: bool) -> Reading | None:
    if len(digits) not in (10, 11) or digits[0] != "0":
        return None
    kind = _jp_phone_type(digits)
    if kind is None:
        return None
    detail, base = _PHONE_TYPES.get(kind, ("other", 0.4))
    return Reading(PHONE, digits, raw, detail, base, formatted=formatted)


def _is_card_grouping(groups: list[int]) -> bool:
    # 16 digits as 4-4-4-4 (19 as 4-4-4-4-3), Amex 4-6-5, Diners 4-6-4, or no separator.
    return (
        len(groups) == 1
        or groups in ([4, 6, 5], [4, 6, 4])
        or (all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4)
    )


def _read_run(text: str, start: int, end: int) -> list[Reading]:
    """All plausible readings of the digit run text[start:end] (separators included).

    This runs for every digit candidate, so the cheap length tests come first and the
    separator structure is only computed for the lengths that need it.
    """
    run = text[start:end]
    if run[0] == "+":
        return intl_phone_readings(run)
    digits = run.translate(_DELETE_SEPARATORS)
    n = len(digits)
    separated = n != len(run)
    prev, nxt = _char(text, start - 1), _char(text, end)
    # A run glued to letters or to code punctuation is an identifier (ABC1234…, X-1234…).
    glued = (
        _ascii_letter(prev) or _ascii_letter(nxt) or prev in _CODE_BEFORE or nxt in _CODE_AFTER
    )
    if n == 7:
        return _read_postal(text, start, end, run, digits, glued)
    out: list[Reading] = []
    if n <= 11:
        if len(run) - n <= 3:
            phone = phone_reading(digits, run, formatted=separated)
            if phone is not None:
                out.append(phone)
        return out
    t_prefix = prev == "T" and not _ascii_letter(_char(text, start - 2))
    if glued and not (n == 13 and t_prefix):
        return out
    seps = set(run).difference(_DIGITS) if separated else set()
    if len(seps) > 1:  # 1234-5678 9012: mixed separators are not one number
        return out
    groups = [len(g) for g in _SEPARATOR.split(run)] if separated else [n]
    if n == 12 and groups in ([12], [4, 4, 4]):
        if is_valid_my_number(digits):
            out.append(Reading(MY_NUMBER, digits, digits, "", 0.35, 0.9))
        elif len(set(digits)) > 1:
            # A mistyped check digit next to "マイナンバー" is still somebody's number:
            # reported at the qualifying floor, never at hold level. Without context
            # the base 0 drops it.
            out.append(Reading(MY_NUMBER, digits, digits, "check_digit_invalid", 0.0, 0.5))
    if n == 13 and groups in ([13], [1, 4, 4, 4]) and is_valid_corporate_number(digits):
        out.append(Reading(CORPORATE, digits, digits, "", 0.2, 0.6, marked=t_prefix))
    if prev != "T" and 13 <= n <= 19 and _is_card_grouping(groups):
        brand = is_valid_card(digits)
        if brand is not None:
            out.append(Reading(CARD, digits, digits, brand, 0.5, 0.95))
    return out


def _read_postal(
    text: str, start: int, end: int, run: str, digits: str, glued: bool
) -> list[Reading]:
    prev, prev2 = _char(text, start - 1), _char(text, start - 2)
    nxt, nxt2 = _char(text, end), _char(text, end + 1)
    # The postal alternative of the pattern can match inside a longer number
    # (1-234-5678, 123-4567-89): RE2 has no lookaround, so the edges are checked here.
    inside = (
        prev.isdigit() or nxt.isdigit()
        or (prev in _SEP_SET and prev2.isdigit()) or (nxt in _SEP_SET and nxt2.isdigit())
    )
    if inside or glued:
        return []
    marked = prev == "〒" or (prev == " " and prev2 == "〒")
    hyphenated = len(run) == 8 and run[3] in _HYPHENS
    if hyphenated or (marked and len(run) == 7):
        return [Reading(POSTAL, digits, digits, "", 0.1, 0.6, marked=marked)]
    return []


def intl_phone_readings(run: str) -> list[Reading]:
    parsed = _intl_phone(run)
    if parsed is None:
        return []
    key, kind = parsed
    detail, base = _PHONE_TYPES.get(kind, ("other", 0.4))
    return [Reading(PHONE, key, run, detail, base, formatted=True)]


def _split_on_spaces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sub-runs of a run that failed as a whole, split at spaces.

    A space-joined run like "03-1234-5678 2024" (phone, then a year) is split and each
    piece of ≥ 7 digits is read on its own. Pieces are never recombined: "2024 1234
    5678 9012" does not yield a My Number from its last three groups (12 digits after
    "digit + space" are the tail of a longer number, not a My Number).
    """
    spans: list[tuple[int, int]] = []
    pos = start
    for piece in text[start:end].split(" "):
        piece_end = pos + len(piece)
        if sum(c.isdigit() for c in piece) >= 7:
            spans.append((pos, piece_end))
        pos = piece_end + 1
    return spans


def _char(text: str, i: int) -> str:
    return text[i] if 0 <= i < len(text) else ""


def digit_run_candidates(text: str, start: int, end: int) -> list[Candidate]:
    """The digit run text[start:end] with its readings; a run that has none as a whole
    is split at spaces and each piece read on its own."""
    readings = _read_run(text, start, end)
    if readings:
        return [Candidate(start, end, readings)]
    if " " not in text[start:end]:
        return []
    out = []
    for s, e in _split_on_spaces(text, start, end):
        sub = _read_run(text, s, e)
        if sub:
            out.append(Candidate(s, e, sub))
    return out


# The readings of a run, relative to its start: (start, end, readings) per candidate.
RunReadings = list[tuple[int, int, list[Reading]]]


class RunReader:
    """digit_run_candidates for one text, each distinct run read once.

    What _read_run reads of a run (and of its pieces split at spaces) is the run and the
    two characters on each side of it, so equal runs between equal neighbours have equal
    readings: a roster or a pasted sheet repeats its numbers, and relay_bench's probe
    holds the same "0123456789" 1,300 times (~3.5 µs each to read). The readings are
    shared between the candidates; nothing changes them after they are made.
    """

    __slots__ = ("_seen", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._seen: dict[tuple[str, int, int], RunReadings] = {}

    def candidates(self, start: int, end: int) -> list[Candidate]:
        text = self.text
        low = start - 2 if start >= 2 else 0
        # (the run's place in the window says where the text's edges are)
        key = (text[low:end + 2], start - low, end - start)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = [
                (c.start - start, c.end - start, c.readings)
                for c in digit_run_candidates(text, start, end)]
        return [Candidate(start + s, start + e, r) for s, e, r in found]

