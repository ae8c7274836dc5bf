"""Seed history from what an old mail system left: an address book, a Postfix log, an
Exchange Online message trace. Pure parsing: bytes in, (recipient, sender, first seen)
out, with every bad row and its line number; `guard history import` stores them
(guard.store.knowledge.import_history) and `guard policy test --history` judges by them.

All or nothing, like the suppression lists: one bad row and nothing is imported, so a
misread file never teaches half a history.
"""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from guard.inspect.domains import registrable_domain
from guard.mail.addresses import domain_of, in_domain_set, valid_address_key
from guard.policy.csvread import (
    RowError,
    decode_csv_bytes,
    find_column,
    header_key,
    read_rows,
    row_text,
)
from guard.store.knowledge import ORG, Seen

__all__ = ["FORMATS", "HistoryFile", "Sent", "detect_format", "parse_history", "seen_rows"]

FORMATS = ("addressbook", "postfix", "exchange")

# One delivery line of Postfix's smtp client: "4F2A81C0: to=<a@b>, relay=…, status=sent"
_POSTFIX_SMTP = re.compile(
    r"\bpostfix[\w.-]*/smtp\[\d+\]:\s+([0-9A-Za-z]+):\s+to=<([^>]*)>.*?\bstatus=(\w+)")
_POSTFIX_FROM = re.compile(r"\bpostfix[\w.-]*/qmgr\[\d+\]:\s+([0-9A-Za-z]+):\s+from=<([^>]*)>")
_POSTFIX_ANY = re.compile(r"\bpostfix[\w.-]*/\w+\[\d+\]:")
# "Dec  7 04:12:33" (BSD syslog: no year, local time) or RFC 3339 (rsyslog's default)
_BSD_TIME = re.compile(r"^([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s")
_ISO_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?"
                       r"(?:Z|[+-]\d{2}:?\d{2})?)\s")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

_RCPT_HEADERS = frozenset({"recipientaddress", "recipient", "recipients", "toaddress"})
_SENDER_HEADERS = frozenset({"senderaddress", "sender", "fromaddress"})
_TIME_HEADERS = frozenset({"received", "datetime", "date", "origintimestamputc", "timestamp"})
_STATUS_HEADERS = frozenset({"status", "deliverystatus", "event"})
# Exchange's trace export writes US dates in UTC ("12/7/2026 4:12:33 AM")
_DATE_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M",
                 "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M")
# Several addresses in one address-book cell (Google Contacts writes " ::: ")
_CELL_SPLIT = re.compile(r"\s*(?::::|[;,\s])\s*")


@dataclass(frozen=True)
class Sent:
    """One recipient the old system sent to."""

    line: int
    address: str  # comparison form
    sender: str  # as the source names it ("" = not named)
    at: float | None  # seconds since the epoch; None = not given (address books)


@dataclass
class HistoryFile:
    format: str
    sent: list[Sent] = field(default_factory=list)  # empty when errors
    errors: list[RowError] = field(default_factory=list)
    skipped: int = 0  # rows that are no delivery (another status, no address, inbound)

    @property
    def ok(self) -> bool:
        return not self.errors


def detect_format(data: bytes) -> str:
    """postfix when the first lines are Postfix's, exchange when a header names the
    recipient address column, otherwise an address book."""
    try:
        text = decode_csv_bytes(data[:65536])
    except (ValueError, UnicodeDecodeError):
        return "addressbook"  # the parse says what is wrong with it
    if _POSTFIX_ANY.search(text):
        return "postfix"
    head = text.splitlines()[:1]
    if head and find_column(re.split(r"[,\t]", head[0].replace('"', "")), _RCPT_HEADERS) \
            is not None:
        return "exchange"
    return "addressbook"


def parse_history(data: bytes, fmt: str | None = None, *, now: float | None = None
                  ) -> HistoryFile:
    if data.startswith(b"\x1f\x8b"):  # a rotated log, gzipped (maillog.1.gz)
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            return HistoryFile(fmt or "postfix", errors=[RowError(0, "", f"bad gzip file: {e}")])
    fmt = fmt or detect_format(data)
    parser: Callable[[bytes, float], HistoryFile] = {
        "addressbook": _address_book, "postfix": _postfix, "exchange": _exchange}[fmt]
    result = parser(data, time.time() if now is None else now)
    if result.errors:
        result.sent = []
    elif not result.sent:
        result.errors.append(RowError(0, "", f"no delivered recipients found (read as {fmt})"))
    return result


def _key(cell: str) -> str:
    """The comparison form; ValueError with a reason for people."""
    try:
        return valid_address_key(cell.strip().strip("<>"))
    except ValueError as e:
        raise ValueError(f"invalid address {cell.strip()!r}: {e}") from None


def _mail_header(key: str) -> bool:
    return "mail" in key or "メール" in key or "アドレス" in key


