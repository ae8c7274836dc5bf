"""Personal-data detectors: findings for My Number, cards, phones, addresses, people lists.

One job, longer than most modules: hits (from the text scanner and the table reader)
become one finding per symbol per `where`, with distinct-value counts, records and
masked evidence. The symbol reference below is a tenth of it; most of the rest is the
accumulator that counts distinct values across the texts and tables of one `where`,
which belongs with the symbols it produces (splitting them would spread each symbol's
rule over two files).

Public API:

    scan_texts(chunks, limits)  -> list[Finding]   # chunks: .where, .text
    scan_tables(tables, limits) -> list[Finding]   # tables: .where, .rows
    scan(texts, tables, limits) -> list[Finding]   # both, counted together per `where`

Values of the organisation's own contact data (`own`, guard.inspect.owndata) are not
counted, nor contact data in the sender's signature (where "body.signature") while it
is one person's block (at most one record and three values of each kind: a list put
after a "-- " line counts in full); findings at a place where some were left out say
how many in evidence["own_discounted"].

One Finding per symbol per `where`, and one at "body.all" (the body's parts together)
for a symbol whose count there is higher than at each part. `count` is the number of
DISTINCT values (the same
card quoted five times in a reply chain is one card), `score` the best value's score,
and `evidence` holds masked samples, the kinds seen (card brands, phone types...), and
the context words that raised or lowered scores. Full values never leave this module.

Symbols and what their scores mean (a value "qualifies" at min_score 0.5; the example
policy, policies/policy.yaml, acts from 0.85 for My Number and 0.9 for cards):

  pii.my_number         12 digits with a valid check digit: 0.35 alone (dropped),
                        0.9 next to マイナンバー/個人番号/my number. A wrong check digit
                        next to such a word: 0.5. A list of ≥ 3 numbers that ALL pass
                        the check (1 in 1000 by chance): 0.6.
  pii.corporate_number  法人番号: public data, published by the NTA. 0.6 at most (with
                        context or a T prefix); it exists to label these numbers so they
                        are not counted as anything else. Never a reason to hold alone.
  pii.card              Luhn + IIN/length table: 0.5 alone, 0.95 with card words,
                        -0.3 next to 注文/請求/invoice/order... (so a Luhn-valid order
                        number never reaches hold level).
  pii.phone             phonenumbers-valid Japanese (or +CC) numbers; mobile 0.6,
                        fixed/050 0.4, toll-free/0570 0.3; +0.1 when written with
                        separators, +0.2 with 電話/TEL/携帯...
  pii.postal_code       123-4567 (hyphen needed) or 〒1234567: 0.6 with 〒/郵便番号 or
                        an address right after it, else dropped.
  pii.address           prefecture + city/ward/town + block number: 0.75, +0.1 with a
                        postal code before it, +0.1 next to 住所. Without a prefecture,
                        only right after 住所/所在地/address (0.6).
  pii.birth_date        a real date (Western or 明治..令和, incl. 元年 and S58.1.2) next
                        to 生年月日/誕生日/DOB: 0.8; year or year-month only: 0.5.
  pii.email             distinct addresses, 0.3 each (the count is the signal), minus
                        those on quoted-reply header lines (From:, 差出人: ...).
  pii.people_list       a table whose header has ≥ 2 personal-data column classes (one
                        of them name or e-mail) with values that fit, and ≥ min rows;
                        count = data rows. 0.75, +0.1 for ≥ 3 classes, +0.1 for ID,
                        date-of-birth or sensitive (病歴, 性別...) columns. The table is
                        a spreadsheet's or CSV's, or one found in a text (a list pasted
                        into the body, a Word table, a PDF roster: texttables).
  pii.records           lines/rows holding ≥ 2 different kinds of personal data (name,
                        phone, e-mail, address, birth date, My Number, card); count =
                        distinct records.

pii.records and pii.people_list carry evidence["lines"]: the distinct non-empty lines
of the texts and the data rows of the tables at that `where`, so a policy can relate
the count to the size of the message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol

import re2

from guard.inspect.finding import Finding
from guard.inspect.owndata import OwnContacts
from guard.inspect.pii import context_words as cw
from guard.inspect.pii.candidates import WORD_K, byte_spans, candidate_kind
from guard.inspect.pii.hits import (
    ADDRESS,
    BIRTH_DATE,
    CARD,
    CORPORATE,
    EMAIL,
    MY_NUMBER,
    NAME,
    PHONE,
    POSTAL,
    RECORD_KINDS,
    Hit,
    ScanSettings,
    accept,
)
from guard.inspect.pii.masks import mask, value_key
from guard.inspect.pii.scan import line_groups, scan_normalized
from guard.inspect.pii.tables import PeopleList, TableText, table_text
from guard.inspect.pii.texttables import find_tables as tables_in
from guard.mail.bodyparts import SIGNATURE, WHOLE, body_part, part_of
from guard.mail.nfkc import normalize

__all__ = [
    "PiiLimits",
    "TableLike",
    "TextLike",
    "scan",
    "scan_tables",
    "scan_texts",
    "value_key",
]


class TextLike(Protocol):
    @property
    def where(self) -> str: ...

    @property
    def text(self) -> str: ...


class TableLike(Protocol):
    @property
    def where(self) -> str: ...

    @property
    def rows(self) -> Sequence[Sequence[Any]]: ...


@dataclass(frozen=True)
class PiiLimits:
    """Thresholds and safety limits for the detectors (all per-tenant settable)."""

    # A value counts ("qualifies") when its score reaches this.
    min_score: float = 0.5
    # Values at or above this are counted in evidence["strong"] (where the example
    # policy acts: My Number ≥ 0.85, card ≥ 0.9).
    strong_score: float = 0.85
    # Context window in characters; Japanese has no spaces, so windows, not tokens.
    context_before: int = 50
    context_after: int = 30
    # Characters scanned per text chunk (as many as extraction keeps per attachment,
    # ExtractLimits.max_text_chars). The rest is not scanned and the findings say
    # evidence["truncated"] = True.
    max_chars: int = 20_000_000
    # Cells read per table (as many as extraction reads per workbook, max_cells); the
    # people-list row count covers all of them. The value detectors (phones, e-mails...
    # in cells) see the first max_scan_cells, ~2 s of CPU; evidence["truncated"] says
    # when they stopped.
    max_table_cells: int = 1_000_000
    max_scan_cells: int = 200_000
    # The same for a text: the value detectors read it up to the end of the line of its
    # max_scan_values-th value candidate (e-mail, digit run, prefecture address); a
    # Word roster of 900,000 values took 20 s. After that only the windows around My
    # Number and card context words are read (max_strong_windows of them), so a My
    # Number or card number with its words is still found anywhere in the text; other
    # values there are not counted, and evidence["truncated"] says so.
    max_scan_values: int = 200_000
    max_strong_windows: int = 2_000
    # Header row searched for in the first rows; people list needs this many data rows.
    header_rows: int = 10
    people_list_min_rows: int = 3
    # Column validation: sampled values per column, share that must fit the class.
    column_sample: int = 500
    column_valid_ratio: float = 0.6
    # Two values more than this many characters apart on one line are not one record.
    record_gap: int = 200
    # My Number lists: this many distinct 12-digit numbers, ALL with a valid check
    # digit, qualify without context words (random chance 0.1 ** 3).
    my_number_list_min: int = 3
    my_number_list_score: float = 0.6
    # Masked samples kept in evidence per finding.
    max_samples: int = 5
    # Values never reported: the sender organisation's own phone numbers, address,
    # corporate number (keys from value_key()).
    ignore_values: frozenset[str] = frozenset()
    # "Today" for the age 0..120 check on birth dates (None: the real today).
    today: date | None = None

    def settings(self) -> ScanSettings:
        return ScanSettings(
            min_score=self.min_score,
            context_before=self.context_before,
            context_after=self.context_after,
            ignore_values=self.ignore_values,
            today=self.today,
            my_number_list_min=self.my_number_list_min,
            my_number_list_score=self.my_number_list_score,
        )


# In the sender's signature (where "body.signature") these are the sender's own contact
# data; cards, My Numbers and dates of birth there are still reported.
_SENDER_KINDS = frozenset({PHONE, ADDRESS, POSTAL, EMAIL, NAME})
# ...while the signature is one person's block: at most this many records (a line with
# 2+ kinds) and distinct values of each kind (a TEL, a FAX and a mobile). Beyond that
# it is a list put where a signature goes, and all its values count.
_SENDER_MAX_RECORDS = 1
_SENDER_MAX_VALUES = 3


def _one_persons_block(hits: list[Hit], groups: list[int]) -> bool:
    """Whether the contact data of a signature is what one sender's block holds."""
    values: dict[str, set[str]] = {}
    kinds_by_group: dict[int, set[str]] = {}
    for hit, group in zip(hits, groups, strict=True):
        if hit.kind in _SENDER_KINDS:
            values.setdefault(hit.kind, set()).add(hit.key)
        if hit.kind in RECORD_KINDS:
            kinds_by_group.setdefault(group, set()).add(hit.kind)
    records = sum(len(kinds) >= 2 for kinds in kinds_by_group.values())
    return records <= _SENDER_MAX_RECORDS and all(
        len(v) <= _SENDER_MAX_VALUES for v in values.values())


