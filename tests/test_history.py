# ruff: noqa: E501  (the Postfix log lines are as long as Postfix writes them)
"""Seeded and learned history through the CLI: `guard history import` (address books,
Postfix logs, Exchange traces), `guard domains import` of a customers file,
`guard policy test --history`; new_address, customer_to_noncustomer and the sender's
volume as the policy sees them, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import calendar
import gzip
import json
import textwrap
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from guard.cli.main import main as guard_main
from guard.store import db, knowledge
from guard.store.schema import audit, known_addresses, messages, recipients

SECRET = "9f" * 32
SENDER = "alice@example.co.jp"

POLICY = """\
version: 1
defaults:
  internal_domains: [example.co.jp]
  uninspectable: pass
  new_address_scope: {scope}
lists:
  customers: customers.csv
rules:
  - name: first-private-address
    scope: {{recipient_domains: [gmail.com]}}
    conditions:
      - {{symbol: new_address, evidence: {{domains: [gmail.com]}}}}
    action: confirm
  - name: new-domain
    conditions: [new_domain]
    action: tag
    tag: {{headers: {{X-New: "yes"}}}}
  - name: customer-to-noncustomer
    conditions: [customer_to_noncustomer]
    action: delay
  - name: customer-mismatch
    conditions: [customer_mismatch]
    action: approve
    approver_group: sec
  - name: mass-mailing
    conditions:
      - {{symbol: sender_volume.hour, min_count: 3}}
    action: approve
    approver_group: sec
groups:
  sec: {{approvers: [boss@example.co.jp]}}
