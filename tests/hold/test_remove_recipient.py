"""Removing a recipient takes them out of To/Cc too.

SMTP in, held, a recipient removed on the review page (the sender at confirmation, an
approver at approval in Chromium, the lifecycle's drop-recipient), released: the bytes
the upstream receives name the removed person nowhere in To/Cc, and every other byte is
what the client sent (apart from our Received: line in front). The sender's notice
lists the final recipients.
"""

from __future__ import annotations

import base64
from typing import Any

from tests.hold.conftest import ALICE, BOB, BOSS, CAROL, DAVE, GuardThread, verdict
from tests.hold.test_browser import browser, pages  # noqa: F401  (the Chromium fixture)
from tests.hold.test_review_web import confirm_form, notice_link, open_page


def jis_word(text: str) -> bytes:
    """An RFC 2047 word in ISO-2022-JP, as Japanese mail clients write display names."""
    return b"=?ISO-2022-JP?B?" + base64.b64encode(text.encode("iso2022_jp")) + b"?="


BOB_NAME, CAROL_NAME, DAVE_NAME = jis_word("ボブ様"), jis_word("キャロル様"), jis_word("大輔")


def sent_bytes(tag: str) -> bytes:
    """A Japanese mail: folded To with encoded names, the removed person in To and Cc
    (written in another case), an ISO-2022-JP body that itself mentions her address."""
    body = "キャロル様宛ての行: To: carol@example.org\r\nよろしくお願いします。\r\n"
    return (b"From: " + jis_word("アリス") + b" <alice@example.co.jp>\r\n"
            b"To: " + BOB_NAME + b" <bob@example.net>,\r\n"
            b" " + CAROL_NAME + b"\r\n <Carol@Example.ORG>,\r\n"
            b"\t" + DAVE_NAME + b" <dave@example.co.jp>\r\n"
            b"Cc: " + CAROL_NAME + b" <carol@example.org>\r\n"
            b"Subject: " + jis_word("お見積りの件") + b"\r\n"
            b"Date: Sun, 06 Dec 2026 15:04:05 +0900\r\n"
            b"Message-ID: <remove-" + tag.encode() + b"@example.co.jp>\r\n"
            b"X-Test-Hold: " + tag.encode() + b"\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=ISO-2022-JP\r\n"
            b"Content-Transfer-Encoding: 7bit\r\n"
            b"\r\n" + body.encode("iso2022_jp"))


def expected_after_removing_carol(sent: bytes) -> bytes:
    """Exactly one field edited (To, refolded one mailbox per line), Cc gone."""
    old_to = (b"To: " + BOB_NAME + b" <bob@example.net>,\r\n"
              b" " + CAROL_NAME + b"\r\n <Carol@Example.ORG>,\r\n"
              b"\t" + DAVE_NAME + b" <dave@example.co.jp>\r\n")
    new_to = (b"To: " + BOB_NAME + b" <bob@example.net>,\r\n"
              b" " + DAVE_NAME + b" <dave@example.co.jp>\r\n")
    old_cc = b"Cc: " + CAROL_NAME + b" <carol@example.org>\r\n"
    assert sent.count(old_to) == 1 and sent.count(old_cc) == 1
    return sent.replace(old_to, new_to).replace(old_cc, b"")


def without_received(data: bytes) -> bytes:
    """The upstream's bytes less the guard's own Received: field (ours, in front)."""
    assert data.startswith(b"Received: "), data[:80]
    end = data.index(b"\r\n")
    while data[end + 2:end + 3] in (b" ", b"\t"):
        end = data.index(b"\r\n", end + 2)
    return data[end + 2:]


def to_cc_text(data: bytes) -> str:
    head = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    return "\n".join(line.decode() for line in head.split(b"\r\n")
                     if line.lower().startswith((b"to:", b"cc:")))


def held_raw(g: GuardThread, tag: str, v: dict[str, Any], data: bytes) -> str:
    g.verdicts[tag] = (v, 3600)
    return g.send(data, [BOB, CAROL, DAVE])


