"""The text scanner behind guard.inspect.pii.detect: candidates in context, scored.

Pipeline per text (Presidio's model, with changes: a character window for context,
negative context, no "checksum alone = certain"):

1. NFKC-normalise (guard.mail.nfkc), only where the text has characters
   NFKC changes.
2. ONE google-re2 pass finds candidates and context words (guard.inspect.pii.candidates).
3. Python validates each candidate (check digits, phonenumbers, real dates: the digit
   runs in guard.inspect.pii.numbers) and scores it: base score, raised by context
   words in a character window around it, lowered by negative context words next to
   it. Values below `min_score` are dropped. Dates of birth and addresses without a
   prefecture are only searched for next to their labels (生年月日, 住所...), so plain
   dates and town names cost nothing.

Overlapping readings of one digit run are resolved by picking the best-scoring one
(O(n)).

Why one module of some 410 lines: scoring is one job. Every score reads the same scan
state (the context-word positions, the labels, the other readings of a run); what does
not need that state (finding candidates, reading digit runs, masking) is in the
neighbouring modules.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field, replace
from datetime import date

from guard.inspect.pii import context_words as cw
from guard.inspect.pii.candidates import (
    ADDR_K,
    ADDR_STOP,
    ADDRESS_ANCHORS,
    ASCII_WORDS,
    DOB_ANCHORS,
    EMAIL_K,
    NEGATIVE,
    POSITIVE,
    RUN_K,
    WORD_K,
    candidate_kind,
    char_spans,
)
from guard.inspect.pii.dates import DATE_RE, parse_date
from guard.inspect.pii.hits import (
    ADDRESS,
    BIRTH_DATE,
    CARD,
    CORPORATE,
    EMAIL,
    MY_NUMBER,
    PHONE,
    POSTAL,
    Hit,
    ScanSettings,
    accept,
    clamp,
)
from guard.inspect.pii.numbers import (
    NON_DIGIT,
    PHONE_CONTEXT_BOOST,
    PHONE_FORMAT_BOOST,
    Candidate,
    Reading,
    RunReader,
    phone_reading,
)

# When one digit run can be read several ways with equal scores, the earlier kind wins.
_PRIORITY = (CARD, MY_NUMBER, CORPORATE, PHONE, POSTAL)

# After the city/ward/town part: the rest of the town name, then a block number
# (丸の内1-1-1, 千代田1丁目2番3号, 北1条西2丁目, 123番地). Python `re`: it runs only at
# address candidates, on ≤ 45 characters.
_BLOCK = re.compile(
    rf"[^{ADDR_STOP}]{{0,20}}?"
    r"(?:[一二三四五六七八九十\d]{1,3}丁目(?:\d{1,5}(?:番地?|-|の)?(?:\d{1,5}号?)?)?"
    r"|\d{1,5}(?:番地?|-|の)\d{1,5}(?:(?:番|号|-|の)\d{1,5})*号?"
    r"|\d{1,5}番地)"
)
# An address without a prefecture is only believed right after 住所/所在地/address.
_CITY_ADDRESS = re.compile(rf"[^{ADDR_STOP}\d]{{1,12}}?[市区町村郡]")


# --- the scan of one text ------------------------------------------------------------------

@dataclass
class _Scan:
    """One text being scanned: its hits so far and what the scoring rules look up."""

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
    # id(readings) -> (readings, best hit at position 0) for candidates without context
    no_context: dict[int, tuple[list[Reading], Hit | None]] = field(default_factory=dict)

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
        starts = self.word_starts
        i = bisect.bisect_left(starts, ws)
        if i == len(starts) or starts[i] >= we:
            return {}  # no word in the widest window (the cuts below only narrow it)
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


# --- scoring --------------------------------------------------------------------------------

# Presidio adds 0.35 for context; here the readings carry explicit "with context"
# scores (guard.inspect.pii.numbers), phones a fixed boost.
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
    scan: _Scan, cand: Candidate, r: Reading, context: dict[str, int]
) -> Hit:
    positive = POSITIVE[r.kind].pick(context)
    if r.marked:
        # 〒 or the invoice-number T touching the value: the nearest label possible.
        positive["〒" if r.kind == POSTAL else "T"] = 0
    neg_list = NEGATIVE.get(r.kind)
    negative = {}
    if neg_list is not None:
        negative = {
            w: d for w, d in neg_list.pick(context).items() if d <= _NEGATIVE_DISTANCE
        }
    pos_words, neg_words = _nearest_label(positive, negative)
    score = r.base
    if r.kind == PHONE:
        if r.formatted:
            score += PHONE_FORMAT_BOOST
        if pos_words:
            score += PHONE_CONTEXT_BOOST
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
        r.kind, r.key, clamp(score), cand.start, r.raw, r.detail,
        tuple(pos_words), tuple(neg_words),
    )


def _has_between(sorted_positions: list[int], low: int, high: int) -> bool:
    i = bisect.bisect_left(sorted_positions, low)
    return i < len(sorted_positions) and sorted_positions[i] <= high


def _best_reading(
    scan: _Scan, cand: Candidate, context: dict[str, int]
) -> Hit | None:
    best: Hit | None = None
    for r in cand.readings:
        hit = _score_reading(scan, cand, r, context)
        if best is None or hit.score > best.score or (
            hit.score == best.score and _PRIORITY.index(hit.kind) < _PRIORITY.index(best.kind)
        ):
            best = hit
    return best


def _score_candidate(scan: _Scan, cand: Candidate) -> None:
    context = scan.context(cand.start, cand.end)
    if context:
        best = _best_reading(scan, cand, context)
    else:
        # Without context words a reading's score depends on the reading alone (and a
        # postal code's on the addresses after it): candidates sharing their readings
        # (numbers.RunReader) are scored once. Kept: (readings, best hit or None when
        # nothing is kept of it: no reading, or scan.add would not take it).
        memo = scan.no_context.get(id(cand.readings))
        if memo is None or memo[0] is not cand.readings:
            if any(r.kind == POSTAL for r in cand.readings):
                memo = None
            else:
                best = _best_reading(scan, cand, context)
                if best is not None and best.kind != MY_NUMBER \
                        and not accept(best, scan.settings):
                    best = None
                memo = scan.no_context[id(cand.readings)] = (cand.readings, best)
        if memo is None:
            best = _best_reading(scan, cand, context)
        elif memo[1] is None:
            return
        else:
            best = replace(memo[1], pos=cand.start)
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


# Scores for addresses (0.75 with a prefecture and a block number → 0.85 with a postal
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
        ADDRESS, key, clamp(min(score, _ADDR_MAX)), start, text[start:city_end], detail,
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
    candidates: list[Candidate] = []
    pref_addresses: list[tuple[int, int]] = []
    dob_anchors: list[tuple[int, int]] = []
    addr_anchors: list[tuple[int, int]] = []
    runs = RunReader(text)

    for start, end in char_spans(text):
        kind = candidate_kind(text[start:end])
        if kind == WORD_K:
            word = text[start:end].lower()
            if word in ASCII_WORDS and cw.glued_after(text, end):
                continue
            scan.word_starts.append(start)
            scan.word_ends.append(end)
            scan.words.append(word)
            if word in DOB_ANCHORS:
                dob_anchors.append((start, end))
            if word in ADDRESS_ANCHORS:
                addr_anchors.append((start, end))
        elif kind == RUN_K:
            if text[start] == "〒":  # the 〒 alternative: the run starts after the mark
                start += 2 if text[start + 1] == " " else 1
            candidates.extend(runs.candidates(start, end))
        elif kind == EMAIL_K:
            if not _is_quoted_header_line(text, start):
                address = text[start:end]
                scan.add(Hit(EMAIL, address.lower(), 0.3, start, address))
        elif kind == ADDR_K:
            pref_addresses.append((start, end))
        else:  # PAREN_K
            raw = text[start:end]
            phone = phone_reading(NON_DIGIT.sub("", raw), raw, formatted=True)
            if phone is not None:
                candidates.append(Candidate(start, end, [phone]))

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
    characters from the previous hit: one record (pii.records)."""
    ids: list[int] = []
    group = 0
    prev = -1
    for h in hits:
        if prev >= 0 and (h.pos - prev > max_gap or text.find("\n", prev, h.pos) >= 0):
            group += 1
        ids.append(group)
        prev = h.pos
    return ids