# Context words of the values a policy acts on one by one (a single My Number or card
# number is a reason to hold); searched for in the part of a text after the value cut.
_STRONG_KINDS = frozenset({MY_NUMBER, CARD})
_STRONG_WORDS = re2.compile(cw.word_pattern({*cw.MY_NUMBER.words, *cw.CARD.words}).encode())
# characters around a context word that can hold the value it qualifies (the scanner's
# context windows are 50 before and 30 after a value), and some slack
_WINDOW_BEFORE, _WINDOW_AFTER = 60, 90


def _value_cut(text: str, max_values: int) -> tuple[int | None, int]:
    """Where the value scan of `text` stops, and the value candidates before it: the end
    of the line that holds its `max_values`-th candidate (None: it has fewer, read it
    all). Counted on the text before normalisation (full-width digits are not counted:
    the cut comes later)."""
    if max_values <= 0:
        return 0, 0
    # On the UTF-8 bytes, as char_spans searches them, without its character offsets
    # (a decode of the text between each two matches): only the cut needs one, and a
    # newline byte is a newline character.
    buf = text.encode("utf-8")
    seen = 0
    for start, end in byte_spans(buf):
        if candidate_kind(buf[start:end].decode("utf-8")) != WORD_K:
            seen += 1
            if seen >= max_values:
                cut = buf.find(b"\n", end)
                return (None if cut < 0 else len(buf[:cut].decode("utf-8")) + 1), seen
    return None, seen


