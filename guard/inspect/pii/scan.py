"""The text scanner behind guard.inspect.pii.detect: candidates, validation, context, scores.

Pipeline per text (Presidio's model, design §1.1/§1.4, with the changes the design asks
for: character-window context, negative context, no "checksum alone = certain"):

1. NFKC-normalise (full-width digits → ASCII, half-width katakana → full-width), only
   where the text has characters NFKC changes (normalize()).
2. ONE google-re2 pass over the UTF-8 bytes finds candidates and context words:
   e-mail addresses, digit runs (≥ 10 digits, or a postal code), parenthesised phone
   numbers, prefecture-led addresses, and the context words of every detector. RE2 is
   a DFA (hundreds of MB/s here on plain text, where Python `re` with the same
   alternation manages ~5 MB/s, performance.md §6); what costs is the ~2 µs of Python
   per match, so the pattern is built to match rarely on ordinary prose.
3. Python validates each candidate (check digits, phonenumbers, real dates) and scores
   it: base score, raised by context words in a character window around it, lowered
   by negative context words next to it. Values below `min_score` are dropped.
   Dates of birth and addresses without a prefecture are only searched for next to
   their labels (生年月日, 住所...), so plain dates and town names cost nothing.

Numeric candidates are whole digit runs, not fixed-width windows: a 16-digit card is
one candidate, so its first 12 digits can never be read as a My Number, and overlap
resolution is simply "pick the best-scoring reading of the run" (O(n), design §1.5).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import phonenumbers
import re2

from guard.inspect.pii import context_words as cw
from guard.inspect.pii.checkdigits import (
    is_valid_card,
    is_valid_corporate_number,
    is_valid_my_number,
)
from guard.inspect.pii.dates import DATE_RE, parse_date

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

# When one digit run can be read several ways with equal scores, the earlier kind wins.
_PRIORITY = (CARD, MY_NUMBER, CORPORATE, PHONE, POSTAL)

# Kinds that make a "record" when two different ones share a line or row. Postal codes
# are part of an address and corporate numbers are public, so neither counts.
RECORD_KINDS = frozenset({MY_NUMBER, CARD, PHONE, ADDRESS, BIRTH_DATE, EMAIL, NAME})

# Separators allowed between digit groups: hyphen family (NFKC leaves U+2010..U+2015 and
# U+2212 alone), dot, a single space, and the katakana long-vowel mark, which an IME
# produces for 090ー1234ー5678. Matching ー only between digits is what the design asks
# for instead of mapping it globally (which breaks マイナンバー).
_SEP_CHARS = "-‐‑‒–—―−﹣ー. "
_SEP = "[-‐‑‒–—―−﹣ー. ]"
_HYPHENS = frozenset("-‐‑‒–—―−﹣ー")
_SEP_SET = frozenset(_SEP_CHARS)
_DELETE_SEPARATORS = {ord(c): None for c in _SEP_CHARS}
_SEPARATOR = re.compile(_SEP)
_DIGITS = frozenset("0123456789")
_NON_DIGIT = re.compile(r"[^0-9]+")

PREFECTURES: tuple[str, ...] = (
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県",
    "群馬県", "埼玉県", "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県",
    "福井県", "山梨県", "長野県", "岐阜県", "静岡県", "愛知県", "三重県", "滋賀県",
    "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県", "鳥取県", "島根県", "岡山県",
    "広島県", "山口県", "徳島県", "香川県", "愛媛県", "高知県", "福岡県", "佐賀県",
    "長崎県", "熊本県", "大分県", "宮崎県", "鹿児島県", "沖縄県",
)

# Characters that end an address's "town" part: whitespace and punctuation.
_ADDR_STOP = r"\s、。,，:;()「」<>\"'"


_EMAIL = (
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
# (03)1234-5678, (090) 1234 5678, 03(1234)5678
_PAREN_PHONE = rf"\(0\d{{1,4}}\) ?\d{{1,4}}{_SEP}?\d{{4}}|0\d{{1,4}}\(\d{{1,4}}\)\d{{4}}"
# Digit runs worth reading: ≥ 10 digits (phones 10-11, My Number 12, corporate 13,
# cards 13-19), or exactly a postal code (123-4567 with a hyphen, or after 〒). Runs of
# 7-9 digits are dates (2026-11-12), amounts and part numbers; leaving them out of the
# pattern keeps the match rate, and so the per-match cost, low on ordinary prose.
_HYPHEN = "[-‐‑‒–—―−﹣ー]"
_DIGIT_RUN = (
    rf"\+?\d(?:{_SEP}?\d){{9,}}|\d{{3}}{_HYPHEN}\d{{4}}|〒 ?\d{{3}}{_HYPHEN}?\d{{4}}"
)
_PREF_ADDRESS = rf"(?:{'|'.join(PREFECTURES)})[^{_ADDR_STOP}\d]{{1,12}}?[市区町村郡]"

# Context words per kind: positive ones raise a reading's score, negative ones (order
# and invoice labels...) lower it.
_POSITIVE = {
    MY_NUMBER: cw.MY_NUMBER,
    CORPORATE: cw.CORPORATE,
    CARD: cw.CARD,
    PHONE: cw.PHONE,
    POSTAL: cw.POSTAL,
    ADDRESS: cw.ADDRESS,
}
_NEGATIVE = {
    POSTAL: cw.ID_NEGATIVE,
    MY_NUMBER: cw.ID_NEGATIVE,
    CORPORATE: cw.CORPORATE_NEGATIVE,
    CARD: cw.ID_NEGATIVE,
    PHONE: cw.ID_NEGATIVE,
}
# Every context word, including the anchors that start the date-of-birth and
# no-prefecture address searches.
_WORDS = frozenset(
    w for lst in (*_POSITIVE.values(), *_NEGATIVE.values(), cw.BIRTH_DATE) for w in lst.words
)
_ASCII_WORDS = frozenset(w for w in _WORDS if w.isascii())
_DOB_ANCHORS = frozenset(cw.BIRTH_DATE.words)
_ADDRESS_ANCHORS = frozenset(cw.ADDRESS.words)

# One pattern for candidates AND context words, no capturing groups, run over the UTF-8
# bytes of the text. On the benchmark corpus (1 MiB, ~900 matches) the candidate part
# took 16 ms as str with six groups and 4 ms as bytes without groups: the google-re2
# wrapper converts offsets in Python for str input, and submatches make RE2 run its NFA
# over each match. The scanner tells the alternatives apart from the matched text
# (_candidate_kind). Context words in the same pass cost one more match each, instead
# of one extra search per candidate window.
CANDIDATES = re2.compile(
    "|".join(
        (_EMAIL, _PAREN_PHONE, _DIGIT_RUN, _PREF_ADDRESS, cw.word_pattern(_WORDS))
    ).encode()
)
_RUN_START = frozenset("+0123456789〒")

_EMAIL_K, _PAREN_K, _RUN_K, _ADDR_K, _WORD_K = range(5)


def _candidate_kind(match: str) -> int:
    """Which alternative of CANDIDATES produced `match`. They cannot be confused: only
    e-mail has "@", only runs and phones start with a digit, +, 〒 or "(", words are a
    known list, and what is left is a prefecture-led address."""
    if "@" in match:
        return _EMAIL_K
    first = match[0]
    if first in _RUN_START:
        return _PAREN_K if "(" in match else _RUN_K
    if first == "(":
        return _PAREN_K
    if match.lower() in _WORDS:
        return _WORD_K
    return _ADDR_K


# google-re2's Python Match object costs ~15 µs a match (Match.span() asks the pattern
# for its group count each time); a 20k-cell people list meets ~12k candidates. The
# compiled RE2 object under the wrapper gives the same spans without it. If a future
# google-re2 moves it, the public finditer is used.
_RAW_CANDIDATES = getattr(CANDIDATES, "_regexp", None)
_UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
_FAST_SPANS = _RAW_CANDIDATES is not None and hasattr(_RAW_CANDIDATES, "Match") \
    and _UNANCHORED is not None


def byte_spans(buf: bytes, fast: bool = _FAST_SPANS) -> Iterator[tuple[int, int]]:
    """Byte spans of the CANDIDATES matches in `buf`, as CANDIDATES.finditer gives them."""
    if not fast:
        for m in CANDIDATES.finditer(buf):
            yield m.span()
        return
    match = _RAW_CANDIDATES.Match  # type: ignore[union-attr]
    pos, end = 0, len(buf)
    while True:
        start, stop = match(_UNANCHORED, buf, pos, end)[0]
        if start < 0:
            return
        yield start, stop
        if pos == end:
            return
        pos = pos + 1 if pos == stop else stop  # (the wrapper's step past an empty match)


def _char_spans(text: str) -> Iterator[tuple[int, int]]:
    """Character spans of the CANDIDATES matches, searching the UTF-8 bytes.

    Byte offsets become character offsets by decoding the bytes between consecutive
    matches (each byte is decoded once overall); ASCII text needs no conversion.
    """
    buf = text.encode("utf-8")
    if len(buf) == len(text):
        yield from byte_spans(buf)
        return
    byte_pos = char_pos = 0
    for bs, be in byte_spans(buf):
        char_pos += len(buf[byte_pos:bs].decode("utf-8"))
        char_end = char_pos + len(buf[bs:be].decode("utf-8"))
        byte_pos = bs
        yield char_pos, char_end


# After the city/ward/town part: the rest of the town name, then a block number
# (丸の内1-1-1, 千代田1丁目2番3号, 北1条西2丁目, 123番地). Python `re`: it runs only at
# address candidates, on ≤ 45 characters.
_BLOCK = re.compile(
    rf"[^{_ADDR_STOP}]{{0,20}}?"
    r"(?:[一二三四五六七八九十\d]{1,3}丁目(?:\d{1,5}(?:番地?|-|の)?(?:\d{1,5}号?)?)?"
    r"|\d{1,5}(?:番地?|-|の)\d{1,5}(?:(?:番|号|-|の)\d{1,5})*号?"
    r"|\d{1,5}番地)"
)
# An address without a prefecture is only believed right after 住所/所在地/address.
_CITY_ADDRESS = re.compile(rf"[^{_ADDR_STOP}\d]{{1,12}}?[市区町村郡]")


@dataclass(slots=True)
class Hit:
    """One validated, scored value. `key` is the distinct-value key (never shown)."""

    kind: str
    key: str
    score: float
    pos: int
    # What the evidence sample is made from (the matched text, or the key); turned into
    # a masked sample by mask() only for the few samples a finding shows.
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


# Characters NFKC leaves alone and that never compose with or reorder against their
# neighbours (canonical combining class 0, never the second half of a composition):
# ASCII, 、。々〆「」『』, hiragana, katakana (without ヿ), ・ー, CJK unified ideographs.
# tests/inspect/test_pii.py checks every one of them.
NFKC_SAFE_RANGES: tuple[tuple[str, str], ...] = (
    ("\x00", "\x7f"), ("\u3001", "\u3002"), ("\u3005", "\u3006"), ("\u300c", "\u300f"),
    ("\u3041", "\u3096"), ("\u30a1", "\u30fa"), ("\u30fb", "\u30fc"), ("\u4e00", "\u9fff"),
)
_SAFE_CLASS = "".join(f"{a}-{b}" for a, b in NFKC_SAFE_RANGES)
_UNSAFE_RUN = re.compile(f"[^{_SAFE_CLASS}]+")


def normalize(text: str) -> str:
    """NFKC, applied only to the runs of characters it can change.

    Japanese text almost always holds a few full-width characters (（）：！), which
    makes unicodedata.normalize() take its slow path over the whole text: ~42 ms per
    MiB here, as much as the rest of the scan. Normalising just the runs around those
    characters gives the identical result in ~17 ms. Each run is normalised together
    with the safe character before it, so a combining mark still composes with its
    base (か + U+3099 → が); the safe character after a run can never compose with it.
    """
    if text.isascii():
        return text
    out: list[str] = []
    pos = 0
    for m in _UNSAFE_RUN.finditer(text):
        start, end = m.span()
        if start > pos:
            out.append(text[pos : start - 1])
            start -= 1
        out.append(unicodedata.normalize("NFKC", text[start:end]))
        pos = end
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


# ---------------------------------------------------------------------------
# masks: evidence shows enough to recognise a value, never the value
# ---------------------------------------------------------------------------


def _group4(s: str) -> str:
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4))


def mask_card(digits: str) -> str:
    # First four (the brand) and last four, like a receipt: "1234 **** **** 3456".
    return f"{digits[:4]} {_group4('*' * (len(digits) - 8))} {digits[-4:]}"


def mask_my_number(digits: str) -> str:
    return f"**** **** {digits[-4:]}"


def mask_corporate(digits: str) -> str:
    return f"*-****-****-{digits[-4:]}"


def mask_phone(raw: str, keep_tail: int = 4) -> str:
    """Keep the separators, the prefix (first group, or 3 digits) and the last four."""
    digits = sum(c.isdigit() for c in raw)
    first = re.match(r"\+?\(?(\d+)", raw)
    group = len(first.group(1)) if first else 0
    keep_head = group if 2 <= group < digits - keep_tail else 3
    out: list[str] = []
    seen = 0
    for c in raw:
        if c.isdigit():
            seen += 1
            out.append(c if seen <= keep_head or seen > digits - keep_tail else "*")
        else:
            out.append(c)
    return "".join(out)


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask(kind: str, raw: str) -> str:
    """The evidence sample for a hit of `kind` whose Hit.raw is `raw`."""
    if kind == CARD:
        return mask_card(raw)
    if kind == MY_NUMBER:
        return mask_my_number(raw)
    if kind == CORPORATE:
        return mask_corporate(raw)
    if kind == PHONE:
        return mask_phone(raw)
    if kind == POSTAL:
        return f"{raw[:3]}-****"
    if kind == EMAIL:
        return mask_email(raw)
    if kind == ADDRESS:
        return raw + "…"  # prefecture and city only
    if kind == BIRTH_DATE:
        return f"{raw[:4]}-**-**"  # the year only
    return "***"


def value_key(raw: str) -> str:
    """The distinct-value key for a value given by a person (PiiLimits.ignore_values).

    E-mail: lower case. Numbers: digits only; +81 phone numbers in domestic form, so
    "+81 3-1234-5678" and "03-1234-5678" are the same key. Anything else (addresses):
    NFKC without whitespace.
    """
    value = normalize(raw).strip()
    if "@" in value:
        return value.lower()
    digits = _NON_DIGIT.sub("", value)
    if digits and len(digits) >= len(re.sub(r"[\s\-‐‑‒–—―−﹣ー.()+〒]", "", value)):
        if value.startswith("+81"):
            return "0" + digits[2:]
        if value.startswith("+"):
            return "+" + digits
        return digits
    return re.sub(r"\s+", "", value)


# ---------------------------------------------------------------------------
# phone numbers
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# candidates
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Reading:
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
class _Candidate:
    start: int
    end: int
    readings: list[_Reading]


# Punctuation that makes a digit run part of a code: X-1234…, A_1234…, #1234…, 1234-X.
# Sets, not strings: `"" in "-_/"` is True, and prev/next are "" at the text's edges.
_CODE_BEFORE = frozenset("-_/#")
_CODE_AFTER = frozenset("-_/")


def _ascii_letter(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _phone_reading(digits: str, raw: str, formatted: bool) -> _Reading | None:
    if len(digits) not in (10, 11) or digits[0] != "0":
        return None
    kind = _jp_phone_type(digits)
    if kind is None:
        return None
    detail, base = _PHONE_TYPES.get(kind, ("other", 0.4))
    return _Reading(PHONE, digits, raw, detail, base, formatted=formatted)


def _is_card_grouping(groups: list[int]) -> bool:
    # 16 digits as 4-4-4-4 (19 as 4-4-4-4-3), Amex 4-6-5, Diners 4-6-4, or no separator.
    return (
        len(groups) == 1
        or groups in ([4, 6, 5], [4, 6, 4])
        or (all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4)
    )


def _read_run(text: str, start: int, end: int) -> list[_Reading]:
    """All plausible readings of the digit run text[start:end] (separators included).

    This runs for every digit candidate, so the cheap length tests come first and the
    separator structure is only computed for the lengths that need it.
    """
    run = text[start:end]
    if run[0] == "+":
        return _read_intl_phone(run)
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
    out: list[_Reading] = []
    if n <= 11:
        if len(run) - n <= 3:
            phone = _phone_reading(digits, run, formatted=separated)
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
            out.append(_Reading(MY_NUMBER, digits, digits, "", 0.35, 0.9))
        elif len(set(digits)) > 1:
            # A mistyped check digit next to "マイナンバー" is still somebody's number:
            # reported at the qualifying floor, never at hold level. Without context
            # the base 0 drops it.
            out.append(_Reading(MY_NUMBER, digits, digits, "check_digit_invalid", 0.0, 0.5))
    if n == 13 and groups in ([13], [1, 4, 4, 4]) and is_valid_corporate_number(digits):
        out.append(_Reading(CORPORATE, digits, digits, "", 0.2, 0.6, marked=t_prefix))
    if prev != "T" and 13 <= n <= 19 and _is_card_grouping(groups):
        brand = is_valid_card(digits)
        if brand is not None:
            out.append(_Reading(CARD, digits, digits, brand, 0.5, 0.95))
    return out


def _read_postal(
    text: str, start: int, end: int, run: str, digits: str, glued: bool
) -> list[_Reading]:
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
        return [_Reading(POSTAL, digits, digits, "", 0.1, 0.6, marked=marked)]
    return []


def _read_intl_phone(run: str) -> list[_Reading]:
    parsed = _intl_phone(run)
    if parsed is None:
        return []
    key, kind = parsed
    detail, base = _PHONE_TYPES.get(kind, ("other", 0.4))
    return [_Reading(PHONE, key, run, detail, base, formatted=True)]


def _split_on_spaces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sub-runs of a run that failed as a whole, split at spaces.

    A space-joined run like "03-1234-5678 2024" (phone, then a year) is split and each
    piece of ≥ 7 digits is read on its own. Pieces are never recombined: "2024 1234
    5678 9012" does not yield a My Number from its last three groups (the design's
    regex rejects a My Number preceded by "digit + space" for the same reason).
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


def _digit_run_candidates(text: str, start: int, end: int) -> list[_Candidate]:
    readings = _read_run(text, start, end)
    if readings:
        return [_Candidate(start, end, readings)]
    if " " not in text[start:end]:
        return []
    out = []
    for s, e in _split_on_spaces(text, start, end):
        sub = _read_run(text, s, e)
        if sub:
            out.append(_Candidate(s, e, sub))
    return out


# ---------------------------------------------------------------------------
# the scanner
# ---------------------------------------------------------------------------


@dataclass
class _Scan:
    text: str
    settings: ScanSettings
    today: date
    hits: list[Hit] = field(default_factory=list)
    # Positions used by the postal code <-> address adjacency rule.
    addr_starts: list[int] = field(default_factory=list)
    postal_ends: list[int] = field(default_factory=list)
    # 12-digit numbers without context: check digit valid (kept for the list rule) and
    # the number of distinct ones with an invalid check digit.
    unlabelled_my_numbers: dict[str, Hit] = field(default_factory=dict)
    invalid_my_numbers: set[str] = field(default_factory=set)
    # Context words in text order: start, end, lower-cased word.
    word_starts: list[int] = field(default_factory=list)
    word_ends: list[int] = field(default_factory=list)
    words: list[str] = field(default_factory=list)

    def context(self, start: int, end: int) -> dict[str, int]:
        """Context words around [start, end), each with its distance in characters.

        The distance lets the scorer prefer the nearest label when both a positive and
        a negative word are in the window.

        A table cell separator (U+001F) bounds the window, so one cell's header does not
        become context for the next cell's value.
        """
        text, st = self.text, self.settings
        ws = max(0, start - st.context_before)
        we = min(len(text), end + st.context_after)
        cut = text.rfind("\x1f", ws, start)
        if cut >= 0:
            ws = cut + 1
        # After the value, only its own line: a label on the next line belongs to the
        # next value ("法人番号 7420…\nJANコード 2057…"). Before it, the window may
        # reach the line above, where forms put their labels.
        for stop in ("\x1f", "\n"):
            cut = text.find(stop, end, we)
            if cut >= 0:
                we = cut
        found: dict[str, int] = {}
        starts = self.word_starts
        i = bisect.bisect_left(starts, ws)
        while i < len(starts) and starts[i] < we:
            s, e, word = starts[i], self.word_ends[i], self.words[i]
            i += 1
            if e <= start:
                distance = start - e
            elif s >= end and e <= we:
                distance = s - end
            else:
                continue
            if distance < found.get(word, distance + 1):
                found[word] = distance
        return found

    def add(self, hit: Hit) -> None:
        if accept(hit, self.settings):
            self.hits.append(hit)


def accept(hit: Hit, settings: ScanSettings) -> bool:
    """Whether a scored value is reported: it qualifies (e-mail addresses always do,
    their count is the signal) and it is not one of the sender's own values."""
    if hit.score + 1e-9 < settings.min_score and hit.kind != EMAIL:
        return False
    return hit.key not in settings.ignore_values


