"""Build one notice mail: email.message.EmailMessage under email.policy.SMTP.

Text copied from the held message (its subject, display names) is attacker-shaped as
far as we are concerned: the stored subject is already RFC 2047-decoded, so an encoded
"=?utf-8?q?=0D=0A?=" is a real CR LF by now. Such text is flattened to one line before
it goes near a header, the headers are written by the email package (which encodes
non-ASCII as RFC 2047 words), and the finished header block is parsed back and must
contain exactly the headers we set: anything else is a bug and the notice is not sent.

Bodies are UTF-8 text/plain in base64, which every common Japanese client displays
(Outlook, Thunderbird, Gmail, iOS/Android mail, Becky!).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid

NOTICE_HEADER = "X-Guard-Notice"
QUEUE_ID_HEADER = "X-Guard-Queue-Id"

_MSGID = re.compile(r"<[!-;=?-~]{1,250}@[!-;=?-~]{1,250}>")  # printable ASCII, no < > space


class NoticeError(Exception):
    pass


def one_line(value: str, limit: int = 120) -> str:
    """Any text → one printable line: control characters, line and paragraph
    separators and other format characters become spaces; long text is cut."""
    out = []
    for ch in value:
        cat = unicodedata.category(ch)
        out.append(" " if cat in ("Cc", "Cf", "Zl", "Zp") or ch in "\u0085" else ch)
    text = " ".join("".join(out).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header_text(value: str, limit: int) -> str:
    """one_line(), and no "=?": the email package would decode an encoded word found in
    a plain value while folding, turning a literal "=?utf-8?q?=0D=0A…?=" back into CR LF
    (CPython gh-121650 / CVE-2024-6923 on older patch releases)."""
    return one_line(value, limit).replace("=?", "= ?")


def _address(display: str, addr: str) -> Address:
    addr = addr.strip()
    if not addr or not addr.isascii() or any(c in addr for c in "\r\n <>,;\"()\\"):
        raise NoticeError("unusable notice address")
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise NoticeError("unusable notice address")
    return Address(display_name=header_text(display, 60), username=local, domain=domain)


def build_notice(*, kind: str, held_id: str, from_name: str, from_addr: str, to_name: str,
                 to_addr: str, subject: str, body: str, hostname: str, date: datetime,
                 in_reply_to: str = "") -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = _address(from_name, from_addr)
    msg["To"] = _address(to_name, to_addr)
    msg["Subject"] = header_text(subject, 200)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = make_msgid("guard-notice", domain=hostname)
    expected = ["from", "to", "subject", "date", "message-id"]
    ref = in_reply_to.strip()
    if ref and _MSGID.fullmatch(ref) and "=?" not in ref:  # threads the notice under the held mail
        msg["In-Reply-To"] = ref
        msg["References"] = ref
        expected += ["in-reply-to", "references"]
    # loop markers: RFC 3834 (no auto-replies to us), Outlook's own suppression header,
    # and ours, which names the kind of notice
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg[NOTICE_HEADER] = kind
    msg[QUEUE_ID_HEADER] = held_id
    expected += ["auto-submitted", "x-auto-response-suppress", NOTICE_HEADER.lower(),
                 QUEUE_ID_HEADER.lower()]
    msg.set_content(body, subtype="plain", charset="utf-8", cte="base64")
    expected += ["mime-version", "content-type", "content-transfer-encoding"]
    try:
        data = msg.as_bytes()
    except (ValueError, TypeError) as e:
        raise NoticeError(f"notice could not be generated: {e}") from e
    verify_headers(data, expected)
    return data


def verify_headers(data: bytes, expected: list[str]) -> None:
    """The generated header block must hold exactly the expected fields, once each."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or b"\n" in data[:end].replace(b"\r\n", b""):
        raise NoticeError("notice header block is malformed")
    head = BytesHeaderParser(policy=policy.compat32).parsebytes(data[: end + 4])
    names = sorted(k.lower() for k in head.keys())
    if names != sorted(expected) or head.defects:
        raise NoticeError(f"notice headers differ from what was built: {names}")
