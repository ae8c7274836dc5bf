"""Inspection and the example policy, end to end over SMTP."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import smtplib
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest

from guard.store import db, reads
from tests.conftest import EXAMPLE_POLICY, Sink, TlsFiles, submit, wait_for
from tests.inspect.fixtures import xlsx

PEOPLE = [["氏名", "フリガナ", "住所", "電話番号", "メールアドレス"]] + [
    [f"山田 太郎{i}", f"ヤマダ タロウ{i}", f"東京都千代田区丸の内1-{i}-1",
     f"03-1234-{5600 + i}", f"taro{i}@example.org"] for i in range(12)]


def people_mail(to: str, subject: str = "顧客リスト") -> bytes:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = "alice@example.co.jp"
    m["To"] = to
    m["Subject"] = subject
    m.set_content("リストを送ります。\n")
    m.add_attachment(xlsx(PEOPLE), maintype="application",
                     subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                     filename="顧客一覧.xlsx")
    return m.as_bytes()


def plain_mail(to: str, body: str, subject: str = "ご連絡") -> bytes:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = "alice@example.co.jp"
    m["To"] = to
    m["Subject"] = subject
    m.set_content(body)
    return m.as_bytes()


def _rows(url: str) -> list[dict]:
    async def go():
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            rows = await reads.list_messages(conn)
        await engine.dispose()
        return rows

    return asyncio.run(go())


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICY, d, ignore=shutil.ignore_patterns("samples"))
    return d


@pytest.fixture
def guarded(guard_factory, sink: Sink, policy_dir: Path, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    g = guard_factory(sink.url, url, policy=str(policy_dir), policy__reload_interval="0.3")
    return g, url


def test_customer_list_to_new_outside_domain_is_held_and_internal_passes(
        guarded, sink: Sink, tls: TlsFiles):
    g, url = guarded
    submit(g.smtp_port, tls, "alice@example.co.jp", ["buyer@newclient.example"],
           people_mail("buyer@newclient.example"))
    submit(g.smtp_port, tls, "alice@example.co.jp", ["tanaka@example.co.jp"],
           people_mail("tanaka@example.co.jp", "社内向け"))
    # upstream: the internal copy, and the hold notices to alice and the approver
    def arrived(rcpt: str) -> list:
        return [m for m in sink.messages if m.rcpt_tos == [rcpt]]

    (internal,) = wait_for(lambda: arrived("tanaka@example.co.jp"), what="internal mail")
    (notice,) = wait_for(lambda: arrived("alice@example.co.jp"), what="sender notice")
    (ask,) = wait_for(lambda: arrived("security@example.co.jp"), what="approver notice")
    assert b"X-Guard-Notice: held" in notice.data
    assert b"X-Guard-Notice: approval_request" in ask.data
    # the internal copy is marked, not held (rule internal-personal-data-mark)
    assert b"X-Guard-Notice: personal-data" in internal.data
    rows = wait_for(lambda: [r for r in _rows(url) if r["state"] == "held"], what="held")
    held = rows[0]
    assert held["recipients"] == ["buyer@newclient.example"]
    assert held["verdict"]["action"] == "approve"
    rules = {r["rule"] for r in held["verdict"]["reasons"]}
    assert {"personal-data-external", "first-time-domain"} <= rules
    people = [r for r in held["verdict"]["reasons"] if r["symbol"] == "pii.people_list"]
    assert people[0]["count"] == 12 and people[0]["where"].endswith("顧客一覧.xlsx")
    assert held["verdict"]["approvers"] == ["security@example.co.jp"]
    time.sleep(0.5)
    assert not [m for m in sink.messages if "buyer@newclient.example" in m.rcpt_tos]


def test_withdrawn_member_is_held_for_approval(guarded, sink: Sink, tls: TlsFiles):
    g, url = guarded
    submit(g.smtp_port, tls, "alice@example.co.jp", ["ito.hanako@example.com"],
           plain_mail("ito.hanako@example.com", "キャンペーンのお知らせです。"))
    rows = wait_for(lambda: [r for r in _rows(url) if r["state"] == "held"], what="held")
    reasons = rows[0]["verdict"]["reasons"]
    suppressed = [r for r in reasons if r["symbol"] == "suppressed"]
    assert suppressed and suppressed[0]["evidence"]["list"] == "withdrawn"
    assert rows[0]["verdict"]["action"] == "approve"
    assert not [m for m in sink.messages if "ito.hanako@example.com" in m.rcpt_tos]


def test_my_number_to_outside_is_refused_at_data_and_audited(guarded, sink: Sink,
                                                             tls: TlsFiles):
    g, url = guarded
    with pytest.raises(smtplib.SMTPDataError) as e:
        submit(g.smtp_port, tls, "alice@example.co.jp", ["partner@partner-logistics.example"],
               plain_mail("partner@partner-logistics.example",
                          "社員のマイナンバー: 1234 5678 9018 です。"))
    assert e.value.smtp_code == 550
    assert e.value.smtp_error.startswith(b"5.7.1")
    (row,) = _rows(url)
    assert row["state"] == "rejected"
    assert row["verdict"]["rule"] == "my-number-external"
    out = g.cli("queue", "show", row["id"])
    assert "rejected" in out.stdout and "my-number-external" in out.stdout
    assert "findings:" in out.stdout and "pii.my_number ×1" in out.stdout


def test_known_partner_domain_passes_after_import(guarded, sink: Sink, tls: TlsFiles,
                                                  tmp_path: Path):
    g, _ = guarded
    csv = tmp_path / "known.csv"
    csv.write_text("domain\nlongtime-client.example\n")
    r = g.cli("domains", "import", str(csv))
    assert r.returncode == 0, r.stderr
    submit(g.smtp_port, tls, "alice@example.co.jp", ["someone@longtime-client.example"],
           plain_mail("someone@longtime-client.example", "いつもお世話になっております。"))
    (m,) = sink.wait_count(1)
    assert m.rcpt_tos == ["someone@longtime-client.example"]


def test_many_visible_outside_addresses_go_to_bcc_and_colleagues_stay(
        guarded, sink: Sink, tls: TlsFiles):
    """Rule many-visible-recipients (action bcc): the outside addresses leave To/Cc, the
    colleagues' mailboxes stay as they were written, every recipient still gets it."""
    g, url = guarded
    outside = [f"staff{i}@partner-logistics.example" for i in range(6)]
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = "alice@example.co.jp"
    m["To"] = ", ".join([*outside[:4], "田中 一郎 <tanaka@example.co.jp>"])
    m["Cc"] = ", ".join([*outside[4:], "suzuki@sales.example.co.jp"])
    m["Subject"] = "年末のご挨拶"
    m.set_content("本年もお世話になりました。\n")
    rcpts = [*outside, "tanaka@example.co.jp", "suzuki@sales.example.co.jp"]
    assert submit(g.smtp_port, tls, "alice@example.co.jp", rcpts, m.as_bytes()) == {}
    (got,) = sink.wait_count(1)
    assert sorted(got.rcpt_tos) == sorted(rcpts)
    head = got.data.split(b"\r\n\r\n", 1)[0].decode()
    assert "partner-logistics" not in head
    to = [ln for ln in head.split("\r\n") if ln.startswith(("To:", "Cc:"))]
    # the colleague's mailbox keeps the bytes it was sent with (an encoded display name)
    sent = re.search(rb"=\?utf-8\?\S+\?= <tanaka@example\.co\.jp>", m.as_bytes())
    assert sent is not None
    assert to == [f"To: {sent.group().decode()}", "Cc: suzuki@sales.example.co.jp"], head
    (row,) = [r for r in _rows(url) if r["state"] == "delivered"]
    assert row["verdict"]["action"] == "bcc"