"""

CUSTOMERS = ("name,aliases,domains\n"
             "グリーンファーム株式会社,グリーンファーム|Green Farm,greenfarm.co.jp|gf-mail.jp\n"
             "さくら商事株式会社,さくら商事,sakura-shoji.example\n")


@pytest.fixture
def cli(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Any:
    """`guard ...` in this process, with its own folder, store (SQLite or PostgreSQL)
    and secret."""
    monkeypatch.chdir(tmp_path)
    for name in ("GUARD_CONFIG", "GUARD_POLICY", "GUARD_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GUARD_DATABASE_URL", db_url)
    monkeypatch.setenv("GUARD_SECRET", SECRET)
    monkeypatch.setenv("GUARD_USERS_FILE", str(tmp_path / "users.yaml"))
    monkeypatch.setenv("GUARD_POLICY", str(write_policy(tmp_path)))

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = guard_main(list(argv))
        out = capsys.readouterr()
        return rc, out.out, out.err

    run.url = db_url  # type: ignore[attr-defined]
    assert run("db", "upgrade")[0] == 0
    return run


def write_policy(folder: Path, scope: str = "org") -> Path:
    (folder / "policy.yaml").write_text(POLICY.format(scope=scope), encoding="utf-8")
    (folder / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    return folder / "policy.yaml"


def mail(tmp_path: Path, subject: str = "ご連絡", attachment: str | None = None) -> Path:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = SENDER
    m["To"] = "someone@example.org"
    m["Subject"] = subject
    m.set_content("お世話になっております。\n")
    if attachment:
        m.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf",
                         filename=attachment)
    path = tmp_path / "m.eml"
    path.write_bytes(m.as_bytes())
    return path


def verdict(cli: Any, tmp_path: Path, *to: str, sender: str = "alice",
            extra: tuple[str, ...] = (), eml: Path | None = None) -> dict[str, Any]:
    args = ["policy", "test", str(eml or mail(tmp_path)), "--json", "--from", SENDER,
            "--sender", sender, "--policy", str(tmp_path / "policy.yaml"), *extra]
    for t in to:
        args += ["--to", t]
    rc, out, err = cli(*args)
    assert rc == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def symbols(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in doc["findings"]:
        out.setdefault(f["symbol"], []).append(f)
    return out


def rows(url: str, query: Any) -> list[Any]:
    async def go() -> list[Any]:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                return list(await conn.execute(query))
        finally:
            await engine.dispose()

    return asyncio.run(go())


# --- guard domains import: the customers file as documented ---------------------------


def test_domains_import_takes_the_customers_file_with_several_domains_a_cell(
        cli: Any, tmp_path: Path) -> None:
    rc, out, err = cli("domains", "import", str(tmp_path / "customers.csv"))
    assert rc == 0, err
    assert out.startswith("3 domains marked as known")
    doc = verdict(cli, tmp_path, "info@gf-mail.jp")
    assert "new_domain" not in symbols(doc)
    # a bad domain in such a cell: its line, in one line, no traceback
    bad = tmp_path / "bad.csv"
    bad.write_text("name,domains\nA社,a.example|not a domain\n", encoding="utf-8")
    rc, _, err = cli("domains", "import", str(bad))
    assert rc == 1 and err.startswith(f"{bad}:2: ") and "Traceback" not in err


# --- customer_mismatch / customer_to_noncustomer through policy test -----------------


def test_customer_plan_to_the_warehouse_is_no_mismatch(cli: Any, tmp_path: Path) -> None:
    eml = mail(tmp_path, "出荷計画", attachment="グリーンファーム様_出荷計画.pdf")
    doc = verdict(cli, tmp_path, "desk@souko-logi.example", eml=eml, extra=("--no-history",))
    assert "customer_mismatch" not in symbols(doc)
    assert [f["evidence"]["named"] for f in symbols(doc)["customer_to_noncustomer"]] == [
        "グリーンファーム株式会社"]
    assert doc["action"] == "delay"
    doc = verdict(cli, tmp_path, "buyer@sakura-shoji.example", eml=eml,
                  extra=("--no-history",))
    assert [f["evidence"]["named"] for f in symbols(doc)["customer_mismatch"]] == [
        "グリーンファーム株式会社"]
    assert "customer_to_noncustomer" not in symbols(doc)
    assert doc["action"] == "approve"


# --- guard history import -----------------------------------------------------------

# a note's "@taro_y" is no address: only the columns the header calls e-mail are read
OUTLOOK_CP932 = ("名,姓,電子メール アドレス,電子メール 2 アドレス,会社,メモ\r\n"
                 "太郎,山田,taro.yamada@gmail.com,t-yamada@client-a.example,クライアントA,"
                 "X: @taro_y\r\n"
                 "花子,鈴木,,,（メールなし）,\r\n"
                 "一郎,田中,tanaka@example.co.jp,,自社,\r\n").encode("cp932")

POSTFIX_LOG = """\
Dec  1 09:15:02 mx1 postfix/qmgr[812]: 4F2A81C0: from=<alice@example.co.jp>, size=2211, nrcpt=2 (queue active)
Dec  1 09:15:03 mx1 postfix/smtp[901]: 4F2A81C0: to=<Hanako.Sato@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.1.27]:25, delay=1.1, dsn=2.0.0, status=sent (250 2.0.0 OK)
Dec  1 09:15:03 mx1 postfix/smtp[901]: 4F2A81C0: to=<nobody@gone.example>, relay=none, delay=1, dsn=5.1.1, status=bounced (host not found)
Dec  1 09:16:00 mx1 postfix/local[77]: 5A1B: to=<root@mx1.example.co.jp>, relay=local, status=sent (delivered)
Dec  1 09:17:00 mx1 postfix/smtp[902]: 6B2C: to=<sales@partner-b.example>, relay=mx.partner-b.example[10.0.0.1]:25, delay=0.5, status=sent (250 ok)
Dec  1 09:18:00 mx1 dovecot: imap(alice): Logged out
"""

EXCHANGE_TRACE = ('\ufeff"Received","SenderAddress","RecipientAddress","Subject","Status",'
                  '"ToIP","FromIP","Size","MessageId","MessageTraceId"\r\n'
                  '"11/30/2026 1:02:03 AM","alice@example.co.jp","ken@outlook.jp","見積",'
                  '"Delivered","","","1234","<a@x>","1"\r\n'
                  '"11/30/2026 1:05:00 AM","alice@example.co.jp","x@spam.example","件名",'
                  '"Failed","","","1234","<b@x>","2"\r\n'
                  '"11/30/2026 2:00:00 AM","someone@outside.example","alice@example.co.jp",'
                  '"inbound","Delivered","","","1","<c@x>","3"\r\n')


def test_history_import_address_book_cp932_and_utf16(cli: Any, tmp_path: Path) -> None:
    book = tmp_path / "contacts.csv"
    book.write_bytes(OUTLOOK_CP932)
    rc, out, err = cli("history", "import", str(book), "--dry-run")
    assert rc == 0, err
    assert "read as addressbook" in out and "2 addresses, 2 domains" in out
    assert "1 internal" in out and "nothing stored" in out
    assert "new_address" in symbols(verdict(cli, tmp_path, "taro.yamada@gmail.com"))
    rc, out, err = cli("history", "import", str(book))
    assert rc == 0, err
    doc = verdict(cli, tmp_path, "taro.yamada@gmail.com", "t-yamada@client-a.example")
    assert "new_address" not in symbols(doc) and "new_domain" not in symbols(doc)
    # gmail.com is known now; another private address there still is new
    doc = verdict(cli, tmp_path, "jiro.other@gmail.com")
    assert [f["evidence"]["domains"] for f in symbols(doc)["new_address"]] == [["gmail.com"]]
    assert "new_domain" not in symbols(doc)
    assert doc["rule"] == "first-private-address" and doc["action"] == "confirm"
    # Outlook's "Unicode text": UTF-16 with a BOM, tab-separated
    utf16 = tmp_path / "contacts.txt"
    utf16.write_bytes("Name\tE-mail Address\nJiro\tJiro.Other@Gmail.com\n".encode("utf-16"))
    rc, out, err = cli("history", "import", str(utf16), "--format", "addressbook")
    assert rc == 0, err
    assert "new_address" not in symbols(verdict(cli, tmp_path, "jiro.other@gmail.com"))
    audits = [r for r in rows(cli.url, select(audit)) if r.action == "history_import"]
    assert len(audits) == 2
    assert json.loads(audits[0].detail)["format"] == "addressbook"


def test_history_import_postfix_log_per_sender(cli: Any, tmp_path: Path) -> None:
    from guard.users import add_user

    add_user(tmp_path / "users.yaml", "alice", "pw-12345678", [SENDER], "ja")
    log = tmp_path / "maillog"
    log.write_text(POSTFIX_LOG, encoding="utf-8")
    rotated = tmp_path / "maillog.1.gz"
    rotated.write_bytes(gzip.compress(POSTFIX_LOG.encode()))
    rc, out, err = cli("history", "import", str(rotated), "--dry-run")
    assert rc == 0 and "2 deliveries read as postfix" in out, err
    rc, out, err = cli("history", "import", str(log))
    assert rc == 0, err
    assert "2 deliveries read as postfix" in out and "1 senders" in out
    stored = {(r.address, r.scope): r for r in rows(cli.url, select(known_addresses))}
    assert set(stored) == {("hanako.sato@gmail.com", ""), ("hanako.sato@gmail.com", "alice"),
                           ("sales@partner-b.example", "")}
    row = stored[("hanako.sato@gmail.com", "alice")]
    assert row.source == "import"
    # the syslog time is the first-seen time (1 December, this year or the last)
    assert time.localtime(row.first_seen)[1:5] == (12, 1, 9, 15)
    # per-sender scope: alice wrote to hanako before, bob never did
    write_policy(tmp_path, scope="sender")
    assert "new_address" not in symbols(verdict(cli, tmp_path, "hanako.sato@gmail.com"))
    doc = verdict(cli, tmp_path, "hanako.sato@gmail.com", sender="bob")
    assert symbols(doc)["new_address"][0]["recipients"] == ["hanako.sato@gmail.com"]
    # the message to sales@ had no qmgr line: known org-wide only
    assert "new_address" in symbols(verdict(cli, tmp_path, "sales@partner-b.example"))


def test_history_import_exchange_trace_and_bad_rows(cli: Any, tmp_path: Path) -> None:
    trace = tmp_path / "MessageTrace.csv"
    trace.write_text(EXCHANGE_TRACE, encoding="utf-8")
    rc, out, err = cli("history", "import", str(trace), "--dry-run")
    assert rc == 0, err
    assert "read as exchange" in out and "1 addresses" in out
    assert "1 internal and 1 other rows skipped" in out
    bad = tmp_path / "bad.csv"
    bad.write_text(EXCHANGE_TRACE + '"yesterday","alice@example.co.jp","no-at-sign",'
                   '"s","Delivered","","","1","<d@x>","4"\r\n', encoding="utf-8")
    rc, out, err = cli("history", "import", str(bad))
    assert rc == 1 and "Traceback" not in err
    first, last = err.strip().splitlines()
    assert first.startswith(f"{bad}:5: unreadable time 'yesterday'")
    assert "nothing imported (1 bad rows)" in last
    assert rows(cli.url, select(known_addresses)) == []
    rc, _, err = cli("history", "import", str(trace))
    assert rc == 0, err
    (row,) = [r for r in rows(cli.url, select(known_addresses)) if r.scope == ""]
    assert row.address == "ken@outlook.jp"
    assert row.first_seen == calendar.timegm((2026, 11, 30, 1, 2, 3))  # traces are UTC


def test_policy_test_with_a_seeded_history_needs_no_database(
        cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "maillog"
    log.write_text(POSTFIX_LOG, encoding="utf-8")
    monkeypatch.setenv("GUARD_DATABASE_URL", f"sqlite:///{tmp_path / 'absent' / 'no.db'}")
    doc = verdict(cli, tmp_path, "hanako.sato@gmail.com", "new.one@gmail.com",
                  extra=("--history", str(log)))
    assert doc["history"] == f"seeded from {log} (no store)"
    assert [f["recipients"] for f in symbols(doc)["new_address"]] == [["new.one@gmail.com"]]
    assert "new_domain" not in symbols(doc)
    # without the seed, both are new (and the domain too)
    doc = verdict(cli, tmp_path, "hanako.sato@gmail.com", extra=("--no-history",))
    assert "new_address" in symbols(doc) and "new_domain" in symbols(doc)
    bad = tmp_path / "bad.log"
    bad.write_text("Dec  1 09:15:03 mx1 postfix/smtp[9]: AB: to=<a@@b>, status=sent\n")
    rc, _, err = cli("policy", "test", str(mail(tmp_path)), "--history", str(bad),
                     "--policy", str(tmp_path / "policy.yaml"))
    assert rc == 1 and err.startswith(f"{bad}:1: invalid address") and "Traceback" not in err


# --- sender_volume: the store's count -----------------------------------------------


async def _seed_messages(url: str, sender: str, batches: list[tuple[float, str, list[str]]]
                         ) -> None:
    """Messages as the pipeline stores them: (seconds ago, state, recipients)."""
    engine = db.create_engine(url)
    try:
        async with engine.begin() as conn:
            now = await db.db_now(conn)
            for i, (ago, state, rcpts) in enumerate(batches):
                mid = f"vol{i:06d}{sender[:4]}"
                at = now - ago
                await conn.execute(messages.insert().values(
                    id=mid, state=state, mail_from=sender, sender=sender, size=1,
                    received_at=at, queued_at=at, next_attempt_at=at, updated_at=at))
                await conn.execute(recipients.insert(), [
                    {"message_id": mid, "idx": j, "address": r, "updated_at": at,
                     "state": "dropped" if r.startswith("dropped") else "pending"}
                    for j, r in enumerate(rcpts)])
    finally:
        await engine.dispose()


def test_sender_volume_counts_distinct_external_recipients(cli: Any, tmp_path: Path) -> None:
    asyncio.run(_seed_messages(cli.url, "alice", [
        (600, "delivered", ["a@x.example", "B@x.example", "tanaka@example.co.jp"]),
        (900, "held", ["b@x.example", "c@y.example", "sato@sub.example.co.jp"]),
        (1200, "rejected", ["r1@z.example", "r2@z.example"]),  # refused: never sent
        (1500, "held", ["dropped@z.example"]),  # a person took the recipient out
        (7200, "delivered", ["d@old.example", "e@old.example"]),  # today, not this hour
        (90000, "delivered", ["f@older.example"]),  # yesterday
    ]))
    asyncio.run(_seed_messages(cli.url, "bob", [(60, "delivered", ["z1@q.example"])]))
    # a rule that asks for more: the store counts up to 51, so these counts are exact
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy.read_text().replace("groups:", """\
  - name: wide-volume
    conditions: [{symbol: sender_volume.day, min_count: 50}]
    action: tag
