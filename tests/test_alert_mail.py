"""Alert mail to the officers, through a real guard: the first report of a severe hold,
a burst as one mail with its count, an override release and a reported misdelivery,
the daily digest once, and alert mail that no policy holds. (tests/test_alerts.py is
about the Prometheus alert rules.)"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
import threading
import time
import urllib.error
import urllib.request
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import default as DEFAULT_POLICY
from pathlib import Path
from typing import Any

from guard.store import db, knowledge, reads
from tests.conftest import GuardProcess, Sink, TlsFiles, submit, wait_for

POLICY = """\
    version: 1
    defaults:
      internal_domains: [example.co.jp]
      uninspectable: pass
      approver_group: security
    groups:
      security:
        label: {ja: 情報セキュリティ室, en: Security}
        members: [sec@example.co.jp]
        approvers: [sec@example.co.jp]
      sales:
        label: {ja: 営業部, en: Sales}
        members: [alice@example.co.jp]
    keywords:
      - {name: secret, pattern: 社外秘}
    alerts:
      officers: [privacy@example.co.jp]
      by_group:
        sales: [sales-head@example.co.jp]
    DIGEST
    rules:
      - name: card-outside
        scope: {direction: outbound-external}
        conditions: [{symbol: pii.card, min_score: 0.9}]
        action: approve
      - name: people-list-outside
        scope: {direction: outbound-external}
        conditions: [{symbol: pii.people_list, min_count: 10}]
        action: approve
      - name: secret-outside
        scope: {direction: outbound-external}
        conditions: [{symbol: keyword, evidence: {rule: secret}}]
        action: confirm
      # would hold every mail to a colleague, alerts too if they were inspected
      - name: hold-internal
        scope: {direction: internal}
        action: confirm
