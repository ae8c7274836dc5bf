"""Tables: the people-list signal, and a text form of the rows for the value detectors.

A table whose header row names personal-data columns (氏名, 住所, 電話, メール,
生年月日...) and that has data rows under it is the strongest bulk signal
(pii.people_list): a customer list is recognisable from its header before any value is
validated, and it stays recognisable when its values defeat the regexes.

The values in the cells are found two ways:
- a cell of a phone, e-mail or birth-date column that holds exactly one such value is
  read directly (pii_scan.scan_cell), its header standing in for the label: most
  cells of a long list are like that, and this is several times cheaper;
- every other cell goes into a text form of the rows, one line per row, each cell as
  "header: value", cells separated by U+001F. The text scanner then sees the header as
  context right before the value (a "マイナンバー" column boosts its numbers like a
  label in prose would) and never lets one cell's header act as context for the next.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from guard.inspect.pii.cells import TYPED_CELL_CLASSES, scan_cell
from guard.inspect.pii.context_words import classify_header
from guard.inspect.pii.hits import Hit
from guard.mail.nfkc import normalize

CELL_SEPARATOR = "\x1f"
_LINE_BREAKS = re.compile(r"[\r\n\x1f\x0b\x0c\u2028\u2029\x85]+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,63}$")
_PHONE_CHARS = re.compile(r"^\+?[\d\s\-‐‑‒–—―−ー.()]{9,20}$")
_HAS_DIGIT = re.compile(r"\d")
_HAS_LETTER = re.compile(r"[^\W\d_]")

# Classes that make a table a people list when two of them (one being name or email)
# survive validation. "id" and "sensitive" raise the score: a list with 病歴 or
# マイナンバー columns is worse than an address book.
_ANCHOR_CLASSES = frozenset({"name", "email"})
_SEVERE_CLASSES = frozenset({"id", "sensitive", "birth_date"})


def cell_text(value: object) -> str:
    """A cell as one normalised line. Excel gives numbers as floats: 9012345678.0."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = value if isinstance(value, str) else str(value)
    if not text.isascii():  # (NFKC leaves ASCII as it is)
        text = normalize(text)
    # a printable text holds none of the line breaks (each is Cc, Zl or Zp): no pass
    return (text if text.isprintable() else _LINE_BREAKS.sub(" ", text)).strip()


def _valid_for_class(cls: str, value: str) -> bool:
    if cls == "email":
        return _EMAIL.match(value) is not None
    if cls == "phone":
        return _PHONE_CHARS.match(value) is not None and sum(c.isdigit() for c in value) >= 9
    if cls == "birth_date":
        return _HAS_DIGIT.search(value) is not None
    if cls == "name":
        return _HAS_LETTER.search(value) is not None
    return True  # address, id, sensitive: any non-empty value


@dataclass(frozen=True)
class PeopleList:
    columns: tuple[tuple[str, str], ...]  # (header text, class), validated columns only
    rows: int
    score: float

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted({c for _, c in self.columns}))


@dataclass
class TableText:
    text: str  # one line per row, for the text scanner
    # (row index, name key) for non-empty cells of name columns: records need "name"
    # as a kind, and no detector finds names in free text reliably.
    names: list[tuple[int, str]] = field(default_factory=list)
    # (row index, hit) for cells read directly as their column's type (scan_cell).
    typed: list[tuple[int, Hit]] = field(default_factory=list)
    people: PeopleList | None = None
    truncated: bool = False
    # rows with a value below the header (all rows with a value when there is none),
    # counted like the people list's rows: the table's share of evidence["lines"]
    data_rows: int = 0


def _find_header(
    rows: list[list[str]], search_rows: int
) -> tuple[int, dict[int, str]]:
    """(row index, {column: class}) of the best header candidate, or (-1, {})."""
    best_index, best_classes, best_rank = -1, {}, 0
    for i, row in enumerate(rows[:search_rows]):
        classes = {}
        for j, cell in enumerate(row):
            cls = classify_header(cell) if cell else None
            if cls is not None:
                classes[j] = cls
        kinds = set(classes.values())
        rank = len(kinds) + (10 if kinds & _ANCHOR_CLASSES and len(kinds) >= 2 else 0)
        if rank > best_rank:
            best_index, best_classes, best_rank = i, classes, rank
    return best_index, best_classes


def _looks_like_header(row: list[str]) -> bool:
    """For tables without personal-data columns: is row 0 still a header (labels such
    as 注文番号 / カード番号 that give the values context)?"""
    cells = [c for c in row if c]
    return bool(cells) and all(
        len(c) <= 40 and sum(ch.isdigit() for ch in c) < 3 for c in cells
    )


