"""The policy's data files: suppression lists, partner domains and customers, from CSV.

Parsing is all-or-nothing: if any row is bad, the result carries every bad row (with
its 1-based line number) and no data, so a half-read list is never applied. Storing a
suppression list is the store's job (guard.knowledge.listsync), hashing its addresses
guard.mail.digests'; reading the bytes into rows is guard.policy.csvread's.
`load_partners` and `load_customers` read the files a policy names and report bad rows
as a PolicyError, like any other mistake in a policy.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import NamedTuple

from guard.inspect.context import Customer
from guard.inspect.owndata import (
    OwnContacts,
    checked_address,
    checked_phone,
    checked_postal_code,
)
from guard.mail.addresses import InvalidAddress, ascii_domain, valid_address_key
from guard.policy.csvread import (
    Row,
    RowError,
    best_column,
    cell_at,
    find_column,
    looks_domainish,
    read_rows,
    row_text,
)
from guard.policy.issues import PolicyError, PolicyIssue
from guard.policy.values import normalise_kind

__all__ = [
    "CustomerParseResult",
    "DomainParseResult",
    "ListParseResult",
    "OwnContactsParseResult",
    "load_customers",
    "load_own_contacts",
    "load_partner_kinds",
    "load_partners",
    "parse_address_csv",
    "parse_customers_csv",
    "parse_domain",
    "parse_domains_csv",
    "parse_own_contacts_csv",
    "parse_partners_csv",
]


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



# ---------------------------------------------------------------- addresses

_ADDRESS_HEADERS = frozenset({
    "email", "emailaddress", "emailaddr", "mail", "mailaddress", "mailaddr", "mailto",
    "メール", "メールアドレス", "eメール", "eメールアドレス", "電子メール",
    "電子メールアドレス", "アドレス", "メアド",
})


def _has_at(cell: str) -> bool:
    return "@" in cell or "＠" in cell




def parse_address_csv(data: bytes) -> ListParseResult:
    """Addresses of a suppression list (or any address list) from CSV bytes.

    The address column is the one whose header says so (email, メールアドレス, E-mail,
    アドレス, …); without such a header, the column where most rows hold an "@". A
    first row with no "@" and nothing domain-like in it is taken as a header of
    other names and skipped; otherwise it is data, and is checked like any row.
    Blank lines are skipped; an empty address cell in a non-blank row is an error.
    """
    rows, errors = read_rows(data)
    if errors:
        return ListParseResult([], errors)
    if not rows:
        return ListParseResult([], [RowError(0, "", "the file holds no addresses")])
    first = rows[0]
    col = None
    if not any(_has_at(c) for c in first.cells):
        col = find_column(first.cells, _ADDRESS_HEADERS,
                           lambda k: "mail" in k or "メール" in k)
        if col is not None or not any(looks_domainish(c) for c in first.cells):
            rows = rows[1:]  # a header row
    if col is None:
        col = best_column(rows, _has_at)
    if col is None:
        return ListParseResult([], [RowError(0, "", "no column of e-mail addresses found")])
    addresses: dict[str, None] = {}  # ordered set
    for row in rows:
        cell = cell_at(row, col)
        if not cell:
            errors.append(RowError(row.line, row_text(row.cells), "empty address"))
            continue
        try:
            addresses[valid_address_key(cell)] = None
        except ValueError as e:
            errors.append(RowError(row.line, row_text(row.cells), f"invalid address: {e}"))
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


def _are_domains(cell: str) -> bool:
    parts = [p for p in _DOMAIN_SPLIT.split(cell) if p]
    return bool(parts) and all(_is_domain(p) for p in parts)


# Several domains in one cell: ";", "|", "," or spaces (full-width too).
_DOMAIN_SPLIT = re.compile(r"[;|,\s；｜、，]+")

_DOMAIN_HEADERS = frozenset({
    "domain", "domains", "ドメイン", "メールドメイン", "maildomain", "partner",
    "partners", "partnerdomain", "partnerdomains", "取引先ドメイン",
})


def parse_domains_csv(data: bytes) -> DomainParseResult:
    """Domains (partner domains, internal domains, a customers file's domains column)
    from CSV bytes: one or several a row, separated like customers' domains."""
    rows, errors = read_rows(data)
    if errors:
        return DomainParseResult([], errors)
    if not rows:
        return DomainParseResult([], [RowError(0, "", "the file holds no domains")])
    first = rows[0]
    col = None
    if not any(_are_domains(c) for c in first.cells):
        col = find_column(first.cells, _DOMAIN_HEADERS, lambda k: "domain" in k or "ドメイン" in k)
        if col is not None or not any(looks_domainish(c) for c in first.cells):
            rows = rows[1:]
    if col is None:
        col = best_column(rows, _are_domains)
    if col is None:
        return DomainParseResult([], [RowError(0, "", "no column of domains found")])
    domains: dict[str, None] = {}
    for row in rows:
        # one cell may hold several (customers.csv: "greenfarm.co.jp|gf-mail.jp")
        cell = cell_at(row, col)
        try:
            for part in _DOMAIN_SPLIT.split(cell.strip()) if cell.strip() else [cell]:
                domains[parse_domain(part)] = None
        except ValueError as e:
            errors.append(RowError(row.line, row_text(row.cells), str(e)))
    if errors:
        return DomainParseResult([], errors)
    return DomainParseResult(list(domains), [])


_KIND_HEADERS = frozenset({"kind", "kinds", "type", "種別", "区分", "分類", "取引区分"})
_KIND_SPLIT = re.compile(r"[;|；｜、]")


def parse_partners_csv(data: bytes) -> tuple[dict[str, frozenset[str]], list[RowError]]:
    """Partner domains with their kinds (contractor, supplier, …) from CSV bytes.

    The domains are read as parse_domains_csv reads them; kinds come from a `kind`
    (種別, 区分) column when the header has one, several separated by "|", compared
    case-folded (values.normalise_kind). A partner without a kind is a partner.
    """
    result = parse_domains_csv(data)
    if not result.ok:
        return {}, result.errors
    partners: dict[str, frozenset[str]] = {d: frozenset() for d in result.domains}
    rows, _ = read_rows(data)
    if not rows:
        return partners, []
    kind_col = find_column(rows[0].cells, _KIND_HEADERS)
    domain_col = find_column(rows[0].cells, _DOMAIN_HEADERS,
                             lambda k: "domain" in k or "ドメイン" in k)
    if kind_col is None or domain_col is None:
        return partners, []
    for row in rows[1:]:
        try:
            domain = parse_domain(cell_at(row, domain_col))
        except ValueError:
            continue
        kinds = {normalise_kind(k) for k in _KIND_SPLIT.split(cell_at(row, kind_col))}
        partners[domain] = partners.get(domain, frozenset()) | {k for k in kinds if k}
    return partners, []


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


def parse_customers_csv(data: bytes) -> CustomerParseResult:
    """Customers (name, aliases, domains) from CSV bytes.

    With a header row (name/顧客名/会社名, aliases/別名/略称, domains/ドメイン) columns
    are found by name and may come in any order; without one they are taken in that
    order. Aliases are separated by ";" or "|"; domains by ";", "|", "," or spaces.
    A customer without domains is accepted (the mismatch check skips it).
    """
    rows, errors = read_rows(data)
    if errors:
        return CustomerParseResult([], errors)
    if not rows:
        return CustomerParseResult([], [RowError(0, "", "the file holds no customers")])
    first = rows[0].cells
    name_col = find_column(first, _NAME_HEADERS)
    alias_col = find_column(first, _ALIAS_HEADERS)
    domain_col = find_column(first, _DOMAIN_HEADERS - {"partner", "partners"},
                              lambda k: "domain" in k or "ドメイン" in k)
    cols: tuple[int | None, int | None, int | None] = (0, 1, 2)
    if name_col is not None or alias_col is not None or domain_col is not None:
        if name_col is None:
            return CustomerParseResult([], [RowError(rows[0].line, row_text(first),
                                                     "the header has no name column")])
        cols = (name_col, alias_col, domain_col)
        rows = rows[1:]
    customers: list[Customer] = []
    seen: dict[str, int] = {}  # folded name -> line
    for row in rows:
        name_c, alias_c, domain_c = (None if c is None else cell_at(row, c) for c in cols)
        name = unicodedata.normalize("NFKC", name_c or "").strip()
        if not name:
            errors.append(RowError(row.line, row_text(row.cells), "empty customer name"))
            continue
        folded = name.casefold()
        if folded in seen:
            errors.append(RowError(row.line, row_text(row.cells),
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
                errors.append(RowError(row.line, row_text(row.cells), str(e)))
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


# ---------------------------------------------------------------- own contact data


class OwnContactsParseResult(NamedTuple):
    contacts: OwnContacts  # empty when errors
    errors: list[RowError]

    @property
    def ok(self) -> bool:
        return not self.errors


# column -> header names (compared by csvread.find_column's key: NFKC, case-folded,
# without spaces and punctuation)
_OWN_COLUMNS: dict[str, frozenset[str]] = {
    "name": frozenset({"name", "office", "branch", "company", "名前", "名称", "会社名", "社名",
                       "支店", "支店名", "拠点", "拠点名", "事業所", "事業所名", "営業所",
                       "営業所名", "部署", "部署名"}),
    "postal_code": frozenset({"postalcode", "postcode", "zip", "zipcode", "〒", "郵便番号"}),
    "address": frozenset({"address", "住所", "所在地"}),
    "phone": frozenset({"phone", "tel", "telephone", "電話", "電話番号", "代表電話", "tel番号"}),
    "fax": frozenset({"fax", "fax番号", "ファックス", "ファクス"}),
    "domain": frozenset({"domain", "domains", "ドメイン", "メールドメイン"}),
}
# several numbers or domains in one cell: "03-1234-5678 / 03-1234-5679"
_MULTI_SPLIT = re.compile(r"[;|/／；｜、,，]+")


def parse_own_contacts_csv(data: bytes) -> OwnContactsParseResult:
    """The organisation's own offices from CSV bytes: a header row naming the columns
    (name/支店名, postal_code/郵便番号/〒, address/住所, phone/TEL/電話, fax/FAX,
    domain/ドメイン; any subset, any order), then one office a row. Phone, fax and
    domain cells may hold several values separated by "/", ";" or "|"."""
    empty = OwnContacts()
    rows, errors = read_rows(data)
    if errors:
        return OwnContactsParseResult(empty, errors)
    if not rows:
        return OwnContactsParseResult(empty, [RowError(0, "", "the file holds no rows")])
    header = rows[0]
    cols = {k: find_column(header.cells, names) for k, names in _OWN_COLUMNS.items()}
    if not any(c is not None for k, c in cols.items() if k != "name"):
        return OwnContactsParseResult(empty, [RowError(
            header.line, row_text(header.cells),
            "expected a header row naming the columns: name, postal_code, address, "
            "phone, fax, domain (or 支店名, 郵便番号, 住所, 電話, FAX, ドメイン)")])
    names: dict[str, None] = {}
    addresses: dict[str, None] = {}
    phones: set[str] = set()
    postal: set[str] = set()
    domains: set[str] = set()
    for row in rows[1:]:
        def cell(kind: str, row: Row = row) -> str:
            c = cols[kind]
            return "" if c is None else cell_at(row, c)
        try:
            if cell("name"):
                names[unicodedata.normalize("NFKC", cell("name"))] = None
            if cell("postal_code"):
                postal.add(checked_postal_code(cell("postal_code")))
            if cell("address"):
                addresses[checked_address(cell("address"))] = None
            for kind in ("phone", "fax"):
                phones.update(checked_phone(v) for v in _MULTI_SPLIT.split(cell(kind))
                              if v.strip())
            domains.update(parse_domain(v) for v in _MULTI_SPLIT.split(cell("domain"))
                           if v.strip())
        except ValueError as e:
            errors.append(RowError(row.line, row_text(row.cells), str(e)))
    if errors:
        return OwnContactsParseResult(empty, errors)
    return OwnContactsParseResult(OwnContacts(
        names=tuple(names), addresses=tuple(addresses), phones=frozenset(phones),
        postal_codes=frozenset(postal), domains=frozenset(domains)), [])


# ---------------------------------------------------------------- files a policy names


def _read_list_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        display = os.path.normpath(path)
        raise PolicyError([PolicyIssue(display, None, None, "", f"cannot read: {exc.strerror}")]
                          ) from None


def _row_issues(path: Path, errors: list[RowError]) -> PolicyError:
    display = os.path.normpath(path)
    return PolicyError([PolicyIssue(display, e.line or None, 1 if e.line else None, "",
                                    e.reason) for e in errors])


def load_partners(path: str | os.PathLike[str]) -> frozenset[str]:
    """partners.csv: one domain a row (a `domain` column when there is a header)."""
    file = Path(path)
    result = parse_domains_csv(_read_list_file(file))
    if not result.ok:
        raise _row_issues(file, result.errors)
    return frozenset(result.domains)


def load_own_contacts(path: str | os.PathLike[str]) -> OwnContacts:
    """own_contacts.csv: one office a row (see parse_own_contacts_csv)."""
    file = Path(path)
    result = parse_own_contacts_csv(_read_list_file(file))
    if not result.ok:
        raise _row_issues(file, result.errors)
    return result.contacts
def load_partner_kinds(path: str | os.PathLike[str]) -> dict[str, frozenset[str]]:
    """partners.csv with its optional `kind` column: domain -> kinds."""
    file = Path(path)
    partners, errors = parse_partners_csv(_read_list_file(file))
    if errors:
        raise _row_issues(file, errors)
    return partners


def load_customers(path: str | os.PathLike[str]) -> tuple[Customer, ...]:
    """customers.csv: columns `name`, `aliases`, `domains` (see parse_customers_csv)."""
    file = Path(path)
    result = parse_customers_csv(_read_list_file(file))
    if not result.ok:
        raise _row_issues(file, result.errors)
    return tuple(result.customers)