def _clamp(x: float) -> float:
    return max(0.0, min(1.0, round(x, 3)))


# Presidio adds 0.35 for context; our table gives explicit "with context" scores for the
# kinds the design specifies, and this boost for the rest (phones: +0.2).
_PHONE_CONTEXT_BOOST = 0.2
_PHONE_FORMAT_BOOST = 0.1  # 03-1234-5678 is a phone number; 0312345678 may be anything
_NEGATIVE_PENALTY = 0.3
# Negative words are generic business words (注文, 請求, 見積, order): they lower a score
# only as the value's label, i.e. close to it, not anywhere in the sentence before.
_NEGATIVE_DISTANCE = 20
_POSTAL_ADDRESS_DISTANCE = 15


def _nearest_label(
    positive: dict[str, int], negative: dict[str, int]
) -> tuple[list[str], list[str]]:
    """When both kinds of words are in the window, the nearer one is the value's label.

    "カード番号 4111… 有効期限 12/28\n注文番号 4111…": the first number's nearest word
    is カード番号, the second's is 注文番号, although each window holds both.
    """
    if positive and negative:
        p, n = min(positive.values()), min(negative.values())
        if p < n:
            negative = {}
        elif n < p:
            positive = {}
    return sorted(positive), sorted(negative)


def _score_reading(
    scan: _Scan, cand: _Candidate, r: _Reading, context: dict[str, int]
) -> Hit:
    positive = _POSITIVE[r.kind].pick(context)
    if r.marked:
        # 〒 or the invoice-number T touching the value: the nearest label possible.
        positive["〒" if r.kind == POSTAL else "T"] = 0
    neg_list = _NEGATIVE.get(r.kind)
    negative = {}
    if neg_list is not None:
        negative = {
            w: d for w, d in neg_list.pick(context).items() if d <= _NEGATIVE_DISTANCE
        }
    pos_words, neg_words = _nearest_label(positive, negative)
    score = r.base
    if r.kind == PHONE:
        if r.formatted:
            score += _PHONE_FORMAT_BOOST
        if pos_words:
            score += _PHONE_CONTEXT_BOOST
    elif r.kind == POSTAL:
        # A prefecture-led address right after the code is as good as a label.
        near_address = _has_between(
            scan.addr_starts, cand.end, cand.end + _POSTAL_ADDRESS_DISTANCE
        )
        if pos_words or near_address:
            score = r.with_context or score
    elif pos_words and r.with_context is not None:
        score = r.with_context
    if neg_words:
        score -= _NEGATIVE_PENALTY
    return Hit(
        r.kind, r.key, _clamp(score), cand.start, r.raw, r.detail,
        tuple(pos_words), tuple(neg_words),
    )