def _validate_columns(
    data: list[list[str]], classes: dict[int, str], sample: int, ratio: float
) -> dict[int, str]:
    """Keep columns whose non-empty sampled values mostly fit the class (≥ ratio).

    Optional columns (携帯 filled for half the people) are judged on what is there.
    """
    kept = {}
    for col, cls in classes.items():
        values = [row[col] for row in data[:sample] if col < len(row) and row[col]]
        if values and sum(_valid_for_class(cls, v) for v in values) >= ratio * len(values):
            kept[col] = cls
    return kept


def _people_score(classes: set[str]) -> float:
    # A validated header is already strong; more and worse columns make it stronger.
    score = 0.75
    if len(classes) >= 3:
        score += 0.1
    if classes & _SEVERE_CLASSES:
        score += 0.1
    return round(min(score, 0.95), 3)


def _has_value(value: object) -> bool:
    """Would cell_text(value) be non-empty? (Without normalising the cell.)"""
    if value is None:
        return False
    return bool(value.strip()) if isinstance(value, str) else True


def table_text(
    raw_rows: Sequence[Sequence[object]],
    *,
    header_rows: int,
    min_rows: int,
    column_sample: int,
    column_ratio: float,
    max_cells: int,
    max_scan_cells: int,
    today: date,
    more_rows: int = 0,
) -> TableText:
    """Header, people-list verdict and the scanner's view of a table.

    Up to `max_cells` cells are looked at (the people-list row count covers them all,
    plus `more_rows`: rows the extractor counted after the rows it read, see
    Table.more_rows); the value detectors see the rows within the first
    `max_scan_cells` cells, because they cost ~10 µs per cell and a list that long is
    already a people list or not. Only the rows the header search, the column check and
    the value scan need are normalised; the others are only checked for values.
    """
    rows: list[list[str]] = []
    rest: list[Sequence[object]] = []  # rows past what is normalised: counted only
    keep_rows = header_rows + column_sample + 1
    cells = 0
    truncated = more_rows > 0
    for raw in raw_rows:
        if cells + len(raw) > max_cells:
            truncated = True
            break
        cells += len(raw)
        if rest or (len(rows) >= keep_rows and cells > max_scan_cells + len(raw)):
            rest.append(raw)
        else:
            rows.append([cell_text(v) for v in raw])

    header_index, classes = _find_header(rows, header_rows)
    if header_index < 0 and rows and _looks_like_header(rows[0]):
        header_index = 0
    headers = rows[header_index] if header_index >= 0 else []
    data = rows[header_index + 1 :]

    people = None
    kept = _validate_columns(data, classes, column_sample, column_ratio) if classes else {}
    kinds = set(kept.values())
    if len(kinds) >= 2 and kinds & _ANCHOR_CLASSES:
        n_rows = sum(1 for row in data if any(c < len(row) and row[c] for c in kept))
        n_rows += sum(1 for row in rest
                      if any(c < len(row) and _has_value(row[c]) for c in kept))
        # counted by the extractor (rows holding any value; their columns are unknown)
        n_rows += more_rows
        if n_rows >= min_rows:
            people = PeopleList(
                tuple((headers[c], cls) for c, cls in sorted(kept.items())),
                n_rows,
                _people_score(kinds),
            )

    name_columns = [c for c, cls in classes.items() if cls == "name"]
    typed_columns = {c: cls for c, cls in classes.items() if cls in TYPED_CELL_CLASSES}
    lines: list[str] = []
    names: list[tuple[int, str]] = []
    typed: list[tuple[int, Hit]] = []
    scanned = 0
    for i, row in enumerate(rows):
        scanned += len(row)
        if scanned > max_scan_cells:
            truncated = True
            break
        if i == header_index:
            lines.append("")  # keep line index == row index
            continue
        if i < header_index or header_index < 0:
            lines.append(CELL_SEPARATOR.join(cell for cell in row if cell))
            continue
        parts = []
        for j, cell in enumerate(row):
            if not cell:
                continue
            header = headers[j] if j < len(headers) else ""
            cls = typed_columns.get(j)
            if cls is not None:
                hit = scan_cell(cls, cell, header, today)
                if hit is not None:
                    typed.append((i, hit))
                    continue
            parts.append(f"{header}: {cell}" if header else cell)
        for c in name_columns:
            if c < len(row) and row[c]:
                names.append((i, re.sub(r"\s+", "", row[c])))
        lines.append(CELL_SEPARATOR.join(parts))
    truncated = truncated or bool(rest)
    data_rows = (sum(1 for row in data if any(row))
                 + sum(1 for row in rest if any(map(_has_value, row))) + more_rows)
    return TableText("\n".join(lines), names, typed, people, truncated, data_rows)
