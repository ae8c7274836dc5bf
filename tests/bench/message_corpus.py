"""Random messages for comparing two versions of the parse and the text detectors.

`generated(n, seed)` builds messages from the parts the parse has to get right: header
blocks (folds, RFC 2047 words, raw 8-bit, bare LF, a Unix "From " line, no blank line
before the body, a non-header line among the headers, a bare CR), Content-Types that
look like a multipart or message/* but are not (and ones that are), bodies in every
charset and transfer encoding guard meets (ISO-2022-JP, UTF-8, Shift_JIS, base64,
quoted-printable, 8bit), lines that look like headers or boundaries, long base64 runs,
no final newline, and Japanese office text with signatures, quotes and personal data.
The same seed gives the same bytes. Used by tests/bench/worker_bench.py --dump.
"""

from __future__ import annotations

import base64
import quopri
import random

_JA = ("いつもお世話になっております。", "見積書を添付いたします。", "ご確認ください。",
       "納期は12月15日です。", "合計金額は1,234,567円（税込）です。", "①　②　㈱テスト",
       "ﾃｽﾄ ｶﾀｶﾅ", "住所：東京都港区芝公園4-2-8", "TEL：090-1234-5678", "〒105-0011",
       "マイナンバー 1234 5678 9018", "山田様", "株式会社サンプル", "宜しくお願い致します。")
_EN = ("Hello,", "Please see the attached file.", "From: Alice <a@example.com>",
       "Sent: Monday, December 7, 2026 10:00 AM", "-----Original Message-----",
       "On Mon, Dec 7, 2026 at 10:00 AM Bob <b@example.com> wrote:", "> quoted line",
       ">> deeper", "-- ", "--", "Best regards,", "CONFIDENTIAL: if you are not the intended "
       "recipient, please delete this e-mail.", "Card 4111 1111 1111 1111", "x" * 300,
       "Subject: not a header", "From someone", " leading space", "\tleading tab",
       "--b", "--b--", "A" * 76,
       "=E3=81=82=E3=81=84", "", "", "")


def _text(rng: random.Random, lines: int) -> str:
    pool = _JA if rng.random() < 0.6 else _EN
    mixed = rng.random() < 0.3
    out = []
    for _ in range(lines):
        src = (_JA + _EN) if mixed else pool
        out.append(rng.choice(src) if rng.random() < 0.9 else "")
    return "\n".join(out)


def _encode(rng: random.Random, text: str) -> tuple[str, bytes]:
    """(charset, bytes) as some client would write it."""
    choice = rng.randrange(5)
    if choice == 0:
        return "iso-2022-jp", text.encode("iso2022_jp", "replace")
    if choice == 1:
        return "utf-8", text.encode("utf-8")
    if choice == 2:
        return "shift_jis", text.encode("cp932", "replace")
    if choice == 3:
        return "", text.encode("utf-8")  # undeclared
    return "us-ascii", text.encode("ascii", "replace")


def _eol(rng: random.Random, data: bytes) -> bytes:
    style = rng.randrange(6)
    if style == 0:
        return data  # bare LF
    if style == 1:  # CRLF with a bare CR or two
        out = data.replace(b"\n", b"\r\n")
        cut = rng.randrange(len(out) + 1)
        return out[:cut] + b"\r" + out[cut:]
    return data.replace(b"\n", b"\r\n")


def _body(rng: random.Random, cte: str, data: bytes) -> bytes:
    if cte == "base64":
        return base64.encodebytes(data)
    if cte == "quoted-printable":
        return quopri.encodestring(data)
    return data


_CTYPES = ("text/plain", "text/html", "multipart/mixed", "multipart /mixed",
           "message/rfc822", "message/delivery-status", "Text/Plain", "text/plain; format=flowed",
           "application/octet-stream", "MULTIPART/alternative", "image/png", "text")