def _has_between(sorted_positions: list[int], low: int, high: int) -> bool:
    i = bisect.bisect_left(sorted_positions, low)
    return i < len(sorted_positions) and sorted_positions[i] <= high


def _score_candidate(scan: _Scan, cand: _Candidate) -> None:
    context = scan.context(cand.start, cand.end)
    best: Hit | None = None
    for r in cand.readings:
        hit = _score_reading(scan, cand, r, context)
        if best is None or hit.score > best.score or (
            hit.score == best.score and _PRIORITY.index(hit.kind) < _PRIORITY.index(best.kind)
        ):
            best = hit
    if best is None:
        return
    if best.kind == MY_NUMBER and not best.context and not best.negative:
        if best.detail == "check_digit_invalid":
            scan.invalid_my_numbers.add(best.key)
        else:
            scan.unlabelled_my_numbers.setdefault(best.key, best)
        return
    scan.add(best)


def _my_number_list(scan: _Scan) -> None:
    """Several 12-digit numbers that ALL pass the mod-11 check are a My Number list even
    without a label (a column of numbers in a pasted spreadsheet): one random 12-digit
    number passes 1 time in 10, three in a row 1 in 1000. One failing number among
    them means it is a list of something else (order numbers), and nothing is raised."""
    st = scan.settings
    valid = scan.unlabelled_my_numbers
    if len(valid) < st.my_number_list_min or scan.invalid_my_numbers:
        return
    for hit in valid.values():
        hit.score = max(hit.score, st.my_number_list_score)
        hit.detail = "list"
        scan.add(hit)


