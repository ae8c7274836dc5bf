"""What the queue row shows of a message: decoded like inspection, always one line."""

from __future__ import annotations

from email.header import Header

import pytest

from guard.accept.pipeline import HeaderSummary, summarize_headers
from tests.hostile import HOSTILE, python_steps


@pytest.mark.parametrize("raw,subject", [
    ("Subject: お見積り / quotation\r\n".encode(), "お見積り / quotation"),  # raw UTF-8 (swaks)
    ("Subject: テスト\r\n".encode("cp932"), "テスト"),  # raw Shift_JIS from an old client
    (b"Subject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\r\n", "テスト"),
    (b"Subject: =?utf-8?q?=E8=A6=8B=E7=A9=8D=0D=0ABcc=3A_x?=\r\n next\r\n", "見積 Bcc: x next"),
    (b"X-Other: 1\r\n", ""),
])
def test_subject_is_decoded_and_flattened(raw: bytes, subject: str):
    s = summarize_headers(raw + b"From: Sato <sato@example.co.jp>\r\n\r\nbody\r\n")
    assert s.subject == subject
    assert s.header_from == "Sato <sato@example.co.jp>"


def test_headers_in_the_body_are_not_read():
    s = summarize_headers(b"From: a@example.co.jp\r\n\r\nSubject: not a header\r\n")
    assert s.subject == ""


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_summary_does_the_same_small_work_whatever_the_headers(name: str):
    # it runs on the event loop for every message: a header block of 30,000 fields or
    # of 80,000 folded lines took 0.1-0.5 s (Python steps per field and line); now a
    # plain message takes ~180 steps, 4 KiB of encoded words decoded ~7,700
    raw = HOSTILE[name]()
    summary: list[HeaderSummary] = []
    assert python_steps(lambda: summary.append(summarize_headers(raw))) < 10_000
    assert summary[0].header_from == "Alice <alice@example.co.jp>"
    if b"Subject: s\r\n" in raw:
        assert summary[0].subject == "s"


def test_a_long_subject_is_read_as_far_as_the_listing_shows_it():
    encoded = Header("あ" * 20_000, "utf-8", header_name="Subject").encode(linesep="\r\n")
    s = summarize_headers(f"From: a@example.co.jp\r\nSubject: {encoded}\r\n\r\nx\r\n"
                          .encode())
    assert s.subject == "あ" * 500  # all the listing shows
    # one character a word: 4 KiB of it decoded, cut at a word
    words = b"\r\n ".join(b"=?UTF-8?B?44GC?=" for _ in range(20_000))
    s = summarize_headers(b"From: a@example.co.jp\r\nSubject: " + words + b"\r\n\r\nx\r\n")
    assert s.subject == "あ" * len(s.subject) and len(s.subject) > 200
    late = b"".join(b"X-A%d: b\r\n" % i for i in range(20_000))
    s = summarize_headers(late + b"Subject: after 20,000 fields\r\n\r\nx\r\n")
    assert s.subject == "after 20,000 fields"