_DIGITS = b"0123456789"


def _values_at_most(text: str) -> int:
    """An upper bound on the candidates _value_cut counts in `text`, from a few counts
    in C instead of a pass of the candidate pattern: an e-mail address holds an "@"; a
    phone number, postal code or digit run at least 7 ASCII digits (RE2's \\d); an
    address one of the characters its prefecture ends in; and a context word counts
    only when RE2's case folding took ſ or K (U+212A) for a letter of it (then it is
    not in WORDS as read). Encoded first, as _value_cut encodes (the same error)."""
    buf = text.encode("utf-8")
    digits = len(buf) - len(buf.translate(None, _DIGITS))
    return (digits // 7 + text.count("@") + text.count("県") + text.count("都")
            + text.count("府") + text.count("道") + text.count("ſ") + text.count("\u212a"))


def _strong_hits(rest: str, offset: int, settings: ScanSettings, max_windows: int
                 ) -> list[Hit]:
    """My Number and card hits in the windows around their context words in `rest`
    (the text after the value cut, which starts at character `offset`)."""
    windows: list[tuple[int, int]] = []
    buf = rest.encode("utf-8")
    byte_pos = char_pos = 0
    for m in _STRONG_WORDS.finditer(buf):
        bs, be = m.span()
        # byte offsets to characters, each byte decoded once (candidates.char_spans)
        char_pos += len(buf[byte_pos:bs].decode("utf-8"))
        byte_pos = bs
        word_end = char_pos + len(buf[bs:be].decode("utf-8"))
        if buf[bs] < 0x80 and cw.glued_after(rest, word_end):  # "hotels", "example"
            continue
        start, end = max(0, char_pos - _WINDOW_BEFORE), word_end + _WINDOW_AFTER
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        elif len(windows) >= max_windows:
            break
        else:
            windows.append((start, end))
    hits: list[Hit] = []
    for start, end in windows:
        # a window starts at a line start where it can, as the scanner's windows do
        line = rest.rfind("\n", 0, start) + 1 if start else 0
        start = line if start - line < _WINDOW_BEFORE else start
        piece = normalize(rest[start:end])
        hits += [replace(h, pos=offset + start + h.pos)
                 for h in scan_normalized(piece, settings) if h.kind in _STRONG_KINDS]
    return hits


