"""CSV imports for suppression lists, customers and partner domains (parsing only).

Admins hand us whatever their tools export: Excel on Japanese Windows saves cp932,
newer tools UTF-8 with a BOM, mail-merge lists have a header row in Japanese or none.
Parsing is all-or-nothing: if any row is bad, the result carries every bad row (with
its 1-based line number) and no data, so a half-read list is never applied. Storing
the result is the store's job, not this module's; hashing the addresses of a
suppression list is guard.mail.digests'.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import NamedTuple

from guard.inspect.context import Customer
from guard.mail.addresses import InvalidAddress, ascii_domain, valid_address_key

__all__ = [
    "MAX_CSV_BYTES",
    "CustomerParseResult",
    "DomainParseResult",
    "ListParseResult",
    "RowError",
    "decode_csv_bytes",
    "parse_address_csv",
    "parse_customers_csv",
    "parse_domain",
    "parse_domains_csv",
]

# Larger files are refused rather than read: a million-row list is ~40 MB.
MAX_CSV_BYTES = 64 * 1024 * 1024
# Rows looked at to guess which column holds the addresses when there is no header.
_SNIFF_ROWS = 200
# Bad-row text is shown to the admin; keep it to one readable line.
_TEXT_MAX = 200


class RowError(NamedTuple):
    line: int  # 1-based physical line in the file; 0 = the file as a whole
    text: str  # the row as read (shortened)
    reason: str


class ListParseResult(NamedTuple):
    addresses: list[str]  # comparison keys, distinct, in file order; empty when errors
    errors: list[RowError]

    @property
    def ok(self) -> bool:
        return not self.errors


class CustomerParseResult(NamedTuple):
    customers: list[Customer]  # empty when errors
    errors: list[RowError]

    @property
    def ok(self) -> bool:
        return not self.errors


class DomainParseResult(NamedTuple):
    domains: list[str]  # lower-case A-labels, distinct; empty when errors
    errors: list[RowError]

    @property
    def ok(self) -> bool:
        return not self.errors


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
    few, and a wrong guess would silently corrupt names (design §2.3). Bytes that are
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


class _Row(NamedTuple):
    line: int
    cells: list[str]


def _row_text(cells: Sequence[str]) -> str:
    text = ",".join(cells)
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 1] + "…"


def _read_rows(data: bytes) -> tuple[list[_Row], list[RowError]]:
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
    rows: list[_Row] = []
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
            rows.append(_Row(line, cells))
    return rows, []


def _header_key(cell: str) -> str:
    """"E-Mail アドレス", "ｅメール", "mail_address" -> comparable header names."""
    s = unicodedata.normalize("NFKC", cell).casefold()
    return re.sub(r"[\s\-_・.:：*()（）]", "", s)


def _find_column(row: Sequence[str], names: frozenset[str],
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


def _cell(row: _Row, col: int) -> str:
    return row.cells[col] if col < len(row.cells) else ""


def _best_column(rows: Sequence[_Row], fits: Callable[[str], bool]) -> int | None:
    """The column where most of the first rows fit (leftmost on a tie), None if none."""
    counts: dict[int, int] = {}
    for row in rows[:_SNIFF_ROWS]:
        for i, c in enumerate(row.cells):
            if c and fits(c):
                counts[i] = counts.get(i, 0) + 1
    if not counts:
        return None
    return max(sorted(counts), key=lambda i: counts[i])


# ---------------------------------------------------------------- addresses

_ADDRESS_HEADERS = frozenset({
    "email", "emailaddress", "emailaddr", "mail", "mailaddress", "mailaddr", "mailto",
    "メール", "メールアドレス", "eメール", "eメールアドレス", "電子メール",
    "電子メールアドレス", "アドレス", "メアド",
})


def _has_at(cell: str) -> bool:
    return "@" in cell or "＠" in cell


def _domainish(cell: str) -> bool:
    # "example.co.jp", not "No." or "Ver.1": letters on both sides of a dot
    return re.search(r"[^\W\d_]\.[^\W\d_]", unicodedata.normalize("NFKC", cell)) is not None


def parse_address_csv(data: bytes) -> ListParseResult:
    """Addresses of a suppression list (or any address list) from CSV bytes.

    The address column is the one whose header says so (email, メールアドレス, E-mail,
    アドレス, …); without such a header, the column where most rows hold an "@". A
    first row with no "@" and nothing domain-like in it is taken as a header of
    other names and skipped; otherwise it is data, and is checked like any row.
    Blank lines are skipped; an empty address cell in a non-blank row is an error.
    """
    rows, errors = _read_rows(data)
    if errors:
        return ListParseResult([], errors)
    if not rows:
        return ListParseResult([], [RowError(0, "", "the file holds no addresses")])
    first = rows[0]
    col = None
    if not any(_has_at(c) for c in first.cells):
        col = _find_column(first.cells, _ADDRESS_HEADERS,
                           lambda k: "mail" in k or "メール" in k)
        if col is not None or not any(_domainish(c) for c in first.cells):
            rows = rows[1:]  # a header row
    if col is None:
        col = _best_column(rows, _has_at)
    if col is None:
        return ListParseResult([], [RowError(0, "", "no column of e-mail addresses found")])
    addresses: dict[str, None] = {}  # ordered set
    for row in rows:
        cell = _cell(row, col)
        if not cell:
            errors.append(RowError(row.line, _row_text(row.cells), "empty address"))
            continue
        try:
            addresses[valid_address_key(cell)] = None
        except ValueError as e:
            errors.append(RowError(row.line, _row_text(row.cells), f"invalid address: {e}"))
    if errors:
        return ListParseResult([], errors)
    if not addresses:
        return ListParseResult([], [RowError(0, "", "the file holds no addresses")])
    return ListParseResult(list(addresses), [])


# ---------------------------------------------------------------- domains

def parse_domain(text: str) -> str:
    """A mail domain as typed by an admin -> lower-case A-labels; ValueError if invalid.

    Accepts "ABC.co.jp", "@abc.co.jp", "*.abc.co.jp", "例え.jp", full-width forms;
    normalised by guard.mail.addresses.ascii_domain, and a mail domain has a dot and a
    name, not a number, at its end.
    """
    d = unicodedata.normalize("NFKC", text).strip()
    d = d.removeprefix("@").removeprefix("*.")
    if not d:
        raise ValueError("empty domain")
    if "@" in d:
        raise ValueError(f"{text!r} is an address, not a domain")
    if "." not in d.rstrip("."):
        raise ValueError(f"{text!r} has no dot: not a mail domain")
    try:
        a = ascii_domain(d)
    except InvalidAddress as e:
        raise ValueError(str(e)) from None
    if a.rpartition(".")[2].isdigit():
        raise ValueError(f"{text!r} is not a valid domain")
    return a


def _is_domain(cell: str) -> bool:
    try:
        parse_domain(cell)
    except ValueError:
        return False
    return True


_DOMAIN_HEADERS = frozenset({
    "domain", "domains", "ドメイン", "メールドメイン", "maildomain", "partner",
    "partners", "partnerdomain", "partnerdomains", "取引先ドメイン",
})


def parse_domains_csv(data: bytes) -> DomainParseResult:
    """Domains (partner domains, internal domains) from CSV bytes, one per row."""
    rows, errors = _read_rows(data)
    if errors:
        return DomainParseResult([], errors)
    if not rows:
        return DomainParseResult([], [RowError(0, "", "the file holds no domains")])
    first = rows[0]
    col = None
    if not any(_is_domain(c) for c in first.cells):
        col = _find_column(first.cells, _DOMAIN_HEADERS, lambda k: "domain" in k or "ドメイン" in k)
        if col is not None or not any(_domainish(c) for c in first.cells):
            rows = rows[1:]
    if col is None:
        col = _best_column(rows, _is_domain)
    if col is None:
        return DomainParseResult([], [RowError(0, "", "no column of domains found")])
    domains: dict[str, None] = {}
    for row in rows:
        cell = _cell(row, col)
        try:
            domains[parse_domain(cell)] = None
        except ValueError as e:
            errors.append(RowError(row.line, _row_text(row.cells), str(e)))
    if errors:
        return DomainParseResult([], errors)
    return DomainParseResult(list(domains), [])


# ---------------------------------------------------------------- customers

_NAME_HEADERS = frozenset({
    "name", "customer", "customername", "company", "companyname", "organisation",
    "organization", "org", "名前", "名称", "顧客", "顧客名", "会社", "会社名", "社名",
    "企業名", "組織", "組織名", "取引先", "取引先名",
})
_ALIAS_HEADERS = frozenset({
    "alias", "aliases", "別名", "略称", "通称", "別称", "略名", "エイリアス",
})
# Aliases are separated by ";" or "|" (full-width too); domains also by "," or spaces.
_ALIAS_SPLIT = re.compile(r"[;|；｜]")
_DOMAIN_SPLIT = re.compile(r"[;|,\s；｜、，]+")


def parse_customers_csv(data: bytes) -> CustomerParseResult:
    """Customers (name, aliases, domains) from CSV bytes.

    With a header row (name/顧客名/会社名, aliases/別名/略称, domains/ドメイン) columns
    are found by name and may come in any order; without one they are taken in that
    order. Aliases are separated by ";" or "|"; domains by ";", "|", "," or spaces.
    A customer without domains is accepted (the mismatch check skips it).
    """
    rows, errors = _read_rows(data)
    if errors:
        return CustomerParseResult([], errors)
    if not rows:
        return CustomerParseResult([], [RowError(0, "", "the file holds no customers")])
    first = rows[0].cells
    name_col = _find_column(first, _NAME_HEADERS)
    alias_col = _find_column(first, _ALIAS_HEADERS)
    domain_col = _find_column(first, _DOMAIN_HEADERS - {"partner", "partners"},
                              lambda k: "domain" in k or "ドメイン" in k)
    cols: tuple[int | None, int | None, int | None] = (0, 1, 2)
    if name_col is not None or alias_col is not None or domain_col is not None:
        if name_col is None:
            return CustomerParseResult([], [RowError(rows[0].line, _row_text(first),
                                                     "the header has no name column")])
        cols = (name_col, alias_col, domain_col)
        rows = rows[1:]
    customers: list[Customer] = []
    seen: dict[str, int] = {}  # folded name -> line
    for row in rows:
        name_c, alias_c, domain_c = (None if c is None else _cell(row, c) for c in cols)
        name = unicodedata.normalize("NFKC", name_c or "").strip()
        if not name:
            errors.append(RowError(row.line, _row_text(row.cells), "empty customer name"))
            continue
        folded = name.casefold()
        if folded in seen:
            errors.append(RowError(row.line, _row_text(row.cells),
                                   f"customer {name!r} is already on line {seen[folded]}"))
            continue
        seen[folded] = row.line
        aliases = [a for a in (unicodedata.normalize("NFKC", x).strip()
                               for x in _ALIAS_SPLIT.split(alias_c or "")) if a]
        domains: list[str] = []
        bad = False
        for d in _DOMAIN_SPLIT.split(domain_c or ""):
            if not d:
                continue
            try:
                domains.append(parse_domain(d))
            except ValueError as e:
                errors.append(RowError(row.line, _row_text(row.cells), str(e)))
                bad = True
        if not bad:
            customers.append(Customer(
                name=name,
                aliases=tuple(dict.fromkeys(a for a in aliases if a.casefold() != folded)),
                domains=tuple(dict.fromkeys(domains)),
            ))
    if errors:
        return CustomerParseResult([], errors)
    return CustomerParseResult(customers, [])