groups:"""))
    doc = verdict(cli, tmp_path, "c@y.example", "new@w.example", "suzuki@example.co.jp")
    found = {s: f[0]["count"] for s, f in symbols(doc).items() if s.startswith("sender_")}
    # hour: a, b, c (stored) + new (this message); day: + d, e
    assert found == {"sender_volume.hour": 4, "sender_volume.day": 6}
    assert doc["rule"] == "mass-mailing" and doc["action"] == "approve"
    reason = next(r for r in doc["reasons"] if r["rule"] == "mass-mailing")
    assert reason["reason_en"] == "this sender wrote to 4 external recipients in the last hour"


def test_sender_volume_stops_at_what_the_policy_asks(cli: Any, tmp_path: Path) -> None:
    """mass-mailing asks for 3 this hour: the store stops counting at 4 and the finding
    says "at least"; reading 300 more recipients costs no more statements."""
    asyncio.run(_seed_messages(cli.url, "alice", [
        (60 + i, "delivered", [f"r{i}@x{i % 7}.example"]) for i in range(300)]))
    doc = verdict(cli, tmp_path, "new@w.example")
    found = {s: f[0] for s, f in symbols(doc).items() if s.startswith("sender_")}
    assert {s: f["count"] for s, f in found.items()} == {
        "sender_volume.hour": 4, "sender_volume.day": 4}
    assert found["sender_volume.hour"]["evidence"] == {"recipients": 4, "at_least": True}
    reason = next(r for r in doc["reasons"] if r["rule"] == "mass-mailing")
    assert reason["reason_en"] == (
        "this sender wrote to at least 4 external recipients in the last hour")


def test_no_volume_rule_no_count(cli: Any, tmp_path: Path) -> None:
    """Without a rule on sender_volume the store is not asked (the policy knows which
    symbols its rules name); a rule inside a group, under `not`, still asks."""
    from guard.policy import load_policy

    asyncio.run(_seed_messages(cli.url, "alice", [(60, "delivered", ["a@x.example"])]))
    policy = tmp_path / "policy.yaml"
    text = policy.read_text()
    policy.write_text(text.replace("sender_volume.hour, min_count: 3", "pii.my_number"))
    assert load_policy(policy).sender_volume_cap == 0
    assert not [s for s in symbols(verdict(cli, tmp_path, "new@w.example"))
                if s.startswith("sender_volume")]
    policy.write_text(text.replace(
        "- {symbol: sender_volume.hour, min_count: 3}",
        "- {any: [pii.my_number, {not: {symbol: sender_volume, min_count: 7}}]}"))
    compiled = load_policy(policy)
    assert compiled.sender_volume_cap == 8
    assert compiled.uses("sender_volume.day") and not compiled.uses("ppap")
    found = {s: f[0]["count"] for s, f in symbols(verdict(cli, tmp_path, "n@w.example")).items()
             if s.startswith("sender_volume")}
    assert found == {"sender_volume.hour": 2, "sender_volume.day": 2}


async def _volume(url: str, *these: str, cap: int = 0, sender: str = "carol"
                  ) -> tuple[knowledge.Volume, int]:
    """The count, and how many statements over messages it took."""
    from sqlalchemy import event

    engine = db.create_engine(url)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute",
                 lambda *a: statements.append(a[2]) if "messages" in a[2] else None)
    try:
        async with engine.connect() as conn:
            v = await knowledge.sender_volume(conn, sender, these, ["example.co.jp"],
                                              cap=cap)
        return v, len(statements)
    finally:
        await engine.dispose()


def test_sender_volume_cap_on_the_store(cli: Any) -> None:
    """The capped count on both databases: a busy sender's count stops at the cap in one
    statement; below the cap it is exact, across pages, messages sharing one instant
    (more than a page of them) and recipients written to again and again."""
    asyncio.run(_seed_messages(cli.url, "carol", [
        (7200 + i, "delivered", [f"far{i}@x.example", "tanaka@example.co.jp"])
        for i in range(20)] + [
        (30, "held", [f"same{i % 3}@y.example"]) for i in range(150)]))
    # below the cap: 3 this hour (150 messages at one instant) + 20 earlier + the new one
    v, _ = asyncio.run(_volume(cli.url, "new@w.example", cap=101))
    assert (v.hour, v.day) == (4, 24) and not v.at_least(v.day)
    v, _ = asyncio.run(_volume(cli.url, "new@w.example"))  # no cap
    assert (v.hour, v.day) == (4, 24)
    # a cap below the day: it stops there, and says so
    v, statements = asyncio.run(_volume(cli.url, "new@w.example", "same1@y.example", cap=10))
    assert (v.hour, v.day) == (4, 10) and v.at_least(v.day) and not v.at_least(v.hour)
    # a sender with 500 recipients today: the cap in one statement over messages
    asyncio.run(_seed_messages(cli.url, "dave", [
        (5 + i, "delivered", [f"busy{i}@z.example"]) for i in range(500)]))
    v, statements = asyncio.run(_volume(cli.url, "new@w.example", cap=301, sender="dave"))
    assert (v.hour, v.day, v.at_least(v.day)) == (301, 301, True)
    assert statements == 1
    # this message alone reaches the cap: no statement at all
    v, statements = asyncio.run(_volume(cli.url, "a@w.example", "b@w.example", cap=2))
    assert (v.day, statements) == (2, 0)


def test_sender_volume_reads_an_index_range_on_a_large_store(tmp_path: Path) -> None:
    """100k messages from 1,000 senders in the last day: one sender's count is right and
    SQLite answers it from ix_messages_sender_received (a range of the index, not a scan
    of the table; ~4 ms here, ~10 ms on PostgreSQL, measured by hand: no timing asserted).
    """
    from sqlalchemy import event

    from guard.store import migrate

    url = f"sqlite:///{tmp_path / 'guard.db'}"

    async def go() -> list[str]:
        engine = db.create_engine(url)
        try:
            await migrate.upgrade(engine)
            async with engine.begin() as conn:
                now = await db.db_now(conn)
                for start in range(0, 100_000, 10_000):
                    ids = range(start, start + 10_000)
                    await conn.execute(messages.insert(), [
                        {"id": f"m{i:08d}", "state": "delivered", "mail_from": "",
                         "sender": f"user{i % 1000}", "size": 1,
                         "received_at": now - (i % 86000), "queued_at": now,
                         "next_attempt_at": now, "updated_at": now} for i in ids])
                    await conn.execute(recipients.insert(), [
                        {"message_id": f"m{i:08d}", "idx": 0, "address": f"r{i}@x{i % 97}.example",
                         "updated_at": now} for i in ids])
            seen: list[tuple[str, Any]] = []

            def keep(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _m: Any) -> None:
                if ("recipients" in statement and "received_at" in statement
                        and not statement.startswith("EXPLAIN")):
                    seen.append((statement, params))

            event.listen(engine.sync_engine, "before_cursor_execute", keep)
            async with engine.connect() as conn:
                v = await knowledge.sender_volume(conn, "user7", ["r7@x7.example"],
                                                  ["example.co.jp"])
                assert v.day == 100  # r7 is one of user7's 100: counted once
                assert seen, "sender_volume ran no query over messages and recipients"
                plan = []
                for statement, params in list(seen):
                    rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
                    plan += [str(r[-1]) for r in rows]
            return plan
        finally:
            await engine.dispose()

    plan = asyncio.run(go())
    assert any("ix_messages_sender_received" in step for step in plan), plan
    assert not any(step.startswith("SCAN messages") for step in plan), plan


def test_policy_check_knows_the_new_symbols(cli: Any, tmp_path: Path) -> None:
    rc, _, err = cli("policy", "check", str(tmp_path / "policy.yaml"))
    assert rc == 0, err
    assert "warning" not in err
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy.read_text().replace("new_address_scope: org",
                                                 "new_address_scope: team"))
    rc, _, err = cli("policy", "check", str(policy))
    assert rc == 1 and "defaults.new_address_scope" in err and ":5:" in err


def test_shipped_example_is_documented() -> None:
    readme = (Path(__file__).resolve().parent.parent / "policies" / "README.md").read_text()
    for symbol in ("new_address", "customer_to_noncustomer", "sender_volume.hour",
                   "sender_volume.day", "new_address_scope"):
        assert f"`{symbol}`" in readme, symbol
    assert "{symbol: sender_volume.hour, min_count: 200}" in textwrap.dedent(readme)


# --- through the running guard --------------------------------------------------------

E2E_POLICY = """\
version: 1
defaults:
  internal_domains: [example.co.jp]
  uninspectable: pass