# How far back to look for the start of an address's line. Bounded so that a text with
# many addresses and no line breaks stays linear; a header line listing addresses
# ("To: a@…, b@…, …") rarely runs longer.
_HEADER_LINE_MAX = 2000


def _is_quoted_header_line(text: str, pos: int) -> bool:
    low = max(0, pos - _HEADER_LINE_MAX)
    line_start = text.rfind("\n", low, pos) + 1
    if line_start == 0 and low > 0:
        return False
    head = text[line_start : line_start + 24].lstrip("> \t").lower()
    return head.startswith(cw.QUOTED_HEADER_PREFIXES)


# Scores for addresses (design §1.4: 0.5 → 0.75 with a prefecture → 0.85 with a postal
# code next to it). A prefecture and a city without a block number is a place name
# ("東京都千代田区にある本社"), not somebody's address.
_ADDR_FULL = 0.75
_ADDR_NO_BLOCK = 0.3
_ADDR_CITY_ONLY = 0.6  # no prefecture, found right after 住所/address
_ADDR_POSTAL_BOOST = 0.1
_ADDR_CONTEXT_BOOST = 0.1
_ADDR_MAX = 0.9


def _address_hit(scan: _Scan, start: int, city_end: int, prefecture: bool) -> Hit | None:
    text = scan.text
    block = _BLOCK.match(text, city_end, min(len(text), city_end + 45))
    end = block.end() if block else city_end
    if prefecture:
        score = _ADDR_FULL if block else _ADDR_NO_BLOCK
    elif block:
        score = _ADDR_CITY_ONLY
    else:
        return None
    # A postal code ending just before the address: "〒100-0001 東京都千代田区…".
    i = bisect.bisect_right(scan.postal_ends, start) - 1
    if i >= 0 and start - scan.postal_ends[i] <= _POSTAL_ADDRESS_DISTANCE and block:
        score += _ADDR_POSTAL_BOOST
    words = sorted(cw.ADDRESS.pick(scan.context(start, end)))
    if words:
        score += _ADDR_CONTEXT_BOOST
    key = re.sub(r"\s+", "", text[start:end])
    detail = "prefecture" if prefecture else "city"
    return Hit(
        ADDRESS, key, _clamp(min(score, _ADDR_MAX)), start, text[start:city_end], detail,
        tuple(words),
    )