# a line's key is its words joined by one space (white space collapsed)
_SPACE_JOIN = " ".join


_SYMBOL_ORDER = (
    MY_NUMBER, CARD, CORPORATE, PHONE, EMAIL, ADDRESS, POSTAL, BIRTH_DATE,
    "people_list", "records",
)

# (Japanese, English singular, English plural) per kind; "{n}" is the count.
_REASONS: dict[str, tuple[str, str, str]] = {
    MY_NUMBER: (
        "マイナンバー（個人番号）{n}件",
        "1 My Number (individual number) value",
        "{n} My Number (individual number) values",
    ),
    CORPORATE: ("法人番号{n}件", "1 corporate number", "{n} corporate numbers"),
    CARD: ("クレジットカード番号{n}件", "1 credit card number", "{n} credit card numbers"),
    PHONE: ("電話番号{n}件", "1 phone number", "{n} phone numbers"),
    POSTAL: ("郵便番号{n}件", "1 postal code", "{n} postal codes"),
    ADDRESS: ("住所{n}件", "1 postal address", "{n} postal addresses"),
    BIRTH_DATE: ("生年月日{n}件", "1 date of birth", "{n} dates of birth"),
    EMAIL: ("メールアドレス{n}件", "1 email address", "{n} email addresses"),
    "records": (
        "個人データのまとまり{n}件（同じ行に2種類以上）",
        "1 personal-data record (2+ kinds on one line)",
        "{n} personal-data records (2+ kinds on one line)",
    ),
}

_CLASS_JA = {
    "name": "氏名", "email": "メール", "phone": "電話", "address": "住所",
    "birth_date": "生年月日", "id": "番号", "sensitive": "要配慮",
}
_CLASS_EN = {
    "name": "name", "email": "email", "phone": "phone", "address": "address",
    "birth_date": "birth date", "id": "ID number", "sensitive": "sensitive",
}


@dataclass
class _Value:
    score: float
    raw: str  # Hit.raw of the first occurrence; only masked samples leave the module
    first_seen: int


@dataclass
class _KindAcc:
    values: dict[str, _Value] = field(default_factory=dict)
    details: Counter[str] = field(default_factory=Counter)
    context: set[str] = field(default_factory=set)
    negative: set[str] = field(default_factory=set)

    def add(self, hit: Hit) -> None:
        old = self.values.get(hit.key)
        if old is None:
            self.values[hit.key] = _Value(hit.score, hit.raw, len(self.values))
        elif hit.score > old.score:
            old.score = hit.score
        if hit.detail:
            self.details[hit.detail] += 1
        if hit.context:  # most hits in a list have none: skip the calls
            self.context.update(hit.context)
        if hit.negative:
            self.negative.update(hit.negative)