def test_bad_policy_edit_keeps_the_last_good_policy(guarded, sink: Sink, tls: TlsFiles,
                                                    policy_dir: Path):
    g, _ = guarded
    policy = policy_dir / "policy.yaml"
    good = policy.read_text()
    policy.write_text(good.replace("action: reject", "action: hold", 1))  # invalid value
    wait_for(lambda: 'guard_policy_reloads_total{result="error"} 1.0' in g.http("/metrics")[1],
             what="reload error counted")
    assert "policy not reloaded" in g.logs()
    # the old policy still rejects My Number mail to outside
    with pytest.raises(smtplib.SMTPDataError):
        submit(g.smtp_port, tls, "alice@example.co.jp", ["x@partner-logistics.example"],
               plain_mail("x@partner-logistics.example", "マイナンバー 1234 5678 9018"))
    # a valid edit is picked up: internal mail is now tagged by a new rule
    policy.write_text(good.replace("  - name: internal-mail-passes\n",
                                   "  - name: internal-mail-passes\n    tag:\n"
                                   "      subject_prefix: \"[社内]\"\n", 1)
                      .replace("    scope: {direction: internal}\n    action: pass",
                               "    scope: {direction: internal}\n    action: tag", 1))
    wait_for(lambda: 'guard_policy_reloads_total{result="ok"} 2.0' in g.http("/metrics")[1],
             what="reload ok counted")
    submit(g.smtp_port, tls, "alice@example.co.jp", ["tanaka@example.co.jp"],
           plain_mail("tanaka@example.co.jp", "社内連絡", subject="会議"))
    (m,) = sink.wait_count(1)
    assert b"Subject: [\xe7\xa4\xbe\xe5\x86\x85]" in m.data or b"Subject: =?utf-8?" in m.data


