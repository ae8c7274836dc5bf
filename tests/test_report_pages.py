"""/reports through a running guard's web listener: mail held over SMTP, decided
through the hold lifecycle, then the pages read with and without the metrics token
(the listener serves people and has no admin login)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guard.hold.acts import Actor
from guard.viewlink import ViewLinks
from tests.conftest import Sink, free_port, wait_for
from tests.hold.conftest import (
    ALICE,
    BOB,
    BOSS,
    GuardThread,
    http_request,
    make_settings,
    message_bytes,
)
from tests.test_reports import v

TOKEN = "report-token-0123456789"


@pytest.fixture
def guarded(tmp_path: Path, sink: Sink) -> Iterator[GuardThread]:
    settings = make_settings(
        tmp_path, GUARD_SMTP_MODE="trusted", GUARD_SMTP_LISTEN=f"127.0.0.1:{free_port()}",
        GUARD_WEB_LISTEN=f"127.0.0.1:{free_port()}", GUARD_UPSTREAM=sink.url,
        GUARD_METRICS_TOKEN=TOKEN, GUARD_REVIEW__TIMEZONE="UTC",
        GUARD_DELIVERY__POLL_INTERVAL="0.2")
    g = GuardThread(settings, sink).start()
    yield g
    g.stop()


def held(g: GuardThread, tag: str, subject: str) -> str:
    mid = g.send(message_bytes(subject=subject, extra=f"X-Test-Hold: {tag}"), [BOB])
    assert g.harness is not None
    wait_for(lambda: g.call(g.harness.state(mid)) == "held", what="held")
    return mid


def test_report_pages_show_the_held_mail_and_need_the_token(guarded: GuardThread):
    g = guarded
    assert g.hold is not None
    g.verdicts["c"] = (v("confirm", "r-confirm", "new_domain"), 3600)
    g.verdicts["a"] = (v("approve", "r-approve", "pii.my_number", approvers=[BOSS]), 3600)
    cancelled = held(g, "c", "cancel me")
    approved = held(g, "a", "approve me")
    lc = g.hold.lifecycle
    res = g.call(lc.cancel(cancelled, Actor("sender", ALICE, "web"), reason="wrong"))
    assert res.code == "cancelled"
    res = g.call(lc.approve(approved, Actor("approver", BOSS, "web")))
    assert res.code == "approved"

    now = datetime.now(UTC)
    month, year = now.strftime("%Y-%m"), now.strftime("%Y")
    url = f"{g.base}/reports/near-misses?month={month}"
    assert http_request("GET", url).status == 401
    wrong = http_request("GET", url, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = http_request("GET", url, headers=auth)
    assert page.status == 200, page.body
    assert "id='total'>1</strong>" in page.body
    assert "ヒヤリハット報告" in page.body and "Near-miss report" in page.body
    assert page.body.count("<svg") == 6  # reason, rule, department, week, who, senders
    assert "<script" not in page.body and "http" not in page.body.split("<body>")[1]
    assert "@media print" in page.body
    assert "送信者A / Sender A" in page.body and ALICE not in page.body
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # the incident report of a message is guarded the same way
    incident = f"{g.base}/reports/incidents/{approved}"
    assert http_request("GET", incident).status == 401
    shown = http_request("GET", incident, headers=auth)
    assert shown.status == 200 and "承認 / approved" in shown.body
    # … or with the view link an officer's alert mail carries: for this id, unexpired
    assert g.app is not None
    links = ViewLinks(g.app.secret)
    good = links.sign(approved, time.time() + 600)
    by_link = http_request("GET", f"{incident}?k={good}")
    assert by_link.status == 200 and "承認 / approved" in by_link.body
    # … at the level of the alert itself (a link can be forwarded): the first report,
    # recipients by organisation, no subject, no people, no officer's fields
    assert approved in by_link.body and "example.net" in by_link.body
    for hidden in (BOB, ALICE, BOSS, "approve me", "id='officer'", "id='w5h1'",
                   "id='others'", "id='where'"):
        assert hidden not in by_link.body, hidden
    assert "id='link-only'" in by_link.body
    # the token opens the full report, with or without the link
    full = http_request("GET", f"{incident}?k={good}", headers=auth)
    assert full.status == 200 and "approve me" in full.body and BOB in full.body
    assert "id='link-only'" not in full.body
    for bad in (links.sign(cancelled, time.time() + 600),  # another message's link
                links.sign(approved, time.time() - 1),  # expired
                good[:-2] + ("AA" if not good.endswith("AA") else "BB"),  # tampered
                ViewLinks(b"another guard's secret").sign(approved, time.time() + 600)):
        assert http_request("GET", f"{incident}?k={bad}").status == 401
    # a link opens that report only, never the other pages
    assert http_request("GET", f"{url}&k={good}").status == 401
    named = http_request("GET", url + "&names=1", headers=auth)
    assert ALICE in named.body

    rules = http_request("GET", f"{g.base}/reports/rules?year={year}&min_holds=1",
                         headers=auth)
    assert rules.status == 200, rules.body
    # no policy file in this guard (a decider in code): every rule is a removed one
    cells = re.findall(r"<tr id='rule-r-approve'><td>r-approve</td>(.*?)</tr>", rules.body)
    assert cells, rules.body
    numbers = re.findall(r"<td class='n'>([^<]*)</td>", cells[0])
    # fired held tagged refused approved confirmed released cancelled rejected expired
    # escalated, median minutes
    assert numbers[:11] == ["1", "1", "0", "0", "1", "0", "0", "0", "0", "0", "0"]
    assert re.fullmatch(r"\d+\.\d", numbers[11])
    assert "<li>r-approve: 1/1</li>" in rules.body  # a rubber stamp at min_holds=1
    assert http_request("GET", f"{g.base}/reports/rules?year=26", headers=auth).status == 400


def test_without_a_token_the_pages_are_served_only_on_loopback(tmp_path: Path):
    from guard.app import GuardApp

    def routes(listen: str) -> list[str]:
        s = make_settings(tmp_path, GUARD_WEB_LISTEN=listen, GUARD_METRICS_TOKEN="")
        return [r.path for r in GuardApp(s)._report_routes()]

    assert routes("127.0.0.1:8025") == ["/reports/near-misses", "/reports/rules",
                                        "/reports/incidents/{id}"]
    # reachable from other hosts with no token: only an alert mail's link opens a report
    assert routes("0.0.0.0:8025") == ["/reports/incidents/{id}"]