def _dates_near(scan: _Scan, a_start: int, a_end: int, seen: set[int]) -> None:
    """Dates of birth next to a birth-date word: the first date after it, or one that
    ends right before it ("1985年4月12日生まれ"). Taking only the nearest date keeps
    the next field ("入社日: 2010年4月1日") out."""
    text = scan.text
    after_end = min(len(text), a_end + 40)
    cut = text.find("\x1f", a_end, after_end)
    if cut >= 0:
        after_end = cut
    found = DATE_RE.search(text, a_end, after_end)
    matches = [found] if found else []
    if not matches:
        before = None
        for m in DATE_RE.finditer(text, max(0, a_start - 30), a_start):
            before = m
        if before is not None and a_start - before.end() <= 3:
            matches.append(before)
    for m in matches:
        if m.start() in seen:
            continue
        parsed = parse_date(m, scan.today)
        if parsed is None:
            continue
        seen.add(m.start())
        scan.add(
            Hit(
                BIRTH_DATE, parsed.key, 0.8 if parsed.full else 0.5, m.start(), parsed.key,
                "era" if parsed.era else "western", (text[a_start:a_end].lower(),),
            )
        )


def scan_normalized(text: str, settings: ScanSettings) -> list[Hit]:
    """Scan already-normalised text; hits in text order (by kind within a position)."""
    scan = _Scan(text, settings, settings.today or date.today())
    candidates: list[_Candidate] = []
    pref_addresses: list[tuple[int, int]] = []
    dob_anchors: list[tuple[int, int]] = []
    addr_anchors: list[tuple[int, int]] = []

    for start, end in _char_spans(text):
        kind = _candidate_kind(text[start:end])
        if kind == _WORD_K:
            word = text[start:end].lower()
            if word in _ASCII_WORDS and cw.glued_after(text, end):
                continue
            scan.word_starts.append(start)
            scan.word_ends.append(end)
            scan.words.append(word)
            if word in _DOB_ANCHORS:
                dob_anchors.append((start, end))
            if word in _ADDRESS_ANCHORS:
                addr_anchors.append((start, end))
        elif kind == _RUN_K:
            if text[start] == "〒":  # the 〒 alternative: the run starts after the mark
                start += 2 if text[start + 1] == " " else 1
            candidates.extend(_digit_run_candidates(text, start, end))
        elif kind == _EMAIL_K:
            if not _is_quoted_header_line(text, start):
                address = text[start:end]
                scan.add(Hit(EMAIL, address.lower(), 0.3, start, address))
        elif kind == _ADDR_K:
            pref_addresses.append((start, end))
        else:  # _PAREN_K
            raw = text[start:end]
            phone = _phone_reading(_NON_DIGIT.sub("", raw), raw, formatted=True)
            if phone is not None:
                candidates.append(_Candidate(start, end, [phone]))

    scan.addr_starts = [s for s, _ in pref_addresses]
    scan.postal_ends = sorted(
        c.end for c in candidates if any(r.kind == POSTAL for r in c.readings)
    )
    for cand in candidates:
        _score_candidate(scan, cand)
    _my_number_list(scan)
    for s, e in pref_addresses:
        hit = _address_hit(scan, s, e, prefecture=True)
        if hit is not None:
            scan.add(hit)
    for _, e in addr_anchors:
        m = _CITY_ADDRESS.search(text, e, min(len(text), e + 30))
        # Skip when a prefecture-led candidate already covers this address.
        if m and not _has_between(scan.addr_starts, e, m.end()):
            hit = _address_hit(scan, m.start(), m.end(), prefecture=False)
            if hit is not None:
                scan.add(hit)
    seen_dates: set[int] = set()
    for s, e in dob_anchors:
        _dates_near(scan, s, e, seen_dates)

    scan.hits.sort(key=lambda h: h.pos)
    return scan.hits


