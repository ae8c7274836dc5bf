"""The notice that tells a sender whom a drop rule took out, and why: in the reader's
language (both when the policy says so), saying whether the rest goes now or waits."""

from __future__ import annotations

import base64
from email import message_from_bytes

import pytest

from guard.store.queue import NewMessage
from tests.hold.conftest import Harness

EVE = "eve@example.co.jp"  # not in the users file: the policy's language (both)
GONE = "ito.hanako@example.com"
OTHERS = ["tanaka@partner.example", "sato@partner.example"]


def record(state: str) -> NewMessage:
    return NewMessage(
        id="MSG0001", state=state, mail_from=EVE, sender="eve",
        rcpt_tos=[OTHERS[0], GONE, OTHERS[1]], data=b"Subject: x\r\n\r\nbody\r\n",
        subject="展示会のご案内", header_from=EVE,
        verdict={"action": "drop" if state == "queued" else "confirm", "language": "both",
                 "dropped": [{"address": GONE, "rule": "withdrawn-members",
                              "symbol": "suppressed", "reason_ja": "退会者リストに載っています",
                              "reason_en": "on the withdrawn list"}]})


def text_of(notice: NewMessage) -> str:
    payload = message_from_bytes(notice.data).get_payload()
    assert isinstance(payload, str)
    return base64.b64decode(payload).decode()


@pytest.mark.parametrize("state", ["queued", "held"])
async def test_the_sender_is_told_whom_and_why_in_both_languages(hs: Harness, state: str):
    notice = hs.service.notices.dropped(record(state), [GONE], 1_800_000_000.0)
    assert notice is not None
    assert notice.rcpt_tos == [EVE] and notice.state == "queued"
    assert b"X-Guard-Notice: dropped" in notice.data
    text = text_of(notice)
    assert f"・{GONE}  — 退会者リストに載っています" in text
    assert f"  - {GONE}  -- on the withdrawn list" in text
    assert "宛先（2 件）" in text and "Recipients (2)" in text  # the others, not the dropped
    if state == "queued":
        assert "ほかの宛先には送信します" in text and "being sent to the other" in text
    else:
        assert "保留中" in text and "it is held" in text
    assert notice.audit_detail == {"notice": "dropped", "for": "MSG0001"}


async def test_no_sender_no_notice(hs: Harness):
    r = record("queued")
    r.mail_from = ""
    assert hs.service.notices.dropped(r, [GONE], 1_800_000_000.0) is None
