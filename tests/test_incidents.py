"""Misdelivery reported after the fact, and the incident report, through a running guard
(GuardApp on its own loop, SQLite): mail sent over SMTP and delivered to the test
upstream, reported on the /misdelivery page by its sender (HTTP Basic, the users file),
the incident checked in the database, the sender's other mail to that recipient listed,
the report read on /reports/incidents/ID and with `guard report incident`."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from guard.cli.main import main as guard_main
from guard.hold.acts import Actor
from guard.store.incidents import incidents
from guard.store.schema import audit
from guard.users import add_user
from tests.conftest import Sink, free_port, wait_for
from tests.hold.conftest import (
    ALICE,
    BOB,
    BOSS,
    CAROL,
    GuardThread,
    http_request,
    make_settings,
    message_bytes,
)

PASSWORD = "misdelivery pass 1234"
FAILURES = 4  # sign-in failures before a client is blocked (smtp.auth_failures_per_address)


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def guarded(tmp_path: Path, sink: Sink) -> Iterator[GuardThread]:
    settings = make_settings(
        tmp_path, GUARD_SMTP_MODE="trusted", GUARD_SMTP_LISTEN=f"127.0.0.1:{free_port()}",
        GUARD_WEB_LISTEN=f"127.0.0.1:{free_port()}", GUARD_UPSTREAM=sink.url,
        GUARD_REVIEW__TIMEZONE="Asia/Tokyo", GUARD_DELIVERY__POLL_INTERVAL="0.2",
        GUARD_SMTP__AUTH_FAILURES_PER_ADDRESS=str(FAILURES))
    users = Path(settings.smtp.users_file)
    add_user(users, "alice", PASSWORD, [ALICE], "ja")
    add_user(users, "boss", PASSWORD, [BOSS], "ja")
    g = GuardThread(settings, sink).start()
    yield g
    g.stop()


def send(g: GuardThread, subject: str, rcpts: list[str], **kw: Any) -> tuple[str, str]:
    """(queue id, Message-ID header) of a message delivered to the test upstream."""
    data = message_bytes(subject=subject, to=", ".join(rcpts), cc="", **kw)
    header = re.search(rb"Message-ID: (<[^>]+>)", data, re.I)
    assert header is not None
    qid = g.send(data, rcpts)
    assert g.harness is not None
    wait_for(lambda: g.call(g.harness.state(qid)) == "delivered", what=f"{subject} delivered")
    return qid, header.group(1).decode()


def rows(g: GuardThread, stmt: Any) -> list[Any]:
    async def go() -> list[Any]:
        async with g.app.engine.connect() as conn:
            return list((await conn.execute(stmt)).all())
    return list(g.call(go()))


def form_fields(page: str) -> dict[str, str]:
    return {m.group(1): html.unescape(m.group(2)) for m in re.finditer(
        r"<input type='hidden' name='([a-z_]+)' value='([^']*)'>", page)}


def post_report(url: str, form: dict[str, str], headers: dict[str, str]) -> Any:
    """POST the report; it answers 303 to the page of the incident, which is read."""
    done = http_request("POST", url, form=form, headers=headers)
    assert done.status == 303, done.body
    assert done.headers["location"].startswith("misdelivery?incident=I")
    shown = http_request("GET", url.rsplit("/", 1)[0] + "/" + done.headers["location"],
                         headers=headers)
    assert shown.status == 200, shown.body
    return shown


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        g: GuardThread, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("GUARD_DATABASE_URL", g.settings.database.url)
    monkeypatch.setenv("GUARD_REVIEW__TIMEZONE", "Asia/Tokyo")
    monkeypatch.delenv("GUARD_CONFIG", raising=False)
    monkeypatch.delenv("GUARD_POLICY", raising=False)
    capsys.readouterr()
    rc = guard_main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_a_sender_reports_a_misdelivery_on_the_web(guarded: GuardThread,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch):
    g = guarded
    wrong_qid, wrong_mid = send(g, "見積書の送付", [BOB, CAROL])
    earlier, _ = send(g, "先週の見積り", [BOB])
    elsewhere, elsewhere_mid = send(g, "別件", [CAROL])
    page = f"{g.base}/misdelivery"

    # --- sign-in: none, and someone else's message --------------------------------------
    anon = http_request("GET", f"{page}?id={wrong_mid}")
    assert anon.status == 401 and anon.headers["www-authenticate"].startswith("Basic ")
    not_hers = http_request("GET", f"{page}?id={wrong_mid}", headers=basic("boss"))
    assert not_hers.status == 404 and BOB not in not_hers.body
    unknown = http_request("GET", f"{page}?id=<nobody@example.co.jp>", headers=basic("alice"))
    assert unknown.status == 404, unknown.body
    assert "あなたが送信したメッセージの記録はありません" in unknown.body
    assert "No message you sent is recorded" in unknown.body
    assert "Traceback" not in unknown.body

    # --- the sender's page: the recipients to tick ---------------------------------------
    shown = http_request("GET", f"{page}?id={wrong_mid}", headers=basic("alice"))
    assert shown.status == 200, shown.body
    assert "誤送信の報告" in shown.body and "I sent this to the wrong person" in shown.body
    assert f"value='{BOB}'" in shown.body and f"value='{CAROL}'" in shown.body
    fields = form_fields(shown.body)
    assert fields["queue_id"] == wrong_qid
    # by queue id too
    assert http_request("GET", f"{page}?id={wrong_qid}", headers=basic("alice")).status == 200

    # another user posting the sender's form: refused, nothing opened
    stolen = http_request("POST", page, form={**fields, "wrong": BOB}, headers=basic("boss"))
    assert stolen.status in (400, 404)
    forged = http_request("POST", page, form={"queue_id": wrong_qid, "check": "0" * 64,
                                              "wrong": BOB}, headers=basic("alice"))
    assert forged.status == 400
    # a recipient the message never had
    bad = http_request("POST", page, form={**fields, "wrong": "eve@example.net"},
                       headers=basic("alice"))
    assert bad.status == 400 and "is not a recipient" in bad.body
    assert rows(g, select(incidents)) == []

    # --- reported ----------------------------------------------------------------------
    done = post_report(page, {**fields, "wrong": BOB.upper(), "note": "宛先を取り違えました"},
                       basic("alice"))
    incident_id = re.search(r"<strong id='incident'>(I[0-9A-Z]+)</strong>", done.body)
    assert incident_id is not None
    iid = incident_id.group(1)
    # the sender's other mail to the same wrong recipient, and only that
    assert "<span id='others-count'>1</span>" in done.body
    assert earlier in done.body and elsewhere not in done.body

    # a second post (Back and submit again, a double click) reports nothing new
    again = post_report(page, {**fields, "wrong": BOB}, basic("alice"))
    assert f"<strong id='incident'>{iid}</strong>" in again.body
    # the page of the incident is its sender's only
    assert http_request("GET", f"{page}?incident={iid}", headers=basic("boss")).status == 404

    (row,) = rows(g, select(incidents))
    assert (row.id, row.message_id, row.kind, row.state) == (iid, wrong_qid, "misdelivery",
                                                              "first_report")
    assert json.loads(row.wrong_recipients) == [BOB]
    assert row.opened_by == f"web:{ALICE}" and row.reporter_note == "宛先を取り違えました"
    assert (row.cause, row.harm, row.measures, row.notes) == ("", "", "", "")
    (a,) = rows(g, select(audit).where(audit.c.action == "misdelivery_reported"))
    assert a.message_id == wrong_qid and a.actor == f"web:{ALICE}"
    assert (a.from_state, a.to_state) == ("delivered", "delivered")
    assert abs(a.at - row.opened_at) < 1e-6  # one transaction, one database time
    assert json.loads(a.detail) == {"incident": iid, "wrong_recipients": [BOB],
                                    "reporter": f"web:{ALICE}"}

    # --- the report page, by incident id and by queue id ---------------------------------
    for ident in (iid, wrong_qid):
        rep = http_request("GET", f"{g.base}/reports/incidents/{ident}")
        assert rep.status == 200, rep.body
        assert f"インシデント報告 {iid}" in rep.body and "誤送信 / misdelivery" in rep.body
        assert earlier in rep.body.split("id='others'")[1]
        assert "@media print" in rep.body and "<script" not in rep.body
    assert http_request("GET", f"{g.base}/reports/incidents/NOPE").status == 404

    # --- the CLI: the same function for a helpdesk, and the report in three formats -----
    rc, out, err = cli(capsys, monkeypatch, g, "incident", "report", "--message-id",
                       elsewhere_mid, "--wrong-recipient", CAROL, "--note", "電話で連絡あり",
                       "--by", "helpdesk")
    assert rc == 0, err
    assert "other messages to them: 1" in out and wrong_qid in out  # it went to carol too
    cli_iid = re.search(r"incident (I[0-9A-Z]+) opened", out)
    assert cli_iid is not None
    (b,) = rows(g, select(audit).where(audit.c.action == "misdelivery_reported",
                                       audit.c.message_id == elsewhere))
    assert json.loads(b.detail)["reporter"] == "cli:helpdesk"
    rc, out, err = cli(capsys, monkeypatch, g, "incident", "report", "--message-id",
                       "<nobody@example.co.jp>", "--wrong-recipient", CAROL)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "no message with Message-ID" in err
    # --queue-id reads the message by its key: a message carrying that queue id as its
    # Message-ID header is not the one meant
    decoy = g.send(message_bytes(subject="decoy", to=CAROL, cc="").replace(
        b"Message-ID: <", f"Message-ID: <{earlier}>\r\nX-Old-ID: <".encode(), 1), [CAROL])
    assert g.harness is not None
    wait_for(lambda: g.call(g.harness.state(decoy)) == "delivered", what="decoy delivered")
    rc, out, err = cli(capsys, monkeypatch, g, "incident", "report", "--queue-id", earlier,
                       "--wrong-recipient", BOB, "--by", "helpdesk")
    assert rc == 0, err
    assert f"opened on message {earlier}" in out

    rc, out, err = cli(capsys, monkeypatch, g, "report", "incident", iid, "--format", "json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["incident"]["id"] == iid and doc["queue_id"] == wrong_qid
    assert [r["address"] for r in doc["where"] if r["wrong"]] == [BOB]
    assert [o["id"] for o in doc["others"]] == [earlier]
    rc, out, err = cli(capsys, monkeypatch, g, "report", "incident", iid, "--format", "csv")
    table = list(csv.reader(io.StringIO(out)))
    assert table[0] == ["section", "key", "value"]
    assert ["incident", "wrong_recipients", BOB] in table
    assert ["other_message", earlier, f"{BOB};delivered"] in table
    rc, out, err = cli(capsys, monkeypatch, g, "report", "incident", iid, "--format", "md")
    assert out.startswith(f"# インシデント報告 {iid} / Incident report {iid}")
    for heading in ("## 第一報 / First report", "## 5W1H",
                    "## 公表判断の5つの観点 / Five viewpoints for publication",
                    "## 個人情報保護法の報告基準 / APPI reporting criteria (2022)"):
        assert heading in out
    rc, out, err = cli(capsys, monkeypatch, g, "report", "incident", "IXXXX")
    assert rc == 2 and "no incident or message IXXXX" in err

    # an officer puts a message on record (a severe event): the same report, kind severe
    rc, out, err = cli(capsys, monkeypatch, g, "incident", "open", earlier, "--note", "確認")
    assert rc == 0, err
    sev = re.search(r"incident (I[0-9A-Z]+) opened", out)
    assert sev is not None
    (c,) = rows(g, select(audit).where(audit.c.action == "incident_opened"))
    assert c.message_id == earlier and json.loads(c.detail)["incident"] == sev.group(1)
    rc, out, err = cli(capsys, monkeypatch, g, "report", "incident", sev.group(1),
                       "--format", "json")
    assert rc == 0 and json.loads(out)["kind"] == "severe"
    rc, out, err = cli(capsys, monkeypatch, g, "incident", "open", "NOSUCH")
    assert rc == 2 and err.strip() == "guard: no message NOSUCH is recorded"

    # the officer's findings, later
    rc, out, err = cli(capsys, monkeypatch, g, "incident", "update", iid, "--cause",
                       "宛先の自動補完で別の Bob を選んだ", "--final")
    assert rc == 0, err
    (row,) = rows(g, select(incidents).where(incidents.c.id == iid))
    assert row.state == "final" and row.cause.startswith("宛先の自動補完")

    # --- incidents are kept when retention purges their message: the report still shows
    async def purge() -> None:
        from sqlalchemy import delete

        from guard.store.schema import messages, recipients

        async with g.app.engine.begin() as conn:
            for t in (audit, recipients):
                await conn.execute(delete(t).where(t.c.message_id == wrong_qid))
            await conn.execute(delete(messages).where(messages.c.id == wrong_qid))

    g.call(purge())
    for ident in (iid, wrong_qid):
        rep = http_request("GET", f"{g.base}/reports/incidents/{ident}")
        assert rep.status == 200, rep.body
        assert "メッセージの記録は保持期間を過ぎて削除されました" in rep.body
        assert "message purged" in rep.body and BOB in rep.body
    rc, out, err = cli(capsys, monkeypatch, g, "report", "incident", iid, "--format", "md")
    assert rc == 0, err
    assert "メッセージの記録は保持期間を過ぎて削除されました" in out and "message purged" in out

    # --- the password is never taken over plain HTTP from another host -------------------
    # (uvicorn trusts X-Forwarded-For/-Proto from FORWARDED_ALLOW_IPS, 127.0.0.1 by
    # default: this request is, to the page, one from 192.0.2.7 over plain http)
    remote = {"X-Forwarded-For": "192.0.2.7"}
    clear = http_request("GET", page, headers={**remote, **basic("alice")})
    assert clear.status == 403 and "www-authenticate" not in clear.headers
    assert "https" in clear.body and "default-src 'none'" in clear.headers[
        "content-security-policy"]
    tls = {**remote, "X-Forwarded-Proto": "https"}
    assert http_request("GET", page, headers={**tls, **basic("alice")}).status == 200

    # --- failed sign-ins are limited like SMTP AUTH, in a limiter of the page's own -----
    for _ in range(FAILURES):
        failed = http_request("GET", page, headers={**tls, **basic("alice", "wrong")})
        assert failed.status == 401 and "nosniff" in failed.headers["x-content-type-options"]
    # even the right password
    blocked = http_request("GET", page, headers={**tls, **basic("alice")})
    assert blocked.status == 429 and "retry-after" in blocked.headers
    assert blocked.headers["cache-control"] == "no-store"
    assert http_request("GET", page, headers=basic("alice")).status == 200  # another client
    assert g.app.auth_limiter.blocked_for("192.0.2.7") == 0  # SMTP AUTH is not locked


def card_message(tmp_path: Path) -> bytes:
    body = ("お客様のカード情報です。\r\n"
            "カード番号: 4111 1111 1111 1111\r\n"
            "カード番号: 5555 5555 5555 4444\r\n"
            "カード番号: 3782 822463 10005\r\n")
    return message_bytes(subject="カード情報の件", to=BOB, cc="", body=body,
                         extra="X-Test-Hold: card")


CARD_POLICY = """version: 1
defaults:
  internal_domains: [example.co.jp]
