"""Hostile header and MIME shapes, shared by the tests and by
tests/bench/hostile_headers.py, which times each one.

HOSTILE: shapes whose parse was slow (quadratic, or recursive) before the limits;
each name says what it holds. GATE: the worst shapes known that the main process may
still read itself (message.cheap_to_read), each at one of its limits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tests.inspect.slow_readers import SLEEP, sleep_data

HEAD = (b"From: Alice <alice@example.co.jp>\r\nTo: buyer@client.example\r\n"
        b"Subject: s\r\nMIME-Version: 1.0\r\n")


def message(extra: bytes, body: bytes = b"hello\r\n", head: bytes = HEAD) -> bytes:
    return head + extra + b"\r\n" + body


def field(name: bytes, first: bytes, items: Iterable[bytes], sep: bytes = b";\r\n ") -> bytes:
    """One header field whose items are folded onto lines of their own."""
    return name + b": " + first + sep.join(items) + b"\r\n"


def without(name: bytes) -> bytes:
    return b"".join(line + b"\r\n" for line in HEAD.split(b"\r\n")
                    if line and not line.lower().startswith(name + b":"))


def ct_params(n: int) -> bytes:
    """The issue's shape: a Content-Type with n parameters (5,500: 59 KB)."""
    return message(field(b"Content-Type", b"text/plain; ", (b"a%d=b" % i for i in range(n))))


def nested(depth: int) -> bytes:
    out = HEAD + b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    for i in range(1, depth):
        out += b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i - 1, i)
    out += b"--b%d\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n" % (depth - 1)
    for i in reversed(range(depth)):
        out += b"--b%d--\r\n" % i
    return out


def multipart(parts: Iterable[bytes]) -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="b"\r\n',
                   body=b"".join(b"--b\r\n" + p for p in parts) + b"--b--\r\n")


PLAIN = b"Content-Type: text/plain\r\n\r\nx\r\n"

HOSTILE: dict[str, Callable[[], bytes]] = {
    "ct_params_5500": lambda: ct_params(5500),
    "ct_params_10000": lambda: ct_params(10000),
    "ct_params_1000_in_4k": lambda: message(
        b"Content-Type: text/plain; " + b";".join(b"a=b" for _ in range(1000)) + b"\r\n"),
    "rfc2231_continuations_5000": lambda: message(
        b"Content-Type: text/plain\r\n" + field(b"Content-Disposition", b"attachment; ", (
            b"filename*%d*=%%E3%%81%%82" % i for i in range(5000)))),
    "encoded_words_in_name_5000": lambda: message(
        b"Content-Type: application/pdf\r\n" + field(
            b"Content-Disposition", b'attachment; filename="',
            (b"=?UTF-8?B?44GC?=" for _ in range(5000)), sep=b"\r\n ")[:-2] + b'"\r\n'),
    "comments_in_ct_1300": lambda: message(
        b"Content-Type: text/plain; name=" + b"(a)" * 1300 + b"\r\n"),
    "encoded_words_subject_20000": lambda: message(b"", head=without(b"subject") + field(
        b"Subject", b"", (b"=?UTF-8?B?44GC?=" for _ in range(20000)), sep=b"\r\n ")),
    "to_10000_addresses": lambda: message(b"", head=without(b"to") + field(
        b"To", b"", (b"u%d@example.com" % i for i in range(10000)), sep=b",\r\n ")),
    "to_nested_comments_20000": lambda: message(b"", head=without(b"to") + (
        b"To: bob@example.com " + b"(" * 20000 + b")" * 20000 + b"\r\n")),
    "to_nested_comments_folded": lambda: message(b"", head=without(b"to") + (
        b"To: bob@example.com " + b"(\r\n " * 20000 + b")\r\n " * 20000 + b"\r\n")),
    "header_fields_30000": lambda: message(b"X-A: b\r\n" * 30000),
    "folded_lines_80000": lambda: message(b"X-Long: a" + b"\r\n b" * 80000 + b"\r\n"),
    "subject_folded_80000": lambda: message(b"", head=without(b"subject") + (
        b"Subject: a" + b"\r\n b" * 80000 + b"\r\n")),
    "content_type_fields_10000": lambda: message(b"Content-Type: text/plain; a=b\r\n" * 10000),
    "part_header_fields_30000": lambda: multipart([b"X-A: b\r\n" * 30000 + PLAIN]),
    "parts_500_in_18k": lambda: multipart([PLAIN] * 500),
    "parts_128_ct_of_500_params": lambda: multipart([
        b"Content-Type: text/plain; " + b";\r\n ".join(b"a=b" for _ in range(500))
        + b"\r\n\r\nx\r\n"] * 128),
    "nested_1000": lambda: nested(1000),
}