"""

CARD = "お支払いのカード番号: 4111 1111 1111 1111 です。\n"
PEOPLE = "名簿です。\n\n氏名\t住所\t携帯\n" + "".join(
    f"山田 太郎{i}\t東京都千代田区丸の内1-{i}-1\t090-1234-{5600 + i}\n" for i in range(12))
OFFICERS = {"privacy@example.co.jp", "sales-head@example.co.jp"}


def _policy(tmp_path: Path, digest: bool = False) -> Path:
    text = textwrap.dedent(POLICY).replace(
        "DIGEST", "  digest_to: [digest@example.co.jp]" if digest else "")
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _mail(to: str, body: str, subject: str = "ご連絡") -> bytes:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = "alice@example.co.jp"
    m["To"] = to
    m["Subject"] = subject
    m.set_content(body)
    return m.as_bytes()


def _alerts(sink: Sink, kind: str = "") -> list[tuple[str, str, str]]:
    """(recipient, subject, body) of the alert mails at the sink."""
    out = []
    for m in list(sink.messages):
        msg = message_from_bytes(m.data, policy=DEFAULT_POLICY)
        notice = str(msg.get("X-Guard-Notice", ""))
        if notice.startswith("alert-") and (not kind or notice == f"alert-{kind}"):
            body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            out.append((m.rcpt_tos[0], str(msg["Subject"]), body.replace("\r\n", "\n")))
    return out


def _rows(url: str) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            rows = await reads.list_messages(conn, limit=1000)
        await engine.dispose()
        return rows

    return asyncio.run(go())


def _show(url: str, mid: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            got = await reads.show_message(conn, mid)
        await engine.dispose()
        assert got is not None
        return got

    return asyncio.run(go())


def _held(url: str, rcpt: str) -> str:
    return wait_for(lambda: next((r["id"] for r in _rows(url) if r["state"] == "held"
                                  and rcpt in r["recipients"]), None), 30,
                    what=f"the mail to {rcpt} held")


TOKEN = "alert-test-metrics-token"


def _get(url: str, token: str = "") -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _alert_settings(**kw: str) -> dict[str, str]:
    base = {"GUARD_ALERTS__TICK_SECONDS": "0.3",
            "GUARD_ALERTS__GATHER_SECONDS": "0.5", "GUARD_ALERTS__MIN_INTERVAL_SECONDS": "0",
            "GUARD_REVIEW__TIMEZONE": "Asia/Tokyo", "GUARD_REVIEW__TICK_SECONDS": "0.5",
            "GUARD_POLICY__RELOAD_INTERVAL": "0.3"}
    return base | kw


def test_first_report_override_misdelivery_digest_and_never_held(
        guard_factory: Any, sink: Sink, tls: TlsFiles, tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    # with a metrics token, /reports needs it: the alert's own link must open its report
    g: GuardProcess = guard_factory(sink.url, url, policy=str(policy), **_alert_settings(
        GUARD_METRICS_TOKEN=TOKEN))
    # a less severe hold (a keyword) first: the digest's, never a first report
    submit(g.smtp_port, tls, "alice@example.co.jp", ["someone@partner.example"],
           _mail("someone@partner.example", "社外秘の資料です。\n"))
    _held(url, "someone@partner.example")

    # a severe hold: a card number to an outside recipient
    sent_at = time.monotonic()
    submit(g.smtp_port, tls, "alice@example.co.jp", ["buyer@client.example"],
           _mail("buyer@client.example", CARD))
    held = _held(url, "buyer@client.example")
    wait_for(lambda: {r for r, _, _ in _alerts(sink)} == OFFICERS, 60,
             what="the first report to both officers")
    took = time.monotonic() - sent_at
    assert took < 60, took
    reports = _alerts(sink, "first")
    assert len(reports) == 2  # one each: the officer and the sender's department's
    _, subject, body = reports[0]
    assert subject == ("[guard] 重大: カード番号を含むメールを保留 / "
                       "Severe: mail with card number held")
    ja, en = body.split("\n\n")
    for needle in ("送信者: alice@example.co.jp (営業部 / Sales)", "宛先: client.example（1 人）",
                   "内容: カード番号 1 件", "対応: 保留しました（承認待ち）",
                   "ルール: card-outside",
                   "判断: guard（自動）", f"/reports/incidents/{held}", "JST"):
        assert needle in ja, (needle, ja)
    for needle in ("From: alice@example.co.jp", "To: client.example (1 recipient)",
                   "Data: card number ×1", "Action: held for approval", "Rule: card-outside",
                   f"Details: http://127.0.0.1:{g.web_port}/reports/incidents/{held}"):
        assert needle in en, (needle, en)
    assert "buyer@" not in body  # organisation and domain only (show_addresses: false)
    # the link opens that report on a phone (no bearer token), and only that one
    link = re.search(r"Details: (http://\S+)", en)
    assert link is not None and re.search(r"\?k=v1\.\d+\.[\w-]{22}$", link.group(1))
    status, page = _get(link.group(1))
    assert status == 200 and held in page and "カード番号" in page
    assert _get(link.group(1).split("?")[0])[0] == 401  # without it: the token is needed
    other = link.group(1).replace(f"/incidents/{held}", "/incidents/0239AAAAAAAAAAAAAA")
    assert _get(other)[0] == 401  # a link is for its own message only
    # each alert mail's one audit row (its `accepted`) names the events it covers
    first = [r for r in _rows(url) if r["sender"] == "guard" and "重大" in r["subject"]]
    assert len(first) == 2
    [accepted] = _show(url, first[0]["id"])["audit"][:1]
    held_audit = [a["id"] for a in _show(url, held)["audit"] if a["action"] == "held"]
    assert (accepted["action"], accepted["actor"]) == ("accepted", "guard:alert")
    assert accepted["detail"] == {"alert": "first", "events": held_audit,
                                  "messages": [held], "count": 1}
    # a phone screen: every line but the links (which a mail app never wraps)
    assert max(len(line) for line in body.splitlines() if "http" not in line) < 60
    print("\n--- first report ---\n" + subject + "\n\n" + body)

    # a person overrides it: released by an admin at the CLI
    done = g.cli("queue", "release", held, "--by", "boss@example.co.jp")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: len(_alerts(sink, "first")) == 4, 30, what="the override's alert")
    override = [b for _, s, b in _alerts(sink, "first") if "保留解除" in s]
    assert len(override) == 2
    assert "判断: 管理者 boss@example.co.jp" in override[0]
    assert "Decided by: an administrator boss@example.co.jp" in override[0]
    assert "重大な保留が解除され、送信されます" in override[0]
    print("\n--- override ---\n" + override[0])
    wait_for(lambda: [m for m in sink.messages if m.rcpt_tos == ["buyer@client.example"]],
             30, what="the released mail delivered")

    # a sender reports a misdelivery of a delivered mail (the helpdesk, at the CLI)
    submit(g.smtp_port, tls, "alice@example.co.jp", ["wrong@other.example"],
           _mail("wrong@other.example", "見積書をお送りします。\n"))
    wait_for(lambda: [m for m in sink.messages if m.rcpt_tos == ["wrong@other.example"]],
             30, what="the plain mail delivered")
    sent = next(r["id"] for r in _rows(url) if r["recipients"] == ["wrong@other.example"])

    done = g.cli("incident", "report", "--queue-id", sent, "--wrong-recipient",
                 "wrong@other.example", "--by", "helpdesk@example.co.jp")
    assert done.returncode == 0, done.stderr
    incident = re.search(r"\bI[0-9A-Z]{10,}", done.stdout)
    assert incident is not None, done.stdout
    wait_for(lambda: len(_alerts(sink, "first")) == 6, 30, what="the misdelivery's alert")
    mis = [(s, b) for _, s, b in _alerts(sink, "first") if "誤送信" in s]
    assert mis[0][0] == "[guard] 重大: 誤送信の報告 / Severe: misdelivery reported"
    # reported at the helpdesk: not "the sender reported" (the page is the sender's)
    assert f"誤送信が報告されました（インシデント {incident.group(0)}）" in mis[0][1]
    assert f"a misdelivery was reported (incident {incident.group(0)})" in mis[0][1]
    assert "宛先: other.example（1 人）" in mis[0][1]
    assert "報告: 管理者 helpdesk@example.co.jp" in mis[0][1]
    assert "Reported by: an administrator helpdesk@example.co.jp" in mis[0][1]
    print("\n--- misdelivery ---\n" + mis[0][0] + "\n\n" + mis[0][1])

    # the alert mail reached the officers although a rule holds every mail to colleagues
    rows = _rows(url)
    alerts = [r for r in rows if r["sender"] == "guard" and r["subject"].startswith("[guard] 重大")]
    assert len(alerts) == 6 and {r["state"] for r in alerts} == {"delivered"}
    assert not [r for r in rows if r["state"] == "held" and set(r["recipients"]) & OFFICERS]

    _, metrics = _get(f"http://127.0.0.1:{g.web_port}/metrics", TOKEN)
    assert 'guard_alerts_sent_total{kind="first"} 6.0' in metrics  # one per recipient
    assert not _alerts(sink, "digest")  # nobody to send it to


def test_the_digest_comes_once_a_day_and_not_again_after_a_restart(
        guard_factory: Any, sink: Sink, tls: TlsFiles, tmp_path: Path) -> None:
    policy = _policy(tmp_path, digest=True)
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    # west of the date line: a new guard sends no digest for the day it starts on
    g: GuardProcess = guard_factory(sink.url, url, policy=str(policy), **_alert_settings(
        GUARD_ALERTS__DIGEST_HOUR="0", GUARD_REVIEW__TIMEZONE="Etc/GMT+12",
        # (the digest reads up to gap_wait_seconds ago: a late commit is not missed)
        GUARD_ALERTS__GAP_WAIT_SECONDS="1"))
    for i in range(2):  # two less severe holds (a keyword), one then cancelled: a near miss
        submit(g.smtp_port, tls, "alice@example.co.jp", [f"p{i}@partner.example"],
               _mail(f"p{i}@partner.example", "社外秘の資料です。\n"))
    cancelled = _held(url, "p1@partner.example")
    _held(url, "p0@partner.example")
    done = g.cli("queue", "cancel", cancelled, "--reason", "wrong_recipient",
                 "--by", "boss@example.co.jp")
    assert done.returncode == 0, done.stderr
    submit(g.smtp_port, tls, "alice@example.co.jp", ["buyer@client.example"],
           _mail("buyer@client.example", CARD))
    wait_for(lambda: len(_alerts(sink, "first")) == 2, 30, what="the severe hold's report")
    assert not _alerts(sink, "digest")
    # east of it: the next day, whose digest hour has come
    g.stop()
    g.env["GUARD_REVIEW__TIMEZONE"] = "Etc/GMT-14"
    g.start()
    wait_for(lambda: _alerts(sink, "digest"), 30, what="the digest")
    [(to, subject, body)] = _alerts(sink, "digest")
    assert to == "digest@example.co.jp" and subject.startswith("[guard] 日次ダイジェスト ")
    for needle in ("保留 2 件、拒否 0 件、ヒヤリハット 1 件", "重大な事象（通知済み）: 1 件",
                   "ルール別: secret-outside 3", "検出別: keyword 3", "部署別: 営業部 / Sales 3",
                   "Held 2, refused 0, near misses 1", "/reports/near-misses"):
        assert needle in body, (needle, body)
    print("\n--- digest ---\n" + subject + "\n\n" + body)
    g.stop()
    g.start()
    time.sleep(2)  # several passes of the restarted guard
    assert len(_alerts(sink, "digest")) == 1
    assert len(_alerts(sink)) == 3


def _send_many(port: int, tls: TlsFiles, numbers: range, errors: list[BaseException],
               threads: int = 6) -> None:
    """Mail a 12-row people list to an outside recipient for each number, in threads."""
    todo = list(numbers)

    def worker(k: int) -> None:
        try:
            for i in todo[k::threads]:
                submit(port, tls, "alice@example.co.jp", [f"buyer{i}@client{i % 3}.example"],
                       _mail(f"buyer{i}@client{i % 3}.example", PEOPLE, f"名簿 {i}"))
        except BaseException as e:  # reported by the test
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)


def test_a_burst_of_50_is_one_mail_with_the_count_once_over_two_instances(
        guard_factory: Any, sink: Sink, tls: TlsFiles, tmp_path: Path, db_url: str) -> None:
    policy = _policy(tmp_path)
    settings = _alert_settings(GUARD_ALERTS__GATHER_SECONDS="12",
                               GUARD_ALERTS__MIN_INTERVAL_SECONDS="600")
    a = guard_factory(sink.url, db_url, policy=str(policy), **settings)
    b = guard_factory(sink.url, db_url, policy=str(policy), **settings)
    started = time.monotonic()
    errors: list[BaseException] = []
    both = [threading.Thread(target=_send_many, args=(g.smtp_port, tls, numbers, errors))
            for g, numbers in ((a, range(25)), (b, range(25, 50)))]
    for t in both:
        t.start()
    for t in both:
        t.join(120)
    assert not errors, errors
    assert time.monotonic() - started < 12, "the burst took longer than the gather window"
    wait_for(lambda: len(_alerts(sink)) >= 2, 60, what="the burst mail")
    time.sleep(1.5)  # more passes of both instances: nothing more may come
    got = _alerts(sink)
    assert sorted(r for r, _, _ in got) == sorted(OFFICERS), got
    _, subject, body = got[0]
    assert subject == "[guard] 重大: 50 件の重大な事象 / Severe: 50 events"
    for needle in ("重大な事象 50 件", "対応別: 保留 50", "ルール別: people-list-outside 50",
                   "送信者別: alice@example.co.jp (営業部 / Sales) 50", "データ別（通数）: 名簿 50",
                   "ほか 45 件", "Severe events: 50", "By rule: people-list-outside 50",
                   "宛先別（組織）: client0.example 17、client1.example 17、client2.example 16"):
        assert needle in body, (needle, body)
    assert len(re.findall(r"/reports/incidents/\w+", body)) == 10  # 5 listed, twice
    assert "buyer" not in body
    print("\n--- burst ---\n" + subject + "\n\n" + body)


def _alert_state(url: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            got = await knowledge.get_meta(conn, "alerts")
        await engine.dispose()
        return json.loads(got or "{}")

    return asyncio.run(go())


def test_a_gathered_event_survives_a_kill_and_is_mailed_once(
        guard_factory: Any, sink: Sink, tls: TlsFiles, tmp_path: Path, db_url: str) -> None:
    policy = _policy(tmp_path)
    g = guard_factory(sink.url, db_url, policy=str(policy),
                      **_alert_settings(GUARD_ALERTS__GATHER_SECONDS="3"))
    submit(g.smtp_port, tls, "alice@example.co.jp", ["buyer@client.example"],
           _mail("buyer@client.example", PEOPLE))
    wait_for(lambda: _alert_state(db_url).get("pending"), 30, what="the event gathered")
    g.kill()  # before its gather window ends: the event is only in the database
    assert not _alerts(sink)
    g.start()
    wait_for(lambda: len(_alerts(sink)) >= 2, 30, what="the first report after the restart")
    time.sleep(1)  # more passes: nothing more may come
    got = _alerts(sink, "first")
    assert sorted(r for r, _, _ in got) == sorted(OFFICERS)
    assert "内容: 名簿 12 行" in got[0][2] and "12 people's records" in got[0][1]
    assert not _alert_state(db_url)["pending"]
