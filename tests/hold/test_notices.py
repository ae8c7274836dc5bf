"""Notices: header injection, Japanese encoding, languages, loop markers."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from guard.mail.notice import NoticeError, build_notice, one_line
from tests.hold.conftest import (
    ALICE,
    BOSS,
    BOSS2,
    DEPUTY,
    Harness,
    close_harness,
    make_settings,
    open_harness,
    verdict,
)

EXPECTED = ["auto-submitted", "content-transfer-encoding", "content-type", "date", "from",
            "message-id", "mime-version", "subject", "to", "x-auto-response-suppress",
            "x-guard-notice", "x-guard-queue-id"]

HOSTILE = [
    "hello\r\nBcc: evil@example.com",
    "hello\nBcc: evil@example.com",
    "hello\rBcc: evil@example.com",
    "=?utf-8?q?=0D=0ABcc=3A_evil=40example=2Ecom?=",
    "x\u2028Bcc: evil@example.com\u2029y\x85z",
    "\x00\x1b[31m" + "長い件名" * 100,
]


def header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return sorted(k.lower() for k in BytesParser(policy=policy.compat32).parsebytes(
        head + b"\r\n\r\n").keys())


@pytest.mark.parametrize("hostile", HOSTILE)
def test_copied_text_cannot_add_headers(hostile: str):
    data = build_notice(kind="held", held_id="ID", from_name=hostile,
                        from_addr="guard@example.co.jp", to_name=hostile,
                        to_addr="alice@example.co.jp", subject="[guard] 要確認: " + hostile,
                        body="本文", hostname="guard.localhost",
                        date=datetime.now(UTC), in_reply_to=hostile)
    assert header_names(data) == EXPECTED
    assert b"\nBcc" not in data and b"\rBcc" not in data
    m = BytesParser(policy=policy.default).parsebytes(data)
    assert "\n" not in str(m["Subject"]) and "\r" not in str(m["Subject"])
    assert m["To"].addresses[0].addr_spec == "alice@example.co.jp"


def test_bad_addresses_are_refused():
    for bad in ("alice@example.co.jp\r\nBcc: x@y", "a b@c", "<a@b>", "nobody", "a@b, c@d"):
        with pytest.raises(NoticeError):
            build_notice(kind="held", held_id="ID", from_name="", from_addr="g@x.jp",
                         to_name="", to_addr=bad, subject="s", body="b", hostname="h",
                         date=datetime.now(UTC))


def test_one_line():
    assert one_line("a\r\nb\tc\u2028d") == "a b c d"
    assert len(one_line("x" * 500, 50)) == 50


async def test_held_subject_from_an_encoded_word_cannot_inject(hs: Harness):
    # the stored subject is decoded, and flattened by the pipeline (an encoded CR LF
    # becomes a space); the notice must stay safe either way
    data = (b"To: =?utf-8?q?Bob=0D=0ABcc=3A_x=40y=2Ez?= <bob@example.net>\r\n"
            b"Subject: =?utf-8?q?=E8=A6=8B=E7=A9=8D=0D=0ABcc=3A_evil=40x=2Ecom?=\r\n"
            b"Message-ID: <=?utf-8?q?=0D=0AX-Evil=3A_2?=@x>\r\n\r\nbody\r\n")
    # a display name that is a literal (double-encoded) encoded word
    mid = await hs.put(verdict("confirm"), data=data,
                       header_from='"=?utf-8?q?A=0D=0AX-Evil=3A_1?=" <alice@example.co.jp>')
    stored = (await hs.row(mid))["subject"]
    assert "Bcc: evil@x.com" in stored and "\r" not in stored and "\n" not in stored
    (n,) = await hs.notices(mid)
    assert header_names(n.raw) == EXPECTED  # (the odd Message-ID is not referenced)
    assert "見積" in n.subject and "Bcc" in n.subject  # shown, flattened, harmless
    m = BytesParser(policy=policy.default).parsebytes(n.raw)
    shown = m["To"].addresses[0].display_name
    assert "X-Evil" in shown and "\n" not in shown and "\r" not in shown


async def test_japanese_is_readable(hs: Harness):
    mid = await hs.put(verdict("confirm", language="ja"))
    (n,) = await hs.notices(mid)
    m = BytesParser(policy=policy.default).parsebytes(n.raw)
    assert m.get_content_type() == "text/plain" and m.get_content_charset() == "utf-8"
    assert m["Content-Transfer-Encoding"] == "base64"
    assert n.raw.isascii()  # 7-bit on the wire: any upstream takes it
    assert "保留" in n.body and "初めての送信先ドメイン example.net" in n.body
    assert "顧客.xlsx" in n.body  # the attachment at risk
    assert "bob@example.net" in n.body and "carol@example.org" in n.body
    assert "=?utf-8?" in n.raw.split(b"\r\n\r\n")[0].decode()  # RFC 2047 subject
    assert n.subject.startswith("[guard] 要確認")


async def test_loop_markers(hs: Harness):
    mid = await hs.put(verdict("approve"))
    for n in await hs.notices(mid):
        m = BytesParser(policy=policy.default).parsebytes(n.raw)
        assert m["Auto-Submitted"] == "auto-generated"
        assert m["X-Guard-Notice"] in ("held", "approval_request")
        assert m["X-Guard-Queue-Id"] == mid
        assert (await hs.row(n.id))["state"] == "queued"  # straight to delivery, not held


async def test_language_per_person(tmp_path: Path):
    h = await open_harness(make_settings(tmp_path, GUARD_REVIEW__DEFAULT_LANGUAGE="both"))
    try:
        # alice and boss prefer Japanese, boss2 and deputy English (users file); an
        # unknown approver gets the policy's language, else both
        mid = await h.put(verdict("approve", approvers=[BOSS, BOSS2, "x@example.co.jp"],
                                  language=""))
        by = {n.to: n for n in await h.notices(mid)}
        assert "保留" in by[ALICE].body and "automatic notice" not in by[ALICE].body
        assert "automatic notice" in by[BOSS2].body and "承認" not in by[BOSS2].body
        assert "承認" in by[BOSS].body and "automatic notice" not in by[BOSS].body
        both = by["x@example.co.jp"].body
        assert both.index("自動通知") < both.index("automatic notice")  # Japanese first
        assert "/" in by["x@example.co.jp"].subject
        mid2 = await h.put(verdict("approve", approvers=["y@example.co.jp"],
                                   backup_approvers=[DEPUTY], language="en"))
        (req,) = [n for n in await h.notices(mid2) if n.to == "y@example.co.jp"]
        assert "automatic notice" in req.body and "自動通知" not in req.body
    finally:
        await close_harness(h)


async def test_decided_notices_say_who_and_count(hs: Harness):
    from guard.hold.acts import Actor

    mid = await hs.put(verdict("approve", approvers=[BOSS, BOSS2], approvals_required=2,
                               language="both"))
    await hs.lc.approve(mid, Actor("approver", BOSS, "web"))
    (n,) = [n for n in await hs.notices(mid) if n.kind == "approval_partial" and n.to == BOSS2]
    assert BOSS in n.body and "1/2" in n.body


async def test_notice_from_is_a_setting_defaulting_to_the_policys_first_domain(tmp_path: Path):
    from guard.hold.service import HoldService

    def sender_of(n: Any) -> str:
        return BytesParser(policy=policy.default).parsebytes(n.raw)["From"].addresses[0].addr_spec

    # no policy domains known: the hostname; with them: the first, in the policy's order
    h = await open_harness(make_settings(tmp_path))
    try:
        (n,) = await h.notices(await h.put(verdict("confirm")))
        assert sender_of(n) == "noreply@guard.localhost"
        h.service = HoldService(h.engine, h.writer, h.settings, h.secret,
                                internal_domains=lambda: ["example.co.jp", "example.com"])
        (n,) = await h.notices(await h.put(verdict("confirm")))
        assert sender_of(n) == "noreply@example.co.jp"
    finally:
        await close_harness(h)
    # the setting wins
    (tmp_path / "x").mkdir()
    h = await open_harness(make_settings(tmp_path / "x", GUARD_REVIEW__NOTICE_FROM_HEADER=
                                         "anzen@example.co.jp"))
    try:
        (n,) = await h.notices(await h.put(verdict("confirm")))
        assert sender_of(n) == "anzen@example.co.jp"
    finally:
        await close_harness(h)


def test_an_unknown_time_zone_is_refused_when_the_settings_load():
    from guard.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="unknown time zone 'Asia/Tokio'"):
        load_settings(None, {"GUARD_REVIEW__TIMEZONE": "Asia/Tokio"})
    assert load_settings(None, {}).review.timezone == ""  # the machine's zone