@dataclass
class _WhereAcc:
    kinds: dict[str, _KindAcc] = field(default_factory=dict)
    # record key (the set of values on the line) -> kinds on it
    records: dict[frozenset[tuple[str, str]], tuple[str, ...]] = field(default_factory=dict)
    people: list[PeopleList] = field(default_factory=list)
    truncated: bool = False
    # (kind, key) of values not counted: the organisation's own, or in the signature
    own: set[tuple[str, str]] = field(default_factory=set)
    # distinct non-empty lines of the texts (hashes) and data rows of the tables here:
    # evidence["lines"] of pii.records and pii.people_list, for a share of them. The
    # lines are keyed only when a finding asks (most places have neither finding; the
    # keys cost ~0.3-0.5 ms per 100 KiB): `line_texts` holds the texts till then.
    line_texts: list[str] = field(default_factory=list)
    _keys: tuple[int, set[int]] = field(default_factory=lambda: (0, set()), repr=False)
    table_rows: int = 0
    # value candidates the texts here may still have read (PiiLimits.max_scan_values),
    # less those of the texts in `uncounted`: texts with fewer candidates than that
    # (none was cut), counted when a later text here might be cut; `owed`: the sum of
    # their upper bounds (_values_at_most)
    values_left: int = 0
    uncounted: list[str] = field(default_factory=list)
    owed: int = 0

    @property
    def lines(self) -> int:
        return len(self.line_keys()) + self.table_rows

    def line_keys(self) -> set[int]:
        """Each distinct line's key, white space collapsed: a multipart/alternative body
        gives its plain and HTML forms at one `where`, and each line counts once (each
        line's key by map: no Python frame per line, ~20 % less time)."""
        done, keys = self._keys
        if done < len(self.line_texts):
            keys = set(keys)
            for text in self.line_texts[done:]:
                keys.update(map(hash, filter(None, map(
                    _SPACE_JOIN, map(str.split, text.splitlines())))))
            self._keys = (len(self.line_texts), keys)
        return keys