def _address_book(data: bytes, now: float) -> HistoryFile:
    """The cells holding an "@" in the e-mail columns (Outlook: E-mail Address, E-mail
    2 Address…; Thunderbird: Primary Email; Google: E-mail 1 - Value; 電子メール アドレス),
    or in any column when the header names none; contacts without an address skipped.
    A note's "@yamada" is no address: only the e-mail columns are read when named."""
    out = HistoryFile("addressbook")
    rows, errors = read_rows(data)
    out.errors = errors
    columns: set[int] | None = None
    if rows and not any("@" in c or "＠" in c for c in rows[0].cells):
        header = rows.pop(0).cells
        named = {i for i, c in enumerate(header) if _mail_header(header_key(c))}
        columns = named or None
    for row in rows:
        found = False
        for i, cell in enumerate(row.cells):
            if columns is not None and i not in columns:
                continue
            if "@" not in cell and "＠" not in cell:
                continue
            for part in _CELL_SPLIT.split(cell.replace("＠", "@")):
                if "@" not in part:
                    continue
                try:
                    out.sent.append(Sent(row.line, _key(part), "", None))
                    found = True
                except ValueError as e:
                    out.errors.append(RowError(row.line, row_text(row.cells), str(e)))
        out.skipped += not found
    return out


def _syslog_time(line: str, now: float) -> float | None:
    m = _ISO_TIME.match(line)
    if m:
        return datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
    m = _BSD_TIME.match(line)
    if not m or m.group(1) not in _MONTHS:
        return None
    year = time.localtime(now).tm_year
    for y in (year, year - 1):  # no year in the line: the latest that is not ahead
        try:  # local time, as syslog wrote it
            at = datetime(y, _MONTHS[m.group(1)], int(m.group(2)), int(m.group(3)),
                          int(m.group(4)), int(m.group(5))).timestamp()
        except ValueError:
            return None
        if at <= now + 86400:
            return at
    return None


def _postfix(data: bytes, now: float) -> HistoryFile:
    out = HistoryFile("postfix")
    # a log is no CSV: a stray byte (a subject logged by a header check) is no error
    text = data.decode("utf-8", errors="replace")
    senders: dict[str, str] = {}  # queue id -> envelope sender (qmgr's line comes first)
    for n, line in enumerate(text.splitlines(), 1):
        m = _POSTFIX_FROM.search(line)
        if m:
            senders[m.group(1)] = m.group(2)
            continue
        m = _POSTFIX_SMTP.search(line)
        if m is None:
            continue  # another program's line, or another kind of Postfix line
        queue_id, rcpt, status = m.groups()
        if status != "sent":
            out.skipped += 1
            continue
        at = _syslog_time(line, now)
        if at is None:
            out.errors.append(RowError(n, row_text([line]), "no syslog time at the start"))
            continue
        try:
            out.sent.append(Sent(n, _key(rcpt), senders.get(queue_id, ""), at))
        except ValueError as e:
            out.errors.append(RowError(n, row_text([line]), str(e)))
    return out


def _trace_time(cell: str) -> float:
    text = cell.strip()
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        for f in _DATE_FORMATS:
            try:
                t = datetime.strptime(text, f)
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"unreadable time {text!r}") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()  # traces are in UTC


def _exchange(data: bytes, now: float) -> HistoryFile:
    out = HistoryFile("exchange")
    rows, errors = read_rows(data)
    out.errors = errors
    if errors or not rows:
        return out
    header = rows[0].cells
    rcpt_col = find_column(header, _RCPT_HEADERS)
    if rcpt_col is None:
        out.errors.append(RowError(rows[0].line, row_text(header),
                                   "no RecipientAddress column in the header"))
        return out
    sender_col = find_column(header, _SENDER_HEADERS)
    time_col = find_column(header, _TIME_HEADERS)
    status_col = find_column(header, _STATUS_HEADERS)
    for row in rows[1:]:
        def cell(col: int | None, row: Sequence[str] = row.cells) -> str:
            return row[col].strip() if col is not None and col < len(row) else ""

        if status_col is not None and cell(status_col).casefold() != "delivered":
            out.skipped += 1
            continue
        try:
            at = _trace_time(cell(time_col)) if time_col is not None else None
            for rcpt in _CELL_SPLIT.split(cell(rcpt_col)):
                if rcpt:
                    out.sent.append(Sent(row.line, _key(rcpt), cell(sender_col), at))
        except ValueError as e:
            out.errors.append(RowError(row.line, row_text(row.cells), str(e)))
    return out


def seen_rows(sent: Iterable[Sent], internal_domains: Iterable[str],
              scope_of: Callable[[str], str], now: float
              ) -> tuple[list[Seen], list[Seen], int]:
    """(domains, addresses, internal recipients skipped) to mark known: org-wide, and for
    the sender too where the source names one (`scope_of` maps a sender address to its
    scope: the guard's user name, or the address on a trusted relay)."""
    internal = frozenset(internal_domains)
    domains: list[Seen] = []
    addresses: list[Seen] = []
    skipped = 0
    for s in sent:
        domain = domain_of(s.address)
        if in_domain_set(domain, internal):
            skipped += 1
            continue
        at = now if s.at is None else s.at
        org = registrable_domain(domain)
        scopes = [ORG]
        if s.sender:
            try:
                scopes.append(scope_of(_key(s.sender)))
            except ValueError:
                pass  # a sender we cannot read (bounces: "<>") still sent to the address
        for scope in scopes:
            addresses.append(Seen(s.address, scope, at))
            if org:
                domains.append(Seen(org, scope, at))
    return domains, addresses, skipped