def _head(rng: random.Random, ctype: str | None, cte: str | None) -> bytes:
    lines = []
    if rng.random() < 0.05:
        lines.append(b"From sender@example.com Mon Dec  7 10:00:00 2026")
    lines += [b"From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.co.jp>",
              b"To: a@example.com,\n b@example.com" if rng.random() < 0.5 else
              b"To: =?UTF-8?Q?=E5=B1=B1=E7=94=B0?= <c@example.com>",
              b"Subject: " + rng.choice((b"hello", b"=?ISO-2022-JP?B?GyRCOCtAURsoQg==?=",
                                         "件名 raw 8bit".encode(), b"folded\n\tsubject")),
              b"Message-ID: <%d@example.com>" % rng.randrange(10**6)]
    if rng.random() < 0.8:
        lines.append(b"MIME-Version: 1.0")
    if ctype is not None:
        lines.append(b"Content-Type: " + ctype.encode() + (
            b'; boundary="b"' if "multipart" in ctype.lower() and rng.random() < 0.8 else b""))
    if cte is not None:
        lines.append(b"Content-Transfer-Encoding: " + cte.encode())
    if rng.random() < 0.05:
        lines.append(b"not a header line")
    if rng.random() < 0.05:
        lines.append(b"X-Odd:\rvalue")
    return b"\n".join(lines) + b"\n"


def _leaf(rng: random.Random) -> bytes:
    charset, data = _encode(rng, _text(rng, rng.randrange(0, 120)))
    cte = rng.choice(("7bit", "8bit", "base64", "quoted-printable", None))
    ctype = rng.choice(("text/plain", "text/html", "application/pdf", "image/png"))
    head = b"Content-Type: " + ctype.encode() + (
        b"; charset=" + charset.encode() if charset else b"")
    if ctype.startswith(("application", "image")):
        data = rng.randbytes(rng.randrange(0, 9000))
        cte = "base64"
        head += b'\nContent-Disposition: attachment; filename="f.bin"'
    if cte:
        head += b"\nContent-Transfer-Encoding: " + cte.encode()
    return head + b"\n\n" + _body(rng, cte or "", data)


def generated(n: int = 600, seed: int = 18) -> dict[str, bytes]:
    rng = random.Random(seed)
    out: dict[str, bytes] = {}
    for i in range(n):
        ctype = rng.choice((*_CTYPES, None, None))
        cte = rng.choice(("7bit", "8bit", "base64", "quoted-printable", None, None))
        head = _head(rng, ctype, cte)
        if ctype and "multipart" in ctype.lower():
            parts = [_leaf(rng) for _ in range(rng.randrange(0, 4))]
            body = b"preamble\n" + b"".join(b"--b\n" + p + b"\n" for p in parts) + \
                (b"--b--\n" if rng.random() < 0.9 else b"") + b"epilogue\n"
        elif ctype == "message/rfc822":
            body = _head(rng, "text/plain", None) + b"\n" + _encode(rng, _text(rng, 20))[1]
        elif ctype == "message/delivery-status":
            body = b"Reporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@b\nAction: failed\n" \
                   b"AAAA\n\nStatus: 5.0.0\n"
        else:
            charset, data = _encode(rng, _text(rng, rng.randrange(0, 400)))
            if rng.random() < 0.1:  # a long base64-looking run in a text body
                data += b"\n" + b"\n".join([b"QUJD" * 19] * rng.randrange(60, 200)) + b"\n"
            body = _body(rng, cte or "", data)
            if charset and ctype and ctype.startswith("text") and rng.random() < 0.7:
                head = head.replace(b"Content-Type: " + ctype.encode(),
                                    b"Content-Type: " + ctype.encode() + b"; charset=" +
                                    charset.encode())
        separator = b"\n" if rng.random() < 0.95 else b""
        raw = _eol(rng, head + separator + body)
        if rng.random() < 0.2:
            raw = raw.rstrip(b"\r\n")  # no final newline
        out[f"generated:{i}"] = raw
    return out