class _Accumulator:
    """Collects hits per `where` across chunks and tables, then makes the findings."""

    def __init__(self, limits: PiiLimits, own: OwnContacts | None = None) -> None:
        self.limits = limits
        self.settings = limits.settings()
        self.own = own or OwnContacts()
        self.by_where: dict[str, _WhereAcc] = {}

    def _is_own(self, hit: Hit, sender_block: bool) -> bool:
        """The organisation's own contact data, or the sender's in their signature
        (`sender_block`: the text is a signature that holds one person's block)."""
        if sender_block and hit.kind in _SENDER_KINDS:
            return True
        own = self.own
        if hit.kind == PHONE:
            return own.has_phone(hit.key)
        if hit.kind == POSTAL:
            return own.has_postal_code(hit.key)
        if hit.kind == ADDRESS:
            return bool(own.addresses) and own.has_address(hit.key)
        if hit.kind == EMAIL:
            return bool(own.domains) and own.has_email(hit.key)
        return False

    def _discount(self, acc: _WhereAcc, hits: list[Hit], sender_block: bool = False
                  ) -> list[bool]:
        """Which hits count (False: own data, remembered for evidence own_discounted)."""
        keep = []
        for hit in hits:
            own = self._is_own(hit, sender_block)
            if own:
                acc.own.add((hit.kind, hit.key))
            keep.append(not own)
        return keep

    def _where(self, where: str) -> _WhereAcc:
        acc = self.by_where.get(where)
        if acc is None:
            acc = self.by_where[where] = _WhereAcc(values_left=self.limits.max_scan_values)
        return acc

    def add_text(self, where: str, text: str, tabled: bool = False,
                 normalized: str | None = None) -> None:
        """`tabled`: the text is a copy of a table given too (a spreadsheet's text): its
        lines are the table's rows, counted there, and it is not searched for tables.
        `normalized`: normalize(text), if the caller has it."""
        acc = self._where(where)
        if len(text) > self.limits.max_chars:
            text = text[: self.limits.max_chars]
            acc.truncated = True
            normalized = None
        if not tabled:
            acc.line_texts.append(text)  # (its distinct lines, when asked: lines)
        # A people list pasted into the text (a body, a Word table, a PDF roster) is
        # read as a table too; only a people list counts, so other aligned text (an
        # invoice's line items) reads exactly as before.
        # The value scan of the tables in one text shares one max_scan_cells allowance,
        # however many tables the text holds; their rows are all counted.
        allowance = self.limits.max_scan_cells
        for found in () if tabled else tables_in(text, self.limits.max_table_cells):
            table = self._table(found.rows, max_scan_cells=allowance)
            allowance = max(0, allowance - sum(map(len, found.rows)))
            if table.people is not None:
                self._apply_table(acc, where, table)
        cut = self._cut(acc, text)
        rest = ""
        if cut is not None:
            text, rest = text[:cut], text[cut:]
            acc.truncated = True
        text = normalize(text) if normalized is None or rest else normalized
        hits = scan_normalized(text, self.settings)
        if rest:
            hits += _strong_hits(rest, len(text), self.settings,
                                 self.limits.max_strong_windows)
        if self.own:
            hits = [h for h, k in zip(hits, self._discount(acc, hits), strict=True) if k]
        if part_of(where) == SIGNATURE and _one_persons_block(
                hits, line_groups(text, hits, self.limits.record_gap)):
            hits = [h for h, k in zip(hits, self._discount(acc, hits, True), strict=True)
                    if k]
        self._add_hits(acc, hits)
        self._add_records(acc, hits, line_groups(text, hits, self.limits.record_gap))

    @staticmethod
    def _cut(acc: _WhereAcc, text: str) -> int | None:
        """_value_cut(text, acc.values_left), counting the candidates only when the text
        might hold as many as are left (the pass costs ~0.9 ms per 100 KiB of Japanese
        text; a bound from counts in C ~0.1 ms)."""
        bound = _values_at_most(text)
        if bound < acc.values_left - acc.owed:  # fewer than left, whatever the others hold
            acc.uncounted.append(text)
            acc.owed += bound
            return None
        for earlier in acc.uncounted:  # (none of them reaches values_left: uncut)
            acc.values_left -= _value_cut(earlier, acc.values_left)[1]
        acc.uncounted, acc.owed = [], 0
        cut, seen = _value_cut(text, acc.values_left)
        acc.values_left -= seen
        return cut

    def add_table(self, where: str, rows: Sequence[Sequence[Any]], more_rows: int = 0) -> None:
        acc = self._where(where)
        table = self._table(rows, more_rows)
        acc.table_rows += table.data_rows
        self._apply_table(acc, where, table)

    def _table(self, rows: Sequence[Sequence[Any]], more_rows: int = 0,
               max_scan_cells: int | None = None) -> TableText:
        lim = self.limits
        return table_text(
            rows,
            header_rows=lim.header_rows,
            min_rows=lim.people_list_min_rows,
            column_sample=lim.column_sample,
            column_ratio=lim.column_valid_ratio,
            max_cells=lim.max_table_cells,
            max_scan_cells=lim.max_scan_cells if max_scan_cells is None else max_scan_cells,
            today=self.settings.today or date.today(),
            more_rows=more_rows,
        )

    def _apply_table(self, acc: _WhereAcc, where: str, table: TableText) -> None:
        lim = self.limits
        acc.truncated |= table.truncated
        # Cells were normalised one by one; the joined text is scanned as is, so line
        # numbers stay row numbers.
        hits = scan_normalized(table.text, self.settings)
        rows_of_hits = _line_numbers(table.text, hits)
        for row, hit in table.typed:
            if accept(hit, self.settings):
                hits.append(hit)
                rows_of_hits.append(row)
        people = table.people
        if self.own:
            keep = self._discount(acc, hits)
            own_rows = {r for r, k in zip(rows_of_hits, keep, strict=True) if not k}
            own_rows -= {r for r, h, k in zip(rows_of_hits, hits, keep, strict=True)
                         if k and h.kind in RECORD_KINDS}
            own_rows -= {r for r, _ in table.names}  # a person's name: their entry
            hits = [h for h, k in zip(hits, keep, strict=True) if k]
            rows_of_hits = [r for r, k in zip(rows_of_hits, keep, strict=True) if k]
            # rows holding only our own data (a branch-office list) are nobody's entry
            if people is not None and own_rows:
                left = people.rows - len(own_rows)
                people = replace(people, rows=left) if left >= lim.people_list_min_rows \
                    else None
        if people is not None:
            acc.people.append(people)
        self._add_hits(acc, hits)
        names = [Hit(NAME, key, 1.0, -1, "") for _, key in table.names]
        self._add_records(
            acc, hits + names, rows_of_hits + [row for row, _ in table.names]
        )

    def _add_hits(self, acc: _WhereAcc, hits: list[Hit]) -> None:
        for hit in hits:
            kind = acc.kinds.get(hit.kind)
            if kind is None:
                kind = acc.kinds[hit.kind] = _KindAcc()
            kind.add(hit)

    def _add_records(self, acc: _WhereAcc, hits: list[Hit], groups: list[int]) -> None:
        by_group: dict[int, list[Hit]] = {}
        for hit, group in zip(hits, groups, strict=True):
            if hit.kind in RECORD_KINDS:
                by_group.setdefault(group, []).append(hit)
        for members in by_group.values():
            kinds = tuple(sorted({h.kind for h in members}))
            if len(kinds) < 2:
                continue
            # Keyed by the detected values, without the name column: the extractor
            # gives a spreadsheet both as a table and as tab-separated text, and the
            # text form of a row has no "name" kind; both must be one record.
            key = frozenset((h.kind, h.key) for h in members if h.kind != NAME)
            old = acc.records.get(key)
            if old is None or len(kinds) > len(old):
                acc.records[key] = kinds

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for where, acc in self.by_where.items():
            out += self._findings_at(where, acc)
        return out + self._whole_body(out)

    def _findings_at(self, where: str, acc: _WhereAcc) -> list[Finding]:
        out: list[Finding] = []
        for kind in _SYMBOL_ORDER:
            finding = None
            if kind == "people_list":
                finding = self._people_finding(where, acc)
            elif kind == "records":
                finding = self._records_finding(where, acc)
            elif kind in acc.kinds:
                finding = self._kind_finding(where, kind, acc.kinds[kind])
            if finding is not None:
                if acc.truncated:
                    finding.evidence["truncated"] = True
                if acc.own:
                    finding.evidence["own_discounted"] = len(acc.own)
                out.append(finding)
        return out

    def _whole_body(self, found: list[Finding]) -> list[Finding]:
        """Findings at "body.all" (the body's parts together) for the symbols whose
        distinct count there is higher than at any one part: only those, so a rule on
        the body sees its count and nothing is said twice otherwise."""
        parts = [acc for where, acc in self.by_where.items() if body_part(where) is not None]
        if len(parts) < 2:
            return []
        most: dict[str, int] = {}
        for f in found:
            if body_part(f.where) is not None:
                most[f.symbol] = max(most.get(f.symbol, 0), f.count)
        where = "body" + WHOLE
        out = []
        for f in self._findings_at(where, _merged(parts)):
            if f.count > most.get(f.symbol, 0):
                out.append(replace(f, reason_ja=f.reason_ja + "（本文全体）",
                                   reason_en=f.reason_en + " (whole body)"))
        return out

    def _kind_finding(self, where: str, kind: str, acc: _KindAcc) -> Finding | None:
        lim = self.limits
        values = acc.values
        if kind != EMAIL:
            values = {k: v for k, v in values.items() if v.score >= lim.min_score}
        if not values:
            return None
        ordered = sorted(values.values(), key=lambda v: v.first_seen)
        evidence: dict[str, Any] = {
            "samples": _samples(kind, ordered, lim.max_samples),
            "strong": sum(v.score >= lim.strong_score for v in ordered),
        }
        if acc.details:
            evidence["kinds"] = sorted(acc.details)
        if acc.context:
            evidence["context"] = sorted(acc.context)
        if acc.negative:
            evidence["negative_context"] = sorted(acc.negative)
        ja, en = _reason(kind, len(values))
        return Finding(
            symbol=f"pii.{kind}",
            score=max(v.score for v in ordered),
            count=len(values),
            where=where,
            evidence=evidence,
            reason_ja=ja,
            reason_en=en,
        )

    def _records_finding(self, where: str, acc: _WhereAcc) -> Finding | None:
        if not acc.records:
            return None
        combos = Counter("+".join(kinds) for kinds in acc.records.values())
        widest = max(len(kinds) for kinds in acc.records.values())
        ja, en = _reason("records", len(acc.records))
        return Finding(
            symbol="pii.records",
            # Two kinds on a line is a record; each further kind makes it more clearly
            # a person's entry rather than a signature.
            score=round(min(0.6 + 0.1 * (widest - 2), 0.9), 3),
            count=len(acc.records),
            where=where,
            evidence={"kinds": dict(combos.most_common()), "lines": acc.lines},
            reason_ja=ja,
            reason_en=en,
        )

    def _people_finding(self, where: str, acc: _WhereAcc) -> Finding | None:
        if not acc.people:
            return None
        # the same table twice at one `where` (a body's plain and HTML forms) is one
        people = list(dict.fromkeys(acc.people))
        rows = sum(p.rows for p in people)
        columns = list(dict.fromkeys(h for p in people for h, _ in p.columns))
        classes = sorted({c for p in people for c in p.classes})
        ja_cls = "・".join(_CLASS_JA[c] for c in classes)
        en_cls = ", ".join(_CLASS_EN[c] for c in classes)
        return Finding(
            symbol="pii.people_list",
            score=max(p.score for p in people),
            count=rows,
            where=where,
            evidence={
                "columns": columns,
                "classes": classes,
                "rows": rows,
                "tables": len(people),
                "lines": acc.lines,
            },
            reason_ja=f"個人情報の一覧表（{ja_cls}）{rows}行",
            reason_en=f"people list ({en_cls}), {rows} row{'s' if rows != 1 else ''}",
        )