def test_cli_policy_check_test_and_lists(guarded, tmp_path: Path, policy_dir: Path):
    g, _ = guarded
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: r1\n    action: hold\n")
    r = g.cli("policy", "check", str(bad))
    assert r.returncode == 1
    assert f"{bad}:4:13:" in r.stderr and "hold" in r.stderr
    assert g.cli("policy", "check", str(policy_dir)).returncode == 0

    eml = tmp_path / "t.eml"
    eml.write_bytes(plain_mail("ito.hanako@example.com", "こんにちは"))
    r = g.cli("policy", "test", str(eml), "--json", "--policy", str(policy_dir))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["action"] == "approve"
    assert any(x["symbol"] == "suppressed" for x in doc["reasons"])
    assert set(doc) >= {"action", "reasons"}

    lst = tmp_path / "optout.csv"
    lst.write_text("メールアドレス\nok@example.net\nnot-an-address\nalso@bad@x\n", "cp932")
    r = g.cli("lists", "import", "newsletter", str(lst))
    assert r.returncode == 1
    assert f"{lst}:3:" in r.stderr and f"{lst}:4:" in r.stderr
    lst.write_text("メールアドレス\nok@example.net\nOK2@Example.NET\n", "cp932")
    r = g.cli("lists", "import", "newsletter", str(lst))
    assert r.returncode == 0, r.stderr
    assert "2 addresses" in r.stdout
    assert "newsletter" in g.cli("lists", "show").stdout


def test_a_rule_on_one_list_by_its_evidence(guarded, sink: Sink, tls: TlsFiles,
                                           policy_dir: Path):
    """An admin makes withdrawn members a refusal, while opted-out recipients keep the
    shipped rule (dropped): a condition on the finding's evidence (the list name),
    hot-reloaded."""
    g, url = guarded
    policy = policy_dir / "policy.yaml"
    policy.write_text(policy.read_text().replace("  - name: suppressed-recipient\n", (
        "  - name: withdrawn-refused\n"
        "    scope: {direction: outbound-external}\n"
        "    conditions:\n"
        "      - {symbol: suppressed, evidence: {list: withdrawn}}\n"
        "    action: reject\n"
        "    message: {ja: 退会済みの会員には送れません。, en: Withdrawn members get no mail.}\n"
        "  - name: suppressed-recipient\n"), 1))
    wait_for(lambda: 'guard_policy_reloads_total{result="ok"} 2.0' in g.http("/metrics")[1],
             what="reload ok counted")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        submit(g.smtp_port, tls, "alice@example.co.jp", ["ito.hanako@example.com"],
               plain_mail("ito.hanako@example.com", "キャンペーンのお知らせです。"))
    assert refused.value.smtp_code == 550
    assert "Withdrawn members get no mail." in refused.value.smtp_error.decode()
    # opt_out is the shipped opted-out-recipient rule's (drop): the only recipient is
    # taken out, so the mail is refused with that rule's text, not the withdrawn one's
    with pytest.raises(smtplib.SMTPDataError) as dropped:
        submit(g.smtp_port, tls, "alice@example.co.jp", ["kobayashi@example.net"],
               plain_mail("kobayashi@example.net", "キャンペーンのお知らせです。"))
    assert dropped.value.smtp_code == 550
    assert "asked us to stop (opt-out)" in dropped.value.smtp_error.decode()
    assert not [r for r in _rows(url) if r["state"] == "held"]
    assert not [m for m in sink.messages if "kobayashi@example.net" in m.rcpt_tos]


def test_suppression_list_file_is_reimported_when_it_changes(guarded, sink: Sink,
                                                             tls: TlsFiles, policy_dir: Path):
    g, _ = guarded
    lst = policy_dir / "lists" / "opt_out.csv"
    lst.write_text(lst.read_text() + "late.optout@partner-logistics.example,2026-11-23,new\n")
    wait_for(lambda: "opt_out.csv: 4 entries" in g.logs(), what="re-import logged")
    # the new entry is on opt_out now: the shipped drop rule takes that recipient out
    # (a partner's address would otherwise pass), and the other one gets the mail
    rcpts = ["late.optout@partner-logistics.example", "suzuki@partner-logistics.example"]
    submit(g.smtp_port, tls, "alice@example.co.jp", rcpts, plain_mail(rcpts[1], "ご案内"))
    (got,) = wait_for(lambda: [m for m in sink.messages if rcpts[1] in m.rcpt_tos],
                      what="the other recipient's copy")
    assert got.rcpt_tos == [rcpts[1]]
    # a broken edit leaves the imported entries in place, with the bad line reported
    lst.write_text(lst.read_text() + "this is not an address\n")
    wait_for(lambda: "not imported" in g.logs(), what="bad list reported")
    assert "line 6" in g.logs()


def test_special_use_domains_are_inspected_not_refused_forever(guarded, sink: Sink,
                                                               tls: TlsFiles):
    g, url = guarded
    # email-validator refuses .local; the guard must still decide (never a 451 loop)
    reply = submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@mail.corp.local"],
                   plain_mail("bob@mail.corp.local", "社内システム宛て"))
    assert reply == {}
    # (a held message and its notice share one timestamp: pick the row by recipient)
    rows = wait_for(lambda: [r for r in _rows(url)
                             if r["recipients"] == ["bob@mail.corp.local"]], what="stored")
    assert len(rows) == 1 and rows[0]["state"] != "rejected", rows
