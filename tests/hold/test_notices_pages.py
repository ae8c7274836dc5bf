"""What people see in notices and pages, through the real guard.

`guard serve` with the example policy, in the machine's time zone (TZ set for the
process; review.timezone left at its default), upstream a test sink: the notices come
from noreply@<the policy's first internal domain>; a cancel by an administrator at the
CLI names the administrator (--by), not the OS account, with the real times and not the
rule's stale "held for 5 minutes"; the HR approval page lists each finding once and its
tab title is plain text. The development outbox shows decoded bodies with links that
work, in Chromium.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import re
import smtplib
import threading
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from guard.store import db, reads
from tests.conftest import EXAMPLE_POLICY, GuardProcess, Sink, SinkMessage, free_port, wait_for
from tests.hold.conftest import LINK, make_settings
from tests.hold.test_browser import ARTIFACTS, browser, pages  # noqa: F401

ZONE = "America/New_York"  # not the machine's, not the old Asia/Tokyo default
ZONE_LABEL = re.compile(r"20\d\d-\d\d-\d\d \d\d:\d\d (EST|EDT)")


@pytest.fixture
def example_guard(guard_factory: Any, sink: Sink, tmp_path: Path) -> GuardProcess:
    g = guard_factory(sink.url, start=False, policy=str(EXAMPLE_POLICY), smtp_mode="trusted")
    g.env["TZ"] = ZONE
    return g.start()


def send(g: GuardProcess, mail_from: str, rcpts: list[str], data: bytes) -> str:
    with smtplib.SMTP("127.0.0.1", g.smtp_port, local_hostname="client.localhost",
                      timeout=60) as s:
        s.ehlo()
        s.mail(mail_from)
        for r in rcpts:
            s.rcpt(r)
        code, reply = s.data(data)
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def notices(sink: Sink, to: str, kind: str, for_id: str) -> list[SinkMessage]:
    with sink.lock:
        return [m for m in sink.messages if m.rcpt_tos == [to]
                and f"X-Guard-Notice: {kind}\r\n".encode() in m.data
                and f"X-Guard-Queue-Id: {for_id}\r\n".encode() in m.data]


def notice(sink: Sink, to: str, kind: str, for_id: str) -> tuple[Any, str]:
    (m,) = wait_for(lambda: notices(sink, to, kind, for_id), 30, what=f"{kind} to {to}")
    msg = BytesParser(policy=policy.default).parsebytes(m.data)
    assert m.mail_from == ""  # the null sender: a notice never bounces
    body = msg.get_body(("plain",))
    assert body is not None
    return msg, body.get_content()


def verdict_of(url: str, mid: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await reads.list_messages(conn)
        finally:
            await engine.dispose()
        (row,) = [r for r in rows if r["id"] == mid]
        return dict(row["verdict"])

    # (in a thread: the browser's driver owns this thread's event loop)
    out: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: out.append(asyncio.run(go())))
    t.start()
    t.join(30)
    return out[0]


def test_hr_approval_page_lists_each_finding_once(example_guard: GuardProcess, sink: Sink,
                                                  browser: Any):  # noqa: F811
    data = (EXAMPLE_POLICY / "samples" / "02-people-list-xlsx-external.eml").read_bytes()
    data = data.replace(b"From: sato@example.co.jp", b"From: tanaka@example.co.jp", 1)
    mid = send(example_guard, "tanaka@example.co.jp", ["buyer@newclient.example"], data)
    msg, body = notice(sink, "jinji-bucho@example.co.jp", "approval_request", mid)
    assert msg["From"].addresses[0].addr_spec == "noreply@example.co.jp"
    assert ZONE_LABEL.search(body)  # the deadline, in the machine's zone with its label
    v = verdict_of(example_guard.env["GUARD_DATABASE_URL"], mid)
    texts = [r["reason_ja"] for r in v["reasons"]]
    repeated = {t for t in texts if texts.count(t) > 1}
    assert repeated, "two HR rules match the same findings: the case of the report"
    link = LINK.search(body).group(1)  # type: ignore[union-attr]
    laptop, _ = pages(browser)
    laptop.goto(link)
    assert laptop.title() == "保留中のメール / Held message — guard"
    shown = laptop.inner_text("main")
    for t in set(texts):
        assert shown.count(t) == 1, (t, shown)
    received = laptop.locator("dl.meta dd").nth(1).inner_text()
    assert ZONE_LABEL.fullmatch(received), received
    laptop.screenshot(path=str(ARTIFACTS / "approve-hr-laptop.png"), full_page=True)
    for lang, title in (("ja", "保留中のメール — guard"), ("en", "Held message — guard")):
        laptop.goto(f"{link}?lang={lang}")
        assert laptop.title() == title


def test_cancel_notice_names_the_admin_and_the_real_times(example_guard: GuardProcess,
                                                          sink: Sink):
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "alice@example.co.jp"
    m["To"] = "buyer@brand-new.example"
    m["Subject"] = "ご挨拶"
    m.set_content("はじめまして。\n")
    mid = send(example_guard, "alice@example.co.jp", ["buyer@brand-new.example"], m.as_bytes())
    held_msg, held_body = notice(sink, "alice@example.co.jp", "held", mid)
    assert held_msg["From"].addresses[0].addr_spec == "noreply@example.co.jp"
    assert "5分間保留します" in held_body  # the rule's words belong to the hold notice
    # the admin cancels at the CLI, as typed, saying who they are
    r = example_guard.cli("queue", "cancel", mid, "--reason", "宛先誤りの連絡あり",
                          "--by", "kanri@example.co.jp")
    assert r.returncode == 0, r.stderr
    msg, body = notice(sink, "alice@example.co.jp", "cancelled", mid)
    assert msg["From"].addresses[0].addr_spec == "noreply@example.co.jp"
    assert "管理者 (kanri@example.co.jp) が取り消しました" in body
    assert f"({getpass.getuser()})" not in body and "administrator (" not in body
    assert "5分間保留します" not in body  # no stale "held for 5 minutes"
    assert "理由: 宛先誤りの連絡あり" in body
    received = re.search(r"受付日時: (.+)", body)
    cancelled = re.search(r"取り消し日時: (.+)", body)
    assert received and cancelled
    assert ZONE_LABEL.fullmatch(received.group(1).strip())
    assert ZONE_LABEL.fullmatch(cancelled.group(1).strip())
    # a bad --by is one line of error, nothing changes
    r = example_guard.cli("queue", "release", mid, "--by", "not an address")
    assert r.returncode == 2 and "not an email address" in r.stderr
    assert "Traceback" not in r.stderr


# --- the development outbox ------------------------------------------------------------


class DevGuard:
    """GuardApp with its development upstream (what `guard dev` runs), in a thread."""

    def __init__(self, tmp_path: Path) -> None:
        self.dev = f"127.0.0.1:{free_port()}"
        self.settings = make_settings(
            tmp_path, GUARD_SMTP_MODE="trusted", GUARD_SMTP_LISTEN=f"127.0.0.1:{free_port()}",
            GUARD_WEB_LISTEN=f"127.0.0.1:{free_port()}", GUARD_UPSTREAM=f"smtp://{self.dev}",
            GUARD_POLICY=str(EXAMPLE_POLICY), GUARD_INSPECT__WORKERS="1",
            GUARD_REVIEW__TIMEZONE="Asia/Tokyo", GUARD_DELIVERY__POLL_INTERVAL="0.2")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.app: Any = None

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> DevGuard:
        from guard.app import GuardApp

        self.thread.start()
        self.app = GuardApp(self.settings, dev_sink_listen=self.dev)
        self.call(self.app.start())
        return self

    def stop(self) -> None:
        self.call(self.app.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def base(self) -> str:
        host, port = self.app.bound["web"]
        return f"http://{host}:{port}"


@pytest.fixture
def dev_guard(tmp_path: Path) -> Iterator[DevGuard]:
    g = DevGuard(tmp_path).start()
    yield g
    g.stop()


def test_dev_outbox_shows_decoded_mail_with_working_links(dev_guard: DevGuard,
                                                         browser: Any):  # noqa: F811
    host, port = dev_guard.app.bound["trusted"]
    # a message that passes: ISO-2022-JP text and an HTML alternative, base64 encoded
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "alice@example.co.jp"
    m["To"] = "tanaka@example.co.jp"
    m["Subject"] = "社内連絡"
    m.set_content("お疲れさまです。資料は https://intra.example.co.jp/doc?id=1&v=2 です。\n",
                  charset="iso-2022-jp", cte="base64")
    m.add_alternative("<p>お疲れさまです。<script>alert(1)</script></p>", subtype="html")
    # and one held (first-time domain): its notice arrives at the outbox with a link
    h = EmailMessage(policy=policy.SMTP)
    h["From"] = "alice@example.co.jp"
    h["To"] = "buyer@brand-new.example"
    h["Subject"] = "ご挨拶"
    h.set_content("はじめまして。\n")
    with smtplib.SMTP(host, port, timeout=60) as s:
        s.send_message(m)
        s.send_message(h)
    outbox = dev_guard.app.outbox
    wait_for(lambda: len(outbox.messages) >= 2, 30, what="two messages in the outbox")
    laptop, _ = pages(browser)
    laptop.goto(dev_guard.base + "/dev/outbox")
    rows = laptop.locator("table tr").all_inner_texts()
    assert any("社内連絡" in r for r in rows) and any("ご挨拶" in r for r in rows)
    assert all(re.search(r"\d\d:\d\d JST", r) for r in rows[1:]), rows  # zone label
    # the plain message: its text decoded from base64 ISO-2022-JP, its link clickable
    laptop.locator("tr", has_text="社内連絡").locator("a").first.click()
    body = laptop.inner_text("#body")
    assert "お疲れさまです。" in body
    b64 = base64.b64encode("お疲れさまです".encode("iso2022_jp")).decode()[:12]
    assert b64 not in laptop.content()
    assert laptop.locator("#body a").get_attribute("href") == \
        "https://intra.example.co.jp/doc?id=1&v=2"
    assert laptop.locator("script").count() == 0
    # the notice: Japanese, and the review link opens the review page
    laptop.goto(dev_guard.base + "/dev/outbox")
    laptop.locator("tr", has_text="送信を一時保留").locator("a").first.click()
    assert "自動通知" in laptop.inner_text("#body")
    review = laptop.locator("#body a[href*='/review/']")
    assert review.count() == 1
    laptop.screenshot(path=str(ARTIFACTS / "dev-outbox-notice.png"), full_page=True)
    review.click()
    laptop.wait_for_selector("h1.subject")
    assert laptop.inner_text("h1.subject") == "ご挨拶"
    raw = laptop.request.get(dev_guard.base + "/dev/outbox/1/raw")
    assert raw.ok and b"Subject:" in raw.body()