rules:
  - name: first-private-address
    conditions:
      - {symbol: new_address, evidence: {domains: [gmail.com]}}
    action: tag
    tag: {headers: {X-New-Address: "yes"}}
  - name: mass-mailing
    conditions:
      - {symbol: sender_volume.hour, min_count: 3}
    action: confirm
"""


def test_running_guard_second_mail_is_known_and_volume_holds(
        guard_factory: Any, sink: Any, tls: Any, db_url: str, tmp_path: Path) -> None:
    from tests.conftest import submit, wait_for

    policy = tmp_path / "e2e.yaml"
    policy.write_text(E2E_POLICY, encoding="utf-8")
    g = guard_factory(sink.url, db_url, policy=str(policy))

    def send(*to: str) -> None:
        m = EmailMessage(policy=SMTP_POLICY)
        m["From"], m["To"], m["Subject"] = SENDER, ", ".join(to), "ご連絡"
        m.set_content("お世話になっております。\n")
        submit(g.smtp_port, tls, SENDER, list(to), m.as_bytes())

    send("new.one@gmail.com")
    (first,) = wait_for(lambda: list(sink.messages), what="first delivery")
    assert b"X-New-Address: yes" in first.data
    wait_for(lambda: [r for r in rows(db_url, select(known_addresses))
                      if r.address == "new.one@gmail.com" and r.scope == "alice"],
             what="the address learned")
    send("New.One@gmail.com")  # the second message to it: no longer new
    second = wait_for(lambda: sink.messages[1:], what="second delivery")[0]
    assert b"X-New-Address" not in second.data
    # 1 recipient this hour + 2 more = 3: the mass-mailing limit of the policy holds it
    send("a@x.example", "b@y.example")
    held = wait_for(lambda: [r for r in rows(db_url, select(messages))
                             if r.state == "held"], what="held")
    reasons = json.loads(held[0].verdict)["reasons"]
    assert [(r["symbol"], r["count"]) for r in reasons] == [("sender_volume.hour", 3)]
    assert not [m for m in sink.messages if "a@x.example" in m.rcpt_tos]
    # replay asks the store as the relay did: the same verdicts, the mass mailing included
    r = g.cli("policy", "replay", "--since", "1h", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["changed"] == 0 and doc["after"].get("confirm") == 1, doc
