"""A real browser from the notice to the upstream: headless Chromium driven by Playwright.

The sender opens the link of the notice captured at the test upstream, chooses Send or
Remove for each recipient on the Japanese page and confirms; an approver types the
recipient domain and approves; both messages arrive at the upstream. Screenshots
(laptop and phone) go to tests/artifacts/hold/ (git-ignored).

Needs Debian's chromium (/usr/bin/chromium) and the `playwright` Python package (its
bundled driver only: browsers are never downloaded). Skipped when either is missing,
unless GUARD_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hold.conftest import ALICE, BOB, BOSS, CAROL, GuardThread, verdict
from tests.hold.test_review_web import held, notice_link

# one worker (pytest-xdist) runs this module: one browser for all its tests
pytestmark = pytest.mark.xdist_group("chromium")

CHROMIUM = os.environ.get("GUARD_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "hold"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not shutil.which(CHROMIUM):
        if os.environ.get("GUARD_REQUIRE_BROWSER") == "1":
            pytest.fail("the browser test needs playwright and /usr/bin/chromium")
        pytest.skip("playwright or chromium not installed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def pages(browser: Any) -> tuple[Any, Any]:
    laptop = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ja-JP")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="ja-JP",
                                device_scale_factor=2, is_mobile=True, has_touch=True)
    return laptop.new_page(), phone.new_page()


def test_sender_confirms_in_japanese_and_approver_approves(guard: GuardThread, browser: Any):
    # --- the sender: a confirm hold, from the notice to the upstream -------------------
    policy_says = "社外の新しい宛先が含まれています。宛先をご確認ください。"
    mid = held(guard, "c", verdict("confirm", language="ja", message_ja=policy_says))
    link = notice_link(guard, mid, ALICE, "held")
    laptop, phone = pages(browser)
    phone.goto(link)
    phone.screenshot(path=str(ARTIFACTS / "confirm-ja-phone.png"), full_page=True)
    laptop.goto(link)
    assert laptop.locator("h1.subject").inner_text() == "お見積りの件"
    assert "初めての送信先ドメイン example.net" in laptop.inner_text("body")
    assert "顧客.xlsx" in laptop.inner_text("body")
    laptop.screenshot(path=str(ARTIFACTS / "confirm-ja-laptop.png"), full_page=True)
    # pressing the button before choosing does nothing (the browser asks for a choice)
    laptop.click("#confirm")
    assert guard.call(guard.harness.state(mid)) == "held"
    laptop.locator("#rcpt-0 label.send").click()
    laptop.locator("#rcpt-1 label.remove").click()
    laptop.screenshot(path=str(ARTIFACTS / "confirm-ja-ticked.png"), full_page=True)
    laptop.click("#confirm")
    laptop.wait_for_selector("#result")
    assert "送信しました" in laptop.inner_text("#result")
    laptop.screenshot(path=str(ARTIFACTS / "confirm-ja-done.png"), full_page=True)
    m = guard.delivered("X-Test-Hold: c")
    assert m.rcpt_tos == [BOB]  # carol was removed on the page

    # --- an approver ---------------------------------------------------------------------
    amid = held(guard, "a", verdict("approve", language="ja"), subject="契約書の送付",
                rcpts=[BOB, CAROL])
    alink = notice_link(guard, amid, BOSS, "approval_request")
    phone.goto(alink)
    phone.screenshot(path=str(ARTIFACTS / "approve-ja-phone.png"), full_page=True)
    laptop.goto(alink + "?lang=both")  # Japanese first, English alongside
    assert "Approve and send" in laptop.inner_text("#approve")
    laptop.screenshot(path=str(ARTIFACTS / "approve-both-laptop.png"), full_page=True)
    laptop.goto(alink)
    assert "承認して送信" in laptop.inner_text("#approve")
    laptop.fill("input[name=domain-0]", "example.com")  # wrong: the look-alike's domain
    laptop.fill("input[name=domain-1]", "example.net")
    laptop.click("#approve")
    laptop.wait_for_selector("#errors")
    assert "一致しません" in laptop.inner_text("#errors")
    assert guard.call(guard.harness.state(amid)) == "held"
    laptop.fill("input[name=domain-0]", "example.net")
    laptop.fill("input[name=domain-1]", "example.org")
    laptop.screenshot(path=str(ARTIFACTS / "approve-ja-laptop.png"), full_page=True)
    laptop.click("#approve")
    laptop.wait_for_selector("#result")
    assert "承認しました" in laptop.inner_text("#result")
    laptop.screenshot(path=str(ARTIFACTS / "approve-ja-done.png"), full_page=True)
    m = guard.delivered("X-Test-Hold: a")
    assert sorted(m.rcpt_tos) == [BOB, CAROL]
    # the sender was told that it was approved
    guard.sink_notices(1, "approved", ALICE)
    # opening the used link again shows what happened and offers nothing to press
    laptop.goto(alink)
    assert laptop.locator("form").count() == 0