def _merged(accs: list[_WhereAcc]) -> _WhereAcc:
    """Several places' accumulators as one (each value, record and line once)."""
    out = _WhereAcc()
    for acc in accs:
        for name, kind in acc.kinds.items():
            into = out.kinds.setdefault(name, _KindAcc())
            for key, value in kind.values.items():
                old = into.values.get(key)
                if old is None:
                    into.values[key] = _Value(value.score, value.raw, len(into.values))
                elif value.score > old.score:
                    old.score = value.score
            into.details.update(kind.details)
            into.context |= kind.context
            into.negative |= kind.negative
        for record, kinds in acc.records.items():
            seen = out.records.get(record)
            if seen is None or len(kinds) > len(seen):
                out.records[record] = kinds
        out.people += acc.people
        out.truncated |= acc.truncated
        out.own |= acc.own
        out.line_texts += acc.line_texts
        out.table_rows += acc.table_rows
    return out


def _samples(kind: str, values: list[_Value], limit: int) -> list[str]:
    """Up to `limit` distinct masked samples: twelve "u***@example.com" say less than
    one. Masking happens here, for the few values shown, not for every hit."""
    samples: dict[str, None] = {}
    for v in values:
        samples[mask(kind, v.raw)] = None
        if len(samples) >= limit:
            break
    return list(samples)


