"""What the queue row shows of a message: decoded like inspection, always one line."""

from __future__ import annotations

import pytest

from guard.pipeline import summarize_headers


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
