"""Delivery status notifications (RFC 3464), sent from the null reverse-path.

Built as bytes by hand, not with email.generator: the original header block is
embedded unchanged (text/rfc822-headers), and every value we insert is checked to be
free of CR/LF so a hostile address cannot add headers to the DSN.
"""

from __future__ import annotations

import email.utils
import os
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class FailedRecipient:
    address: str
    code: int
    reply: str


def _clean(value: str, limit: int = 900) -> str:
    out = "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in value)
    return out[:limit]


def _status(code: int, reply: str) -> str:
    head = reply.split(" ", 1)[0]
    parts = head.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and head[0] in "45":
        return head
    return "5.0.0" if code >= 500 else "4.0.0"


def build_dsn(*, hostname: str, queue_id: str, original_from: str,
              failed: Sequence[FailedRecipient], original: bytes, arrival: float,
              reason: str = "") -> bytes:
    boundary = f"{queue_id}.{os.urandom(6).hex()}/{hostname}"
    end = original.find(b"\r\n\r\n")
    headers = original if end < 0 else original[:end + 2]
    now = email.utils.formatdate(localtime=False)
    rcpt_lines_en = "\r\n".join(
        f"<{_clean(f.address)}>: {f.code} {_clean(f.reply)}" for f in failed)
    text = (
        "このメールは送信ガードからの自動通知です。\r\n"
        "次の宛先にはメールを配送できませんでした。\r\n\r\n"
        "This is the mail guard at " + _clean(hostname) + ".\r\n"
        "Your message could not be delivered to the following recipients.\r\n"
        + (f"Reason: {_clean(reason)}\r\n" if reason else "") +
        "\r\n" + rcpt_lines_en + "\r\n")
    per_rcpt = "".join(
        f"Final-Recipient: rfc822; {_clean(f.address)}\r\n"
        f"Action: failed\r\n"
        f"Status: {_status(f.code, f.reply)}\r\n"
        f"Diagnostic-Code: smtp; {f.code} {_clean(f.reply)}\r\n\r\n" for f in failed)
    parts = [
        f"From: Mail Delivery System <MAILER-DAEMON@{_clean(hostname)}>\r\n",
        f"To: <{_clean(original_from)}>\r\n",
        "Subject: =?UTF-8?B?6YWN6YCB5aSx5pWX?= / Undelivered Mail Returned to Sender\r\n",
        f"Date: {now}\r\n",
        f"Message-ID: <{queue_id}.dsn@{_clean(hostname)}>\r\n",
        "Auto-Submitted: auto-replied\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/report; report-type=delivery-status;\r\n",
        f'\tboundary="{boundary}"\r\n',
        "\r\n",
        "This is a MIME-encapsulated message.\r\n\r\n",
        f"--{boundary}\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "Content-Transfer-Encoding: 8bit\r\n\r\n",
        text,
        f"\r\n--{boundary}\r\n",
        "Content-Type: message/delivery-status\r\n\r\n",
        f"Reporting-MTA: dns; {_clean(hostname)}\r\n",
        f"X-Guard-Queue-ID: {queue_id}\r\n",
        f"Arrival-Date: {email.utils.formatdate(arrival)}\r\n\r\n",
        per_rcpt,
        f"--{boundary}\r\n",
        "Content-Type: text/rfc822-headers\r\n",
        "Content-Transfer-Encoding: 8bit\r\n\r\n",
    ]
    return "".join(parts).encode("utf-8") + headers + f"\r\n--{boundary}--\r\n".encode()