def _digits(n: int) -> bytes:
    rng = random.Random(1)
    return " ".join(f"{rng.randrange(10 ** 12):012d}" for _ in range(n // 13)).encode()


# The worst this script knows that still passes cheap_to_read (each at a limit of it)
GATE: dict[str, Callable[[], bytes]] = {
    "gate:my_number_like_digits": lambda: message(
        b"Content-Type: text/plain; charset=us-ascii\r\n", body=_digits(15_500)),
    "gate:2000_lines": lambda: message(b"Content-Type: text/plain\r\n",
                                       body=b"090-1234-5678\r\n" * 900 + b"\r\n" * 1090),
    "gate:8_parts_of_100_fields": lambda: multipart([
        b"X-A: b\r\n" * 98 + b"Content-Type: text/plain; " + b"; ".join(
            b"p%d=v" % i for i in range(16)) + b"\r\n\r\n" + b"x" * 100 + b"\r\n"] * 8),
    "gate:top_block_16k": lambda: message(b"", head=(
        b"From: Alice <alice@example.co.jp>\r\n"
        + field(b"To", b"", (b'"=?UTF-8?B?5bGx55Sw?=" <u%d@ex.com>' % i for i in range(95)),
                sep=b",\r\n ")[:4000] + b"\r\n"
        + field(b"Subject", b"", (b"=?UTF-8?B?44GC?=" for _ in range(230)), sep=b"\r\n ")
        + b"X-A: " + b"b" * 900 + b"\r\n" * 0 + b"\r\n"
        + b"".join(b"X-Pad-%d: " % i + b"c" * 40 + b"\r\n" for i in range(90)))),
}




def plain_message(subject: str, to: str = "tanaka@example.co.jp") -> bytes:
    """An ordinary short message (ISO-2022-JP subject and body, as Japanese MUAs write)."""
    import email.header

    head = email.header.Header(subject, "iso-2022-jp").encode()
    return (f"From: Alice <alice@example.co.jp>\r\nTo: {to}\r\nSubject: {head}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n").encode() + (
            "明日の定例会議は10時からです。\r\n".encode("iso-2022-jp"))


def slow_attachment_message(seconds: float, markers: Path | None = None) -> bytes:
    """An ordinary message whose attachment keeps an extraction worker busy for
    `seconds` (only where the workers read with tests/inspect/slow_readers.py); the
    worker writes `markers`/started when it begins."""
    return message(b'Content-Type: multipart/mixed; boundary="s"\r\n', body=(
        b"--s\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--s\r\nContent-Type: " + SLEEP.encode()
        + b'\r\nContent-Disposition: attachment; filename="slow.bin"\r\n\r\n'
        + sleep_data(seconds, markers) + b"\r\n--s--\r\n"))


def python_steps(fn: Callable[[], object], path_part: str = "") -> int:
    """How many Python function calls and lines `fn()` runs (in files whose path
    contains `path_part`): work counted, not timed, so a test holds on a slow machine
    too, and a loop over 80,000 lines counts 80,000 times even without a call."""
    import sys

    count = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if path_part not in frame.f_code.co_filename:
            return None  # not this frame's lines either
        count += 1  # the call, then each line
        return trace

    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count
