"""The text scanner behind guard.inspect.pii: candidates, validation, context, scores.

Pipeline per text (Presidio's model, design §1.1/§1.4, with the changes the design asks
for: character-window context, negative context, no "checksum alone = certain"):

1. NFKC-normalise (full-width digits → ASCII, half-width katakana → full-width).
2. ONE google-re2 pass with a few named alternatives finds candidates: e-mail
   addresses, runs of ≥ 7 digits with single separators, parenthesised phone numbers,
   prefecture-led addresses, and "anchor" words (生年月日, 住所, DOB...) for the
   detectors that only make sense next to a label. re2 is a DFA: ~300 MB/s here on
   plain text, where Python `re` with the same alternation manages ~5 MB/s
   (performance.md §6). Per match, the re2 wrapper costs ~10 µs, so the pattern is
   built to match rarely on ordinary prose.
3. Python validates each candidate (check digits, phonenumbers, real dates) and scores
   it: base score, raised by context words found in a character window around it,
   lowered by negative context words. Values below `min_score` are dropped.

Numeric candidates are whole digit runs, not fixed-width windows: a 16-digit card is
one candidate, so its first 12 digits can never be read as a My Number, and overlap
resolution is simply "pick the best-scoring reading of the run" (O(n), design §1.5).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import phonenumbers
import re2

from guard.inspect import context_words as cw
from guard.inspect.checkdigits import is_valid_card, is_valid_corporate_number, is_valid_my_number
from guard.inspect.pii_dates import DATE_RE, parse_date

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
# ≥ 7 digits: the shortest thing we want is a postal code (123-4567); shorter runs are
# amounts, years and counts, and skipping them keeps the match rate low on prose.
_DIGIT_RUN = rf"\+?\d(?:{_SEP}?\d){{6,}}"
_PREF_ADDRESS = rf"(?:{'|'.join(PREFECTURES)})[^{_ADDR_STOP}\d]{{1,12}}?[市区町村郡]"

# Group numbers, in order; the re2 wrapper's `lastgroup` is slow, so dispatch by index.
_G_EMAIL, _G_PAREN, _G_RUN, _G_ADDR, _G_DOB, _G_ADDR_ANCHOR = 1, 2, 3, 4, 5, 6
CANDIDATES = re2.compile(
    f"({_EMAIL})|({_PAREN_PHONE})|({_DIGIT_RUN})|({_PREF_ADDRESS})"
    f"|({cw.word_pattern(cw.BIRTH_DATE.words)})|({cw.word_pattern(cw.ADDRESS.words)})"
)

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
    sample: str  # masked, safe to store and show
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


def normalize(text: str) -> str:
    """NFKC; cheap when the text is already normalised (ASCII, most kanji/kana)."""
    return unicodedata.normalize("NFKC", text)


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


def mask_phone(raw: str, keep_head: int = 0, keep_tail: int = 4) -> str:
    """Keep the separators, the prefix (first group, or 3 digits) and the last four."""
    total = sum(c.isdigit() for c in raw)
    if not keep_head:
        first = re.match(r"\(?(\d+)", raw)
        group = len(first.group(1)) if first else 0
        keep_head = group if 2 <= group < total - keep_tail else 3
    out: list[str] = []
    seen = 0
    for c in raw:
        if c.isdigit():
            seen += 1
            out.append(c if seen <= keep_head or seen > total - keep_tail else "*")
        else:
            out.append(c)
    return "".join(out)


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


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
    sample: str
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


def _read_run(run: str, prev: str, prev2: str, nxt: str) -> list[_Reading]:
    """All plausible readings of one digit run (separators included)."""
    if run[0] == "+":
        return _read_intl_phone(run)
    parts = _NON_DIGIT.split(run)
    groups = [len(p) for p in parts]
    digits = "".join(parts)
    n = len(digits)
    seps = {c for c in run if not c.isdigit()}
    one_sep = len(seps) <= 1
    # A run glued to letters or to code punctuation is an identifier (ABC1234…, X-1234…).
    glued = (
        _ascii_letter(prev) or _ascii_letter(nxt) or prev in _CODE_BEFORE or nxt in _CODE_AFTER
    )
    out: list[_Reading] = []

    if n == 7:
        postal_mark = prev == "〒" or (prev == " " and prev2 == "〒")
        if (groups == [3, 4] and seps <= _HYPHENS) or (
            postal_mark and groups in ([7], [3, 4])
        ):
            out.append(
                _Reading(POSTAL, digits, f"{digits[:3]}-****", "", 0.1, 0.6, marked=postal_mark)
            )
    if n in (10, 11) and digits[0] == "0" and len(groups) <= 4:
        kind = _jp_phone_type(digits)
        if kind is not None:
            detail, base = _PHONE_TYPES.get(kind, ("other", 0.4))
            out.append(
                _Reading(PHONE, digits, mask_phone(run), detail, base, formatted=bool(seps))
            )
    if glued and not (n == 13 and prev == "T"):
        return out
    if n == 12 and one_sep and groups in ([12], [4, 4, 4]):
        if is_valid_my_number(digits):
            out.append(_Reading(MY_NUMBER, digits, mask_my_number(digits), "", 0.35, 0.9))
        elif len(set(digits)) > 1:
            # A mistyped check digit next to "マイナンバー" is still somebody's number:
            # reported at the qualifying floor, never at hold level. Without context
            # the base 0 drops it.
            out.append(
                _Reading(MY_NUMBER, digits, mask_my_number(digits), "check_digit_invalid",
                         0.0, 0.5)
            )
    if n == 13 and one_sep and groups in ([13], [1, 4, 4, 4]) and is_valid_corporate_number(
        digits
    ):
        out.append(
            _Reading(CORPORATE, digits, mask_corporate(digits), "", 0.2, 0.6,
                     marked=prev == "T" and not _ascii_letter(prev2))
        )
    if prev != "T" and 13 <= n <= 19 and one_sep and (
        len(groups) == 1
        or groups in ([4, 6, 5], [4, 6, 4])
        or (all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4)
    ):
        brand = is_valid_card(digits)
        if brand is not None:
            out.append(_Reading(CARD, digits, mask_card(digits), brand, 0.5, 0.95))
    return out


def _read_intl_phone(run: str) -> list[_Reading]:
    parsed = _intl_phone(run)
    if parsed is None:
        return []
    key, kind = parsed
    detail, base = _PHONE_TYPES.get(kind, ("other", 0.4))
    return [_Reading(PHONE, key, mask_phone(run, keep_head=4), detail, base, formatted=True)]


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
    readings = _read_run(
        text[start:end], _char(text, start - 1), _char(text, start - 2), _char(text, end)
    )
    if readings:
        return [_Candidate(start, end, readings)]
    if " " not in text[start:end]:
        return []
    out = []
    for s, e in _split_on_spaces(text, start, end):
        sub = _read_run(text[s:e], _char(text, s - 1), _char(text, s - 2), _char(text, e))
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

    def context(self, start: int, end: int) -> dict[str, int]:
        """Context words around [start, end) with their distances (see ContextMatcher).

        A table cell separator (U+001F) bounds the window, so one cell's header does not
        become context for the next cell's value.
        """
        text, st = self.text, self.settings
        ws = max(0, start - st.context_before)
        we = min(len(text), end + st.context_after)
        cut = text.rfind("\x1f", ws, start)
        if cut >= 0:
            ws = cut + 1
        cut = text.find("\x1f", end, we)
        if cut >= 0:
            we = cut
        return _MATCHER.find(text, start, end, ws, we)

    def add(self, hit: Hit) -> None:
        if hit.score + 1e-9 < self.settings.min_score and hit.kind != EMAIL:
            return
        if hit.key in self.settings.ignore_values:
            return
        self.hits.append(hit)


def _clamp(x: float) -> float:
    return max(0.0, min(1.0, round(x, 3)))


_POSITIVE = {
    MY_NUMBER: cw.MY_NUMBER,
    CORPORATE: cw.CORPORATE,
    CARD: cw.CARD,
    PHONE: cw.PHONE,
    POSTAL: cw.POSTAL,
}
_NEGATIVE = {
    MY_NUMBER: cw.ID_NEGATIVE,
    CORPORATE: cw.CORPORATE_NEGATIVE,
    CARD: cw.ID_NEGATIVE,
    PHONE: cw.ID_NEGATIVE,
}
_MATCHER = cw.ContextMatcher([*_POSITIVE.values(), *_NEGATIVE.values(), cw.ADDRESS])
# Presidio adds 0.35 for context; our table gives explicit "with context" scores for the
# kinds the design specifies, and this boost for the rest (phones: +0.2).
_PHONE_CONTEXT_BOOST = 0.2
_PHONE_FORMAT_BOOST = 0.1  # 03-1234-5678 is a phone number; 0312345678 may be anything
_NEGATIVE_PENALTY = 0.3
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
    neg_list = _NEGATIVE.get(r.kind)
    pos_words, neg_words = _nearest_label(
        _POSITIVE[r.kind].pick(context), neg_list.pick(context) if neg_list else {}
    )
    score = r.base
    if r.kind == PHONE:
        if r.formatted:
            score += _PHONE_FORMAT_BOOST
        if pos_words:
            score += _PHONE_CONTEXT_BOOST
    elif r.kind == POSTAL:
        near_address = _has_between(
            scan.addr_starts, cand.end, cand.end + _POSTAL_ADDRESS_DISTANCE
        )
        if pos_words or r.marked or near_address:
            score = r.with_context or score
    elif pos_words or r.marked:
        score = r.with_context if r.with_context is not None else score
        if r.marked and not pos_words:
            pos_words = ["T"]  # invoice registration number prefix
    if neg_words:
        score -= _NEGATIVE_PENALTY
    return Hit(
        r.kind, r.key, _clamp(score), cand.start, r.sample, r.detail,
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


def _is_quoted_header_line(text: str, pos: int) -> bool:
    line_start = text.rfind("\n", 0, pos) + 1
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
    sample = text[start:city_end] + "…"
    detail = "prefecture" if prefecture else "city"
    return Hit(ADDRESS, key, _clamp(min(score, _ADDR_MAX)), start, sample, detail, tuple(words))


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
        y = parsed.key[:4]
        scan.add(
            Hit(
                BIRTH_DATE, parsed.key, 0.8 if parsed.full else 0.5, m.start(), f"{y}-**-**",
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

    for m in CANDIDATES.finditer(text):
        start, end = m.span()
        if m.start(_G_RUN) >= 0:
            candidates.extend(_digit_run_candidates(text, start, end))
        elif m.start(_G_EMAIL) >= 0:
            if not _is_quoted_header_line(text, start):
                address = m.group(_G_EMAIL)
                scan.add(Hit(EMAIL, address.lower(), 0.3, start, mask_email(address)))
        elif m.start(_G_ADDR) >= 0:
            pref_addresses.append((start, end))
        elif m.start(_G_PAREN) >= 0:
            readings = _read_run(_NON_DIGIT.sub("-", m.group(_G_PAREN)).strip("-"), "", "", "")
            for r in readings:
                r.formatted = True
                r.sample = mask_phone(m.group(_G_PAREN))
            if readings:
                candidates.append(_Candidate(start, end, readings))
        elif m.start(_G_DOB) >= 0:
            if not _ascii_letter(_char(text, end)) or text[end - 1] == ".":
                dob_anchors.append((start, end))
        elif m.start(_G_ADDR_ANCHOR) >= 0 and not _ascii_letter(_char(text, end)):
            addr_anchors.append((start, end))

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
