"""Reading the CSV files admins export: encodings, delimiters, header rows, columns.

Admins hand us whatever their tools export: Excel on Japanese Windows saves cp932,
newer tools UTF-8 with a BOM, mail-merge lists have a header row in Japanese or none.
This module turns such bytes into numbered rows of cells and finds the column a
caller wants (by header name, or by what most cells look like); what a row means is
guard.policy.datafiles' job.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import NamedTuple

__all__ = [
    "MAX_CSV_BYTES",
    "Row",
    "RowError",
    "best_column",
    "cell_at",
    "decode_csv_bytes",
    "find_column",
    "header_key",
    "looks_domainish",
    "read_rows",
    "row_text",
]

# Larger files are refused rather than read: a million-row list is ~40 MB.
MAX_CSV_BYTES = 64 * 1024 * 1024
# Rows looked at to guess which column holds the values when there is no header.
_SNIFF_ROWS = 200
# Bad-row text is shown to the admin; keep it to one readable line.
_TEXT_MAX = 200


class RowError(NamedTuple):
    line: int  # 1-based physical line in the file; 0 = the file as a whole
    text: str  # the row as read (shortened)
    reason: str


# ---------------------------------------------------------------- decoding


def _looks_like_euc_read_as_cp932(text: str) -> bool:
    """True if a cp932 reading is really EUC-JP kana in disguise.

    EUC-JP hiragana and katakana all start with byte A4 or A5, which cp932 reads as
    the half-width "､" and "･": frequent in EUC text read as cp932, rare in genuine
    half-width katakana (which Japanese bank and legacy exports do use, so
    half-width kana alone must not tip the choice).
    """
    halfwidth = sum(1 for c in text if "\uff61" <= c <= "\uff9f")
    markers = text.count("\uff64") + text.count("\uff65")
    return markers >= 2 and markers * 4 >= halfwidth


def decode_csv_bytes(data: bytes) -> str:
    """Text of a CSV file: BOM, then strict UTF-8, cp932, EUC-JP; ValueError if none.

    A strict cascade, not a statistical guess: the encodings Japanese tools write are
    few, and a wrong guess would silently corrupt names. Bytes that are
    valid in both cp932 and EUC-JP are read as cp932 (by far the more common), unless
    the cp932 reading carries the EUC-JP kana signature. EUC-JP text of kanji only
    can still be misread as cp932; addresses, being ASCII, are unaffected.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")  # a BOM that lies is an error, not a guess
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")  # Excel "Unicode text"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp932")
    except UnicodeDecodeError:
        text = None
    if text is None or _looks_like_euc_read_as_cp932(text):
        try:
            return data.decode("euc_jp")
        except UnicodeDecodeError:
            pass
    if text is None:
        raise ValueError("the file is not UTF-8, Shift_JIS (cp932) or EUC-JP text")
    return text


# ---------------------------------------------------------------- rows


class Row(NamedTuple):
    line: int
    cells: list[str]


def row_text(cells: Sequence[str]) -> str:
    """A row as the admin is shown it in an error: one line, shortened."""
    text = ",".join(cells)
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 1] + "…"


def read_rows(data: bytes) -> tuple[list[Row], list[RowError]]:
    """Non-blank rows with their first physical line number, or a file-level error."""
    if len(data) > MAX_CSV_BYTES:
        return [], [RowError(0, "", f"the file is larger than {MAX_CSV_BYTES // 2**20} MB")]
    try:
        text = decode_csv_bytes(data)
    except (ValueError, UnicodeDecodeError) as e:
        return [], [RowError(0, "", str(e))]
    if "\x00" in text:
        return [], [RowError(0, "", "the file contains NUL bytes: not a text CSV file")]
    first = text.partition("\n")[0].rstrip("\r")
    delimiter = ","
    skip_first = False
    if first.lower().startswith("sep=") and len(first) == 5:
        delimiter, skip_first = first[4], True  # Excel's delimiter hint line
    elif "\t" in first and "," not in first:
        delimiter = "\t"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[Row] = []
    while True:
        line = reader.line_num + 1  # a quoted cell may span lines: report the first
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            return [], [RowError(line, "", f"unreadable CSV: {e}")]
        if skip_first and line == 1:
            continue
        cells = [c.strip() for c in cells]
        if any(cells):
            rows.append(Row(line, cells))
    return rows, []


def _header_key(cell: str) -> str:
    """"E-Mail アドレス", "ｅメール", "mail_address" -> comparable header names."""
    s = unicodedata.normalize("NFKC", cell).casefold()
    return re.sub(r"[\s\-_・.:：*()（）]", "", s)


def header_key(cell: str) -> str:
    """A header cell as compared with known names ("E-Mail アドレス" -> "emailアドレス")."""
    return _header_key(cell)


def find_column(row: Sequence[str], names: frozenset[str],
                loose: Callable[[str], bool] | None = None) -> int | None:
    """Index of the first cell that is one of the names, else of the first `loose` one."""
    keys = [_header_key(c) for c in row]
    for i, k in enumerate(keys):
        if k in names:
            return i
    if loose is not None:
        for i, k in enumerate(keys):
            if loose(k):
                return i
    return None


def cell_at(row: Row, col: int) -> str:
    """The cell in column `col`; "" when the row is shorter."""
    return row.cells[col] if col < len(row.cells) else ""


def best_column(rows: Sequence[Row], fits: Callable[[str], bool]) -> int | None:
    """The column where most of the first rows fit (leftmost on a tie), None if none."""
    counts: dict[int, int] = {}
    for row in rows[:_SNIFF_ROWS]:
        for i, c in enumerate(row.cells):
            if c and fits(c):
                counts[i] = counts.get(i, 0) + 1
    if not counts:
        return None
    return max(sorted(counts), key=lambda i: counts[i])


def looks_domainish(cell: str) -> bool:
    """Something domain-like is in the cell: a first row holding one is data, not a header.

    "example.co.jp", not "No." or "Ver.1": letters on both sides of a dot.
    """
    return re.search(r"[^\W\d_]\.[^\W\d_]", unicodedata.normalize("NFKC", cell)) is not None