def _reason(kind: str, n: int) -> tuple[str, str]:
    ja, en_one, en_many = _REASONS[kind]
    return ja.format(n=n), (en_one if n == 1 else en_many).format(n=n)


def _line_numbers(text: str, hits: list[Hit]) -> list[int]:
    """Line index of each hit (hits sorted by position), counting newlines once."""
    out: list[int] = []
    line, pos = 0, 0
    for hit in hits:
        line += text.count("\n", pos, hit.pos)
        pos = hit.pos
        out.append(line)
    return out


def scan(
    texts: Iterable[TextLike] = (),
    tables: Iterable[TableLike] = (),
    limits: PiiLimits | None = None,
    own: OwnContacts | None = None,
) -> list[Finding]:
    """Texts and tables together: distinct values are counted once per `where` even when
    an attachment yields both (a spreadsheet's cells and its text). Values of `own`
    (the organisation's contact data) are not counted."""
    acc = _Accumulator(limits or PiiLimits(), own)
    tables = list(tables)
    # a spreadsheet's text copy is not searched for tables: its Table is the table
    tabled = {t.where for t in tables}
    for chunk in texts:
        # (a text that carries its NFKC form, guard.inspect.run's, is not normalised again)
        acc.add_text(chunk.where, chunk.text, tabled=chunk.where in tabled,
                     normalized=getattr(chunk, "normalized", None))
    for table in tables:
        # rows the extractor counted but did not read (guard.mail.message.Table.more_rows)
        acc.add_table(table.where, table.rows, getattr(table, "more_rows", 0))
    return acc.findings()


def scan_texts(chunks: Iterable[TextLike], limits: PiiLimits | None = None) -> list[Finding]:
    return scan(texts=chunks, limits=limits)


def scan_tables(tables: Iterable[TableLike], limits: PiiLimits | None = None) -> list[Finding]:
    return scan(tables=tables, limits=limits)