def line_groups(text: str, hits: list[Hit], max_gap: int) -> list[int]:
    """A record-group id per hit (hits sorted by position): same line and ≤ max_gap
    characters from the previous hit (design §1.4 "record unit")."""
    ids: list[int] = []
    group = 0
    prev = -1
    for h in hits:
        if prev >= 0 and (h.pos - prev > max_gap or text.find("\n", prev, h.pos) >= 0):
            group += 1
        ids.append(group)
        prev = h.pos
    return ids


# ---------------------------------------------------------------------------
# typed table cells
# ---------------------------------------------------------------------------

# A cell that is exactly one value of its column's class skips the text scanner: in a
# 20,000-row customer list most cells are like that, and reading them directly is
# several times cheaper than pattern search + context lookup per cell.
_CELL_PHONE = re.compile(r"\+?\(?\d[\d\-‐‑‒–—―−﹣ー. ()]{7,18}\d")
_CELL_EMAIL = re.compile(_EMAIL)
TYPED_CELL_CLASSES = frozenset({"phone", "email", "birth_date"})


def scan_cell(cls: str, cell: str, header: str, today: date) -> Hit | None:
    """The value of a typed cell (header class `cls`), scored with its header as the
    label; None when the cell is not exactly one such value (the caller then gives it
    to the text scanner, which handles "03-1234-5678（代表）" and other mixtures)."""
    label = (header.lower(),) if header else ()
    if cls == "phone":
        if len(cell) in (9, 10) and cell.isascii() and cell.isdigit() and cell[0] != "0":
            # typed into Excel as a number, which drops the leading 0 (9012345678)
            cell = "0" + cell
        if not _CELL_PHONE.fullmatch(cell):
            return None
        if cell[0] == "+":
            readings = _read_intl_phone(cell)
        else:
            digits = _NON_DIGIT.sub("", cell)
            phone = _phone_reading(digits, cell, formatted=len(digits) != len(cell))
            readings = [phone] if phone is not None else []
        if not readings:
            return None
        r = readings[0]
        score = r.base + (_PHONE_FORMAT_BOOST if r.formatted else 0.0)
        score += _PHONE_CONTEXT_BOOST if label else 0.0
        return Hit(PHONE, r.key, _clamp(score), -1, r.raw, r.detail, label)
    if cls == "email":
        if not _CELL_EMAIL.fullmatch(cell):
            return None
        return Hit(EMAIL, cell.lower(), 0.3, -1, cell)
    if cls == "birth_date":
        m = DATE_RE.fullmatch(cell)
        parsed = parse_date(m, today) if m else None
        if parsed is None:
            return None
        return Hit(
            BIRTH_DATE, parsed.key, 0.8 if parsed.full else 0.5, -1, parsed.key,
            "era" if parsed.era else "western", label,
        )
    return None
