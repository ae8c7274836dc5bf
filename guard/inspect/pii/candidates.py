"""Where the candidates are: ONE google-re2 pass over the UTF-8 bytes of a text finds
every value worth reading and every context word.

E-mail addresses, digit runs (≥ 10 digits, or a postal code), parenthesised phone
numbers, prefecture-led addresses, and the context words of every detector. RE2 is a
DFA (hundreds of MB/s here on plain text, where Python `re` with the same alternation
manages ~5 MB/s); what costs is the ~2 µs of Python per match, so the pattern is built
to match rarely on ordinary prose. The scanner (guard.inspect.pii.scan) reads and
scores what this finds.
"""

from __future__ import annotations

from collections.abc import Iterator

import re2

from guard.inspect.pii import context_words as cw
from guard.inspect.pii.hits import ADDRESS, CARD, CORPORATE, MY_NUMBER, PHONE, POSTAL
from guard.inspect.pii.numbers import HYPHEN, SEP

PREFECTURES: tuple[str, ...] = (
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県",
    "群馬県", "埼玉県", "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県",
    "福井県", "山梨県", "長野県", "岐阜県", "静岡県", "愛知県", "三重県", "滋賀県",
    "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県", "鳥取県", "島根県", "岡山県",
    "広島県", "山口県", "徳島県", "香川県", "愛媛県", "高知県", "福岡県", "佐賀県",
    "長崎県", "熊本県", "大分県", "宮崎県", "鹿児島県", "沖縄県",
)

# Characters that end an address's "town" part: whitespace and punctuation.
ADDR_STOP = r"\s、。,，:;()「」<>\"'"


EMAIL_PATTERN = (
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
# (03)1234-5678, (090) 1234 5678, 03(1234)5678
_PAREN_PHONE = rf"\(0\d{{1,4}}\) ?\d{{1,4}}{SEP}?\d{{4}}|0\d{{1,4}}\(\d{{1,4}}\)\d{{4}}"
# Digit runs worth reading: ≥ 10 digits (phones 10-11, My Number 12, corporate 13,
# cards 13-19), or exactly a postal code (123-4567 with a hyphen, or after 〒). Runs of
# 7-9 digits are dates (2026-11-12), amounts and part numbers; leaving them out of the
# pattern keeps the match rate, and so the per-match cost, low on ordinary prose.
_DIGIT_RUN = (
    rf"\+?\d(?:{SEP}?\d){{9,}}|\d{{3}}{HYPHEN}\d{{4}}|〒 ?\d{{3}}{HYPHEN}?\d{{4}}"
)
_PREF_ADDRESS = rf"(?:{'|'.join(PREFECTURES)})[^{ADDR_STOP}\d]{{1,12}}?[市区町村郡]"

# Context words per kind: positive ones raise a reading's score, negative ones (order
# and invoice labels...) lower it.
POSITIVE = {
    MY_NUMBER: cw.MY_NUMBER,
    CORPORATE: cw.CORPORATE,
    CARD: cw.CARD,
    PHONE: cw.PHONE,
    POSTAL: cw.POSTAL,
    ADDRESS: cw.ADDRESS,
}
NEGATIVE = {
    POSTAL: cw.ID_NEGATIVE,
    MY_NUMBER: cw.ID_NEGATIVE,
    CORPORATE: cw.CORPORATE_NEGATIVE,
    CARD: cw.ID_NEGATIVE,
    PHONE: cw.ID_NEGATIVE,
}
# Every context word, including the anchors that start the date-of-birth and
# no-prefecture address searches.
WORDS = frozenset(
    w for lst in (*POSITIVE.values(), *NEGATIVE.values(), cw.BIRTH_DATE) for w in lst.words
)
ASCII_WORDS = frozenset(w for w in WORDS if w.isascii())
DOB_ANCHORS = frozenset(cw.BIRTH_DATE.words)
ADDRESS_ANCHORS = frozenset(cw.ADDRESS.words)

# One pattern for candidates AND context words, no capturing groups, run over the UTF-8
# bytes of the text. On the benchmark corpus (1 MiB, ~900 matches) the candidate part
# took 16 ms as str with six groups and 4 ms as bytes without groups: the google-re2
# wrapper converts offsets in Python for str input, and submatches make RE2 run its NFA
# over each match. The scanner tells the alternatives apart from the matched text
# (candidate_kind). Context words in the same pass cost one more match each, instead
# of one extra search per candidate window.
CANDIDATES = re2.compile(
    "|".join(
        (EMAIL_PATTERN, _PAREN_PHONE, _DIGIT_RUN, _PREF_ADDRESS, cw.word_pattern(WORDS))
    ).encode()
)
_RUN_START = frozenset("+0123456789〒")

EMAIL_K, PAREN_K, RUN_K, ADDR_K, WORD_K = range(5)


def candidate_kind(match: str) -> int:
    """Which alternative of CANDIDATES produced `match`. They cannot be confused: only
    e-mail has "@", only runs and phones start with a digit, +, 〒 or "(", words are a
    known list, and what is left is a prefecture-led address."""
    if "@" in match:
        return EMAIL_K
    first = match[0]
    if first in _RUN_START:
        return PAREN_K if "(" in match else RUN_K
    if first == "(":
        return PAREN_K
    if match.lower() in WORDS:
        return WORD_K
    return ADDR_K


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


def char_spans(text: str) -> Iterator[tuple[int, int]]:
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


