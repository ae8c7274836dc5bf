"""Review pages over real HTTP against a running guard: reads change nothing, bots
and cross-site forms are refused, tokens are checked, each form's deliberate step,
one release under concurrent posts, held content escaped."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest

from tests.hold.conftest import (
    ALICE,
    BOB,
    BOSS,
    CAROL,
    DEPUTY,
    GuardThread,
    forms_of,
    message_bytes,
    verdict,
)


def held(g: GuardThread, name: str, v: dict[str, Any], *, hold_seconds: float | None = 3600,
         subject: str = "お見積りの件", data: bytes | None = None,
         rcpts: list[str] | None = None) -> str:
    g.verdicts[name] = (v, hold_seconds)
    data = data or message_bytes(subject=subject, extra=f"X-Test-Hold: {name}")
    return g.send(data, rcpts or [BOB, CAROL])


def notice_link(g: GuardThread, mid: str, to: str, kind: str) -> str:
    def find() -> str:
        for n in g.sink_notices(1, kind, to):
            if n.for_id == mid:
                return n.link
        return ""

    from tests.conftest import wait_for

    return wait_for(find, 15, what=f"{kind} notice for {mid} to {to}")


def snapshot(g: GuardThread) -> Any:
    assert g.harness is not None
    return g.call(g.harness.snapshot())


def state(g: GuardThread, mid: str) -> str:
    assert g.harness is not None
    return g.call(g.harness.state(mid))


def open_page(g: GuardThread, link: str, **headers: str) -> tuple[Any, list[dict[str, str]]]:
    r = g.http("GET", link, headers={"User-Agent": "Mozilla/5.0 test", **headers})
    return r, forms_of(r.body)


def confirm_form(forms: list[dict[str, str]]) -> dict[str, str]:
    (f,) = [f for f in forms if f.get("op") in ("confirm", "send_now")]
    return f


def test_get_head_options_change_nothing(guard: GuardThread):
    mid = held(guard, "c", verdict("confirm"))
    link = notice_link(guard, mid, ALICE, "held")
    before = snapshot(guard)
    r = guard.http("GET", link)  # no User-Agent, no cookie: how Safe Links fetches
    assert r.status == 200 and "お見積りの件" in r.body
    h = r.headers
    assert h["referrer-policy"] == "no-referrer"
    assert "no-store" in h["cache-control"]
    csp = h["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert h["x-frame-options"] == "DENY"
    cookie = h["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert guard.http("HEAD", link).status == 200
    assert guard.http("OPTIONS", link).status == 204
    assert guard.http("GET", link + "?lang=en").status == 200
    assert guard.http("PUT", link).status == 405
    assert snapshot(guard) == before
    assert state(guard, mid) == "held"
    # nothing but our own stylesheet is loaded; every link stays on the page's origin
    for url in re.findall(r'(?:src|href|action)="([^"]*)"', r.body):
        assert url.startswith(("/", "?")), url
    css = guard.http("GET", guard.base + "/review-assets/review.css")
    assert css.status == 200 and "url(" not in css.body and "@import" not in css.body


def test_form_submitting_bots_change_nothing(guard: GuardThread):
    mid = held(guard, "c", verdict("confirm"))
    amid = held(guard, "a", verdict("approve"), subject="approve me")
    links = [notice_link(guard, mid, ALICE, "held"), notice_link(guard, amid, BOSS,
                                                                 "approval_request"),
             notice_link(guard, amid, ALICE, "held")]
    before = snapshot(guard)
    submitted = 0
    for link in links:
        r, forms = open_page(guard, link)
        assert forms, "the page has forms"
        for f in forms:  # GET the page, keep its cookie, submit each form as it is
            p = guard.http("POST", link, form=f, cookies=r.cookies,
                           headers={"Origin": guard.base, "User-Agent": "bot"})
            assert p.status in (400, 403), (f, p.status)
            submitted += 1
        # a bot that runs the page's JavaScript finds none to run
        assert "<script" not in r.body
    assert submitted == 5  # confirm + cancel, approve + reject, withdraw
    assert snapshot(guard) == before


def test_csrf_and_origin(guard: GuardThread):
    mid = held(guard, "c", verdict("confirm"))
    link = notice_link(guard, mid, ALICE, "held")
    r, forms = open_page(guard, link)
    form = {**confirm_form(forms), "rcpt-0": "send", "rcpt-1": "send"}
    before = snapshot(guard)
    no_csrf = {k: v for k, v in form.items() if k != "csrf"}
    assert guard.http("POST", link, form=no_csrf, cookies=r.cookies).status == 403
    assert guard.http("POST", link, form={**form, "csrf": "0" * 64},
                      cookies=r.cookies).status == 403
    assert guard.http("POST", link, form=form).status == 403  # no cookie
    assert guard.http("POST", link, form=form, cookies={"guard_csrf": "f" * 32}
                      ).status == 403  # someone else's cookie
    assert guard.http("POST", link, form=form, cookies=r.cookies,
                      headers={"Origin": "https://evil.example"}).status == 403
    assert guard.http("POST", link, form=form, cookies=r.cookies,
                      headers={"Sec-Fetch-Site": "cross-site"}).status == 403
    assert snapshot(guard) == before
    # what a browser sends under Referrer-Policy: no-referrer
    ok = guard.http("POST", link, form=form, cookies=r.cookies,
                    headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert ok.status == 200 and "送信しました" in ok.body
    assert state(guard, mid) in ("queued", "delivered")
    guard.delivered("X-Test-Hold: c")


def test_every_recipient_must_be_chosen(guard: GuardThread):
    mid = held(guard, "c", verdict("confirm"))
    link = notice_link(guard, mid, ALICE, "held")
    r, forms = open_page(guard, link)
    form = {**confirm_form(forms), "rcpt-0": "send"}  # carol not chosen
    p = guard.http("POST", link, form=form, cookies=r.cookies)
    assert p.status == 400 and "すべての宛先" in p.body
    assert state(guard, mid) == "held"
    p = guard.http("POST", link, form={**form, "rcpt-1": "remove"}, cookies=r.cookies)
    assert p.status == 200
    m = guard.delivered("X-Test-Hold: c")
    assert m.rcpt_tos == [BOB]


def test_refused_tokens(guard: GuardThread):
    mid = held(guard, "a", verdict("approve", backup_approvers=[DEPUTY]))
    other = held(guard, "c", verdict("confirm"), subject="another")
    boss = notice_link(guard, mid, BOSS, "approval_request")
    sender = notice_link(guard, mid, ALICE, "held")
    notice_link(guard, other, ALICE, "held")
    signer = guard.hold.signer
    base = f"{guard.base}/review"
    GONE = "0000000000000000ZZ"
    before = snapshot(guard)

    def status(url: str, method: str = "GET") -> int:
        if method == "GET":
            return guard.http("GET", url).status
        r, forms = open_page(guard, url)
        f = forms[0] if forms else {"csrf": "x"}
        return guard.http("POST", url, form={**f, "op": "approve", "domain-0": "example.net",
                                             "domain-1": "example.org"},
                          cookies=r.cookies).status

    tok = boss.rsplit("/", 1)[1]
    cases = {
        "tampered": (f"{base}/{mid}/{tok[:-2]}{'A' if tok[-2] != 'A' else 'B'}{tok[-1]}", 403),
        "truncated": (f"{base}/{mid}/{tok[:40]}", 403),
        "expired": (f"{base}/{mid}/{signer.issue(mid, 'approve', BOSS, time.time() - 5)}",
                    410),
        "cross-message": (f"{base}/{other}/{tok}", 403),
        "not an approver": (f"{base}/{mid}/{signer.issue(mid, 'approve', CAROL, 2e9)}", 403),
        "backup before escalation": (
            f"{base}/{mid}/{signer.issue(mid, 'approve', DEPUTY, 2e9)}", 403),
        "self-approval": (f"{base}/{mid}/{signer.issue(mid, 'approve', ALICE, 2e9)}", 403),
        "sender link of someone else": (
            f"{base}/{other}/{signer.issue(other, 'review', BOB, 2e9)}", 403),
        "no such message": (f"{base}/{GONE}/{signer.issue(GONE, 'review', ALICE, 2e9)}",
                            410),
    }
    for name, (url, want) in cases.items():
        assert status(url) == want, name
        assert status(url, "POST") == want, name
    # the sender's own link cannot approve; an approver's link cannot cancel
    r, forms = open_page(guard, sender)
    (cancel,) = [f for f in forms if f.get("op") == "cancel"]
    assert guard.http("POST", sender, form={**cancel, "op": "approve", "domain-0":
                                            "example.net"}, cookies=r.cookies).status == 403
    r, forms = open_page(guard, boss)
    assert guard.http("POST", boss, form={**forms[0], "op": "cancel",
                                          "cancel_reason": "other"},
                      cookies=r.cookies).status == 403
    assert snapshot(guard) == before


def test_approver_types_the_domain_then_replays_are_refused(guard: GuardThread):
    mid = held(guard, "a", verdict("approve"), rcpts=[BOB])
    link = notice_link(guard, mid, BOSS, "approval_request")
    r, forms = open_page(guard, link)
    (approve,) = [f for f in forms if f.get("op") == "approve"]
    wrong = guard.http("POST", link, form={**approve, "domain-0": "example.com"},
                       cookies=r.cookies)
    assert wrong.status == 400 and state(guard, mid) == "held"
    form = {**approve, "domain-0": " Example.NET "}
    ok = guard.http("POST", link, form=form, cookies=r.cookies)
    assert ok.status == 200, ok.body
    m = guard.delivered("X-Test-Hold: a")
    assert m.rcpt_tos == [BOB]
    again = guard.http("POST", link, form=form, cookies=r.cookies)
    assert again.status == 409
    assert guard.http("GET", link).status == 200  # still shows what happened
    guard.sink_notices(1, "approved", ALICE)
    time.sleep(0.3)
    assert sum(1 for x in guard.sink.messages if b"X-Test-Hold: a" in x.data
               and b"X-Guard-Notice" not in x.data) == 1


def test_concurrent_posts_release_once(guard: GuardThread):
    mid = held(guard, "c", verdict("confirm"))
    link = notice_link(guard, mid, ALICE, "held")
    r, forms = open_page(guard, link)
    form = {**confirm_form(forms), "rcpt-0": "send", "rcpt-1": "send"}
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def post() -> None:
        barrier.wait()
        statuses.append(guard.http("POST", link, form=form, cookies=r.cookies).status)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [409] * 5
    guard.delivered("X-Test-Hold: c")
    time.sleep(0.5)
    assert sum(1 for x in guard.sink.messages if b"X-Test-Hold: c" in x.data) == 1
    releases = [a for a in guard.call(guard.harness.audit(mid)) if a["action"] == "release"]
    assert len(releases) == 1


def test_held_content_is_escaped_never_rendered(guard: GuardThread):
    html_body = ("<html><body><script>alert(1)</script><img src=x onerror=alert(2)>"
                 "<p>ご確認ください</p><iframe src=https://evil.example></iframe></body></html>")
    data = (b"From: =?utf-8?q?=3Cscript=3Ealert(3)=3C/script=3E?= <alice@example.co.jp>\r\n"
            b"To: bob@example.net\r\nSubject: <img src=x onerror=alert(4)>\r\n"
            b"X-Test-Hold: x\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html_body.encode())
    v = verdict("confirm", reasons=[{
        "symbol": "keyword", "where": "subject", "recipients": [BOB],
        "reason_ja": "<b>太字</b>", "reason_en": "<script>x</script>"}])
    mid = held(guard, "x", v, data=data, rcpts=[BOB])
    link = notice_link(guard, mid, ALICE, "held")
    r = guard.http("GET", link + "?lang=both")
    assert r.status == 200
    lowered = r.body.lower()
    for bad in ("<script", "<img", "<iframe", "<b>"):
        assert bad not in lowered, bad
    assert "&lt;img src=x onerror=alert(4)&gt;" in r.body  # the subject, as text
    assert "&lt;b&gt;太字&lt;/b&gt;" in r.body
    assert "ご確認ください" in r.body  # the HTML body as text only
    assert "alert(1)" not in r.body  # script content is dropped from the preview


def test_notices_are_never_inspected_or_held(guard: GuardThread):
    mid = held(guard, "a", verdict("approve"))
    notice_link(guard, mid, BOSS, "approval_request")
    notice_link(guard, mid, ALICE, "held")
    # the decider saw the held message only, never a notice
    assert guard.decided == ["お見積りの件"]
    for n in guard.sink_notices(2):
        assert n.mail_from == ""  # null sender: never bounced, never learned from
    counts = guard.call(_states(guard))
    assert counts.get("held") == 1


async def _states(g: GuardThread) -> dict[str, int]:
    from guard.store import reads

    async with g.app.engine.connect() as conn:
        return await reads.count_by_state(conn)


@pytest.mark.parametrize("cancel_first", [True, False])
def test_delay_goes_out_on_time_unless_cancelled(guard: GuardThread, cancel_first: bool):
    # before the hold is made: held() and the notice can take a while on a busy machine,
    # and the delay runs from the hold
    started = time.monotonic()
    mid = held(guard, "d", verdict("delay", delay_minutes=0.02), hold_seconds=1.5)
    link = notice_link(guard, mid, ALICE, "held")
    if cancel_first:
        r, forms = open_page(guard, link)
        (cancel,) = [f for f in forms if f.get("op") == "cancel"]
        p = guard.http("POST", link, form={**cancel, "cancel_reason": "wrong_recipient"},
                       cookies=r.cookies)
        assert p.status == 200 and "取り消しました" in p.body
        time.sleep(2.5)
        assert state(guard, mid) == "cancelled"
        assert not [m for m in guard.sink.messages if b"X-Test-Hold: d" in m.data]
    else:
        m = guard.delivered("X-Test-Hold: d")
        assert time.monotonic() - started >= 1.5  # not before the delay is over
        assert m.rcpt_tos == [BOB, CAROL]
