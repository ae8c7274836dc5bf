"""Header and envelope shape: bulk-mail marks, Bcc-only recipients, the sending client.

Pure functions over the few header fields the parser keeps (MessageView.header_fields,
guard.mail.view.SHAPE_FIELDS)
and the envelope. What they report:

  bulk.list_unsubscribe  a List-Unsubscribe field is present (a mailing tool's mark).
  bulk.precedence        Precedence: bulk, list or junk; evidence value.
  envelope.bcc_only      envelope recipients in neither To nor Cc; count = how many.
  client                 the sending program: evidence name (outlook, thunderbird,
                         apple_mail, iphone, gmail, copier; unknown for a program that
                         names itself in X-Mailer/User-Agent but is none of these) and
                         header (the raw field it was told from, truncated). Nothing is
                         reported for a message that says nothing of its client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from guard.inspect.context import InspectContext
from guard.inspect.domains import is_internal
from guard.inspect.finding import Finding
from guard.mail.addresses import address_key

_SHOWN = 120  # characters of a raw value kept in evidence

# The names `client` reports (evidence name), for the policy's check of conditions.
CLIENT_NAMES = ("outlook", "thunderbird", "apple_mail", "iphone", "gmail", "copier",
                "unknown")

BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})

# (name, pattern over X-Mailer / User-Agent). Order matters: iPhone Mail before Apple
# Mail, copiers before anything generic.
_CLIENTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("copier", re.compile(
        r"\b(?:ricoh|canon|sharp|xerox|fujifilm|konica|minolta|bizhub|kyocera"
        r"|imagerunner|e-studio|toshiba tec|brother|epson|lexmark|muratec|scanner)\b"
        r"|scan\s*to\s*(?:e-?mail|mail)", re.I)),
    ("iphone", re.compile(r"\biP(?:hone|ad) Mail\b|\biOS Mail\b", re.I)),
    ("apple_mail", re.compile(r"\bApple Mail\b", re.I)),
    ("outlook", re.compile(r"Microsoft (?:Office )?Outlook|Outlook-(?:iOS|Android|Express)"
                           r"|Microsoft Windows Live Mail|MimeOLE", re.I)),
    ("thunderbird", re.compile(r"Thunderbird|Icedove|Betterbird", re.I)),
    ("gmail", re.compile(r"\bGmail\b|Google-Apps-Script", re.I)),
)
# Message-ID shapes of clients that send no X-Mailer: Gmail's web and apps
# (<CA…@mail.gmail.com>), Outlook on the web / Exchange (<…@…prod.outlook.com>).
_MESSAGE_ID_CLIENTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("gmail", re.compile(r"@mail\.gmail\.com>?\s*$", re.I)),
    ("outlook", re.compile(r"\.prod\.outlook\.com>?\s*$|@[^>]*\.outlook\.com>?\s*$", re.I)),
)


class HeaderFieldsView(Protocol):
    @property
    def header_fields(self) -> Mapping[str, str]: ...


class EnvelopeShapeView(Protocol):
    @property
    def rcpt_tos(self) -> Sequence[str]: ...

    @property
    def to_addrs(self) -> Sequence[str]: ...

    @property
    def cc_addrs(self) -> Sequence[str]: ...


def detect_bulk(view: HeaderFieldsView) -> list[Finding]:
    fields = view.header_fields
    out: list[Finding] = []
    unsubscribe = fields.get("list-unsubscribe", "").strip()
    if unsubscribe:
        out.append(Finding(
            "bulk.list_unsubscribe", score=1.0, where="header:list-unsubscribe",
            evidence={"header": unsubscribe[:_SHOWN]},
            reason_ja="一斉配信の印（List-Unsubscribe ヘッダー）があります",
            reason_en="the message carries a List-Unsubscribe header (bulk mail)"))
    precedence = fields.get("precedence", "").strip().lower()
    if precedence in BULK_PRECEDENCE:
        out.append(Finding(
            "bulk.precedence", score=1.0, where="header:precedence",
            evidence={"value": precedence},
            reason_ja=f"一斉配信の印（Precedence: {precedence}）があります",
            reason_en=f"the message is marked Precedence: {precedence}"))
    return out


def detect_bcc_only(view: EnvelopeShapeView, ctx: InspectContext) -> list[Finding]:
    """Envelope recipients that are in neither To nor Cc: Bcc (or a list expansion)."""
    shown = {address_key(a) for a in (*view.to_addrs, *view.cc_addrs)}
    hidden: dict[str, None] = {}
    for rcpt in view.rcpt_tos:
        key = address_key(rcpt)
        if key and key not in shown:
            hidden[key] = None
    n = len(hidden)
    if not n:
        return []
    external = sum(1 for k in hidden if "@" in k and not is_internal(k, ctx))
    return [Finding(
        "envelope.bcc_only", score=1.0, count=n, where="rcpt",
        evidence={"external": external},
        reason_ja=f"Bcc だけの宛先が {n} 件あります（社外 {external} 件）",
        reason_en=f"{n} recipient(s) only in Bcc ({external} external)")]


def client_name(fields: Mapping[str, str]) -> tuple[str, str] | None:
    """(normalised client name, the raw field value it was told from), or None."""
    for key in ("x-mailer", "user-agent"):
        raw = fields.get(key, "").strip()
        if not raw:
            continue
        for name, pattern in _CLIENTS:
            if pattern.search(raw):
                return name, raw
    thread_index = fields.get("thread-index", "").strip()
    message_id = fields.get("message-id", "").strip()
    for name, pattern in _MESSAGE_ID_CLIENTS:
        if pattern.search(message_id):
            return name, message_id
    if thread_index:  # only Outlook and Exchange write Thread-Index
        return "outlook", thread_index
    # a program that names itself, but not one of the above (a business system, a
    # mailing tool): "unknown", with the name it gave
    raw = fields.get("x-mailer", "").strip() or fields.get("user-agent", "").strip()
    return ("unknown", raw) if raw else None


def detect_client(view: HeaderFieldsView) -> list[Finding]:
    found = client_name(view.header_fields)
    if found is None:
        return []
    name, raw = found
    return [Finding(
        "client", score=1.0, where="header",
        evidence={"name": name, "header": raw[:_SHOWN]},
        reason_ja=f"送信に使われたソフト: {name}",
        reason_en=f"sent with {name}")]