def test_sender_removes_a_recipient_at_confirmation(guard: GuardThread):
    sent = sent_bytes("r1")
    mid = held_raw(guard, "r1", verdict("confirm"), sent)
    link = notice_link(guard, mid, ALICE, "held")
    r, forms = open_page(guard, link)
    form = {**confirm_form(forms), "rcpt-0": "send", "rcpt-1": "remove"}  # dave: internal
    p = guard.http("POST", link, form=form, cookies=r.cookies)
    assert p.status == 200 and "送信しました" in p.body
    m = guard.delivered("X-Test-Hold: r1")
    assert sorted(m.rcpt_tos) == [BOB, DAVE]
    assert without_received(m.data) == expected_after_removing_carol(sent)
    assert "carol" not in to_cc_text(m.data).lower()
    # the body is not a header: it keeps its line about her, byte for byte
    assert "To: carol@example.org".encode("iso2022_jp") in m.data
    # the sender keeps a record of whom it finally went to
    (n,) = guard.sink_notices(1, "released", ALICE)
    final = n.body.split("外した宛先")[0]
    assert BOB in final and DAVE in final and "（2 件）" in final
    assert CAROL not in final and f"外した宛先: {CAROL}" in n.body


def test_removal_and_the_bcc_fix_together(guard: GuardThread):
    sent = sent_bytes("r2")
    # carol's domain counts as the company's (a group company): the Bcc fix alone
    # would keep her visible; her removal must still take her out
    v = verdict("confirm", internal_domains=["example.co.jp", "example.org"])
    mid = held_raw(guard, "r2", v, sent)
    link = notice_link(guard, mid, ALICE, "held")
    r, forms = open_page(guard, link)
    form = {**confirm_form(forms), "rcpt-0": "send", "rcpt-1": "remove", "bcc": "on"}
    assert guard.http("POST", link, form=form, cookies=r.cookies).status == 200
    m = guard.delivered("X-Test-Hold: r2")
    assert sorted(m.rcpt_tos) == [BOB, DAVE]
    # bob goes to Bcc (outside), carol was removed, dave stays as written
    expected = expected_after_removing_carol(sent).replace(
        b"To: " + BOB_NAME + b" <bob@example.net>,\r\n " + DAVE_NAME,
        b"To: " + DAVE_NAME)
    assert without_received(m.data) == expected


def test_approver_removes_a_recipient_in_the_browser(guard: GuardThread, browser: Any):  # noqa: F811
    sent = sent_bytes("r3")
    mid = held_raw(guard, "r3", verdict("approve", language="ja"), sent)
    link = notice_link(guard, mid, BOSS, "approval_request")
    laptop, _ = pages(browser)
    laptop.goto(link)
    laptop.locator("#rcpt-1 input[value=remove]").check()
    laptop.fill("input[name=domain-0]", "example.net")
    laptop.fill("input[name=domain-1]", "example.org")
    laptop.click("#approve")
    laptop.wait_for_selector("#result")
    assert "承認しました" in laptop.inner_text("#result")
    m = guard.delivered("X-Test-Hold: r3")
    assert sorted(m.rcpt_tos) == [BOB, DAVE]
    assert without_received(m.data) == expected_after_removing_carol(sent)
    (n,) = guard.sink_notices(1, "approved", ALICE)
    assert f"外した宛先: {CAROL}" in n.body and "（2 件）" in n.body
    assert BOB in n.body and DAVE in n.body


def test_removing_every_recipient_on_the_approval_page_is_refused(
        guard: GuardThread, browser: Any):  # noqa: F811
    data = sent_bytes("r4")
    guard.verdicts["r4"] = (verdict("approve", language="ja"), 3600)
    mid = guard.send(data, [BOB, CAROL])
    link = notice_link(guard, mid, BOSS, "approval_request")
    laptop, _ = pages(browser)
    laptop.goto(link)
    laptop.locator("#rcpt-0 input[value=remove]").check()
    laptop.locator("#rcpt-1 input[value=remove]").check()
    laptop.fill("input[name=domain-0]", "example.net")
    laptop.fill("input[name=domain-1]", "example.org")
    laptop.click("#approve")
    laptop.wait_for_selector("#errors")
    assert "差し戻して" in laptop.inner_text("#errors")
    harness = guard.harness
    assert harness is not None
    assert guard.call(harness.state(mid)) == "held"
    assert guard.call(harness.rcpt_states(mid)) == {BOB: "pending", CAROL: "pending"}