groups:
  sales:
    label: {ja: 営業部, en: Sales}
    members: [alice@example.co.jp]
    approvers: [boss@example.co.jp]
rules:
  - name: card-needs-approval
    conditions: [{symbol: pii.card, min_score: 0.9}]
    action: approve
    approver_group: sales
"""

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "incident"


def test_the_report_of_a_held_then_approved_card_message(
        guarded: GuardThread, tmp_path: Path, policy_test_json: Any):
    """The verdict is the one the real inspection and policy give this message
    (`guard policy test`); the guard holds it for approval, the approver approves, the
    upstream gets it; the report says exactly that."""
    g = guarded
    assert g.hold is not None and g.harness is not None
    (tmp_path / "card.yaml").write_text(CARD_POLICY, encoding="utf-8")
    data = card_message(tmp_path)
    doc = policy_test_json(data, tmp_path / "card.yaml")
    verdict = doc["verdict"] if "verdict" in doc else doc
    assert verdict["action"] == "approve" and verdict["rule"] == "card-needs-approval"
    cards = [r for r in verdict["reasons"] if r["symbol"] == "pii.card"]
    assert [(r["where"], r["count"]) for r in cards] == [("body", 3)]
    g.verdicts["card"] = (verdict, 3600)

    qid = g.send(data, [BOB])
    wait_for(lambda: g.call(g.harness.state(qid)) == "held", what="held")
    g.sink_notices(1, "approval_request", BOSS)
    res = g.call(g.hold.lifecycle.approve(qid, Actor("approver", BOSS, "web", "192.0.2.20")))
    assert res.code == "approved", res
    g.delivered("X-Test-Hold: card")
    # the sender's "approved, being sent" notice carries the way to report a misdelivery
    (told,) = g.sink_notices(1, "approved", ALICE)
    report_link = f"{g.base}/misdelivery?id={qid}"
    assert report_link in told.body and "誤送信の報告" in told.body
    assert all(report_link not in n.body for n in g.sink_notices(1, "approval_request"))
    wait_for(lambda: g.call(g.harness.state(qid)) == "delivered", what="delivered")

    async def report() -> Any:
        from guard.incident.desk import load_report
        from guard.policy import load_policy

        async with g.app.engine.connect() as conn:
            return await load_report(conn, qid, ZoneInfo("Asia/Tokyo"),
                                     policy=load_policy(tmp_path / "card.yaml"))

    r = g.call(report())
    assert r.kind == "recorded" and r.incident is None and r.state == "delivered"
    # who, what, why
    assert r.who["sender"] == ALICE and r.who["department"] == "営業部 / Sales (sales)"
    assert [(i.symbol, i.where, i.count, i.financial) for i in r.what] == [
        ("pii.card", "body", 3, True)]
    assert r.why["rule"] == "card-needs-approval" and r.why["action"] == "approve"
    # every decision with its actor, in order
    steps = [(d.action, d.actor, d.from_state, d.to_state) for d in r.decisions]
    assert steps[0] == ("held", f"smtp:{ALICE}", "", "held")
    assert ("approve", f"web:approver:{BOSS}", "held", "queued") in steps
    assert steps[-1][0] == "delivered" and steps[-1][1].startswith("relay:")
    assert [a for a, *_ in steps] == ["held", "notified", "approve", "delivered"]
    assert r.why["decided_by"] == f"web:approver:{BOSS}"
    # when: submission, hold, release, delivery, in that order, all recorded
    assert all(r.when[k] for k in ("submitted", "held", "released", "delivered"))
    assert r.when["submitted"] <= r.when["released"] <= r.when["delivered"]
    assert r.when["submitted"].endswith("JST")
    # where: the recipient, its organisation, outside the company
    (rcpt,) = r.where
    assert (rcpt.address, rcpt.organisation, rcpt.kind, rcpt.state) == (
        BOB, "example.net", "社外 / external", "delivered")
    # the APPI prompt: card numbers → the financial-harm criterion, nothing else
    status = {c.key: c.status for c in r.appi}
    assert status == {"sensitive": "not_indicated", "financial": "may_apply",
                      "malicious": "unknown", "over_1000": "not_indicated"}
    assert "financial harm (card numbers" in r.appi_prompt
    assert "個人情報保護委員会" in r.appi_prompt and "not a legal judgement" in r.appi_prompt
    # what the guard cannot know is left visibly blank
    views = {k: v for k, _ja, _en, v in r.viewpoints}
    assert "当社" in views["manager"] and "3 人分" in views["how_much"]
    assert views["harm"] == "（担当者記入 / for the officer）"
    assert r.officer["cause"] == views["harm"]

    # the page: printable, Japanese with English; printed to PDF and photographed by
    # headless Chromium
    page = http_request("GET", f"{g.base}/reports/incidents/{qid}")
    assert page.status == 200
    assert "クレジットカード番号" in page.body and "credit card numbers" in page.body
    assert "class='may_apply'" in page.body and "@page{size:A4" in page.body
    # --- then the sender finds it went to the wrong Bob: the incident on the same mail ---
    shown = http_request("GET", report_link, headers=basic("alice"))
    post_report(f"{g.base}/misdelivery", {**form_fields(shown.body), "wrong": BOB,
                                          "note": "別の取引先の Bob さんに送ってしまいました"},
                basic("alice"))
    r = g.call(report())
    assert r.kind == "misdelivery" and r.incident is not None
    assert r.first["to_whom"] == f"{BOB} (example.net, 社外 / external)"
    assert r.first["how_many"].startswith("宛先 1 件、個人データ 3 件（推定）")
    assert "誤送信の報告 / misdelivery reported" in [f"{d.ja} / {d.en}" for d in r.decisions]
    assert "may meet the reporting criteria" in r.appi_prompt
    from guard.incident import render

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "incident-report.md").write_text(render.markdown(r), encoding="utf-8")
    pdf, png = print_page(f"{g.base}/reports/incidents/{qid}", tmp_path)
    if pdf is not None:
        assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 10_000
        assert png is not None and png.read_bytes().startswith(b"\x89PNG")
        (ARTIFACTS / "incident-page.png").write_bytes(png.read_bytes())
        (ARTIFACTS / "incident-page.pdf").write_bytes(pdf.read_bytes())


def print_page(url: str, out: Path) -> tuple[Path | None, Path | None]:
    """The page printed to PDF and a screenshot by headless Chromium (its command line,
    as a person would); (None, None) when there is no Chromium and it is not required."""
    import os
    import shutil
    import subprocess

    chromium = os.environ.get("GUARD_CHROMIUM", "/usr/bin/chromium")
    if not shutil.which(chromium):
        if os.environ.get("GUARD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the print test needs {chromium}")
        return None, None
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={out / 'chromium'}", "--lang=ja-JP"]
    pdf, png = out / "incident.pdf", out / "incident.png"
    subprocess.run([*args, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", url],
                   capture_output=True, timeout=90, check=False)
    subprocess.run([*args, "--window-size=1000,3700", "--hide-scrollbars",
                    f"--screenshot={png}", url], capture_output=True, timeout=90,
                   check=False)
    assert pdf.exists(), "chromium printed no PDF"
    assert png.exists(), "chromium took no screenshot"
    return pdf, png


def test_through_guard_serve_an_authenticated_sender_reports_their_mail(
        guard_factory: Any, sink: Sink, tls: Any):
    """`guard serve` in submission mode: the messages.sender column is the SMTP user
    ("alice"), and the page signs her in with the same user and password."""
    from tests.conftest import USER_PASSWORD, simple_message, submit

    g = guard_factory(sink.url)
    data = simple_message(subject="請求書", to="bob@example.net")
    mid = re.search(rb"Message-ID: (<[^>]+>)", data)
    assert mid is not None
    submit(g.smtp_port, tls, ALICE, [BOB], data)
    base = f"http://127.0.0.1:{g.web_port}/misdelivery"

    def auth(user: str) -> dict[str, str]:
        return basic(user, USER_PASSWORD)

    def page() -> Any:
        r = http_request("GET", f"{base}?id={mid.group(1).decode()}", headers=auth("alice"))
        return r if "<td>delivered</td>" in r.body else None

    shown = wait_for(page, what="the message delivered and shown to its sender")
    assert http_request("GET", f"{base}?id={mid.group(1).decode()}",
                        headers=auth("bob")).status == 404
    done = post_report(base, {**form_fields(shown.body), "wrong": BOB}, auth("alice"))
    iid = re.search(r"<strong id='incident'>(I[0-9A-Z]+)</strong>", done.body)
    assert iid is not None
    r = g.cli("report", "incident", iid.group(1), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["who"]["sender"] == "alice" and doc["incident"]["opened_by"] == f"web:{ALICE}"
    assert doc["state"] == "delivered" and [x["wrong"] for x in doc["where"]] == [True]
