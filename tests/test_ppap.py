"""PPAP: a password mail that follows a held encrypted zip waits for it and goes with it,
end to end over SMTP with the shipped policy (the zip is held as uninspectable).

    zip held ─▶ password mail held, linked ─▶ zip confirmed ─▶ both delivered, zip first
    zip cancelled ─▶ password mail cancelled with it; a later one is refused at DATA
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import pytest

from guard.store import db, reads
from tests.conftest import EXAMPLE_POLICY, Sink, TlsFiles, submit, wait_for
from tests.hold.conftest import forms_of, http_request, parse_notice
from tests.inspect.fixtures import RawEntry, raw_zip

ALICE = "alice@example.co.jp"
PARTNER = "tantou@partner-logistics.example"
OTHER = "someone@other-partner.example"
COLLEAGUE = "bob@example.co.jp"


def zip_mail(to: str = PARTNER) -> bytes:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"], m["To"], m["Subject"] = ALICE, to, "資料送付"
    m.set_content("資料をお送りします。パスワードは別メールでお送りします。\n")
    m.add_attachment(raw_zip([RawEntry("見積書.xlsx".encode("cp932"), b"x" * 4000,
                                       flags=0x1)]),
                     maintype="application", subtype="zip", filename="資料.zip")
    return m.as_bytes()


def password_mail(to: str = PARTNER, body: str = "") -> bytes:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"], m["To"], m["Subject"] = ALICE, to, "パスワード送付"
    m.set_content(body or "お世話になっております。\n先ほどお送りしたファイルの解凍パスワードは"
                  " Xk9pQ2zw です。\n\n-- \n山田 / 例示物流\n")
    return m.as_bytes()


def rows(url: str) -> list[dict[str, Any]]:
    import asyncio

    async def go() -> list[dict[str, Any]]:
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            out = await reads.list_messages(conn)
        await engine.dispose()
        return out

    return asyncio.run(go())


def audit(url: str, message_id: str) -> list[dict[str, Any]]:
    import asyncio

    from sqlalchemy import select

    from guard.store.schema import audit as table

    async def go() -> list[dict[str, Any]]:
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            found = (await conn.execute(select(table).where(
                table.c.message_id == message_id).order_by(table.c.id))).all()
        await engine.dispose()
        return [{**r._mapping, "detail": json.loads(r.detail or "{}")} for r in found]

    return asyncio.run(go())


def row(url: str, subject: str, state: str | None = None) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for r in rows(url):
            if r["subject"] == subject and (state is None or r["state"] == state):
                return r
        return None

    return wait_for(find, what=f"{subject} {state or ''}")


@pytest.fixture
def guarded(guard_factory, sink: Sink, tmp_path: Path, db_url: str) -> tuple[Any, str]:
    d = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICY, d, ignore=shutil.ignore_patterns("samples"))
    return guard_factory(sink.url, db_url, policy=str(d)), db_url


def sender_page(g: Any, sink: Sink, queue_id: str) -> tuple[str, Any, str]:
    """The review link of the sender's held notice for `queue_id`, its page, and the
    notice's text."""
    def find() -> Any:
        for m in sink.messages:
            if m.rcpt_tos == [ALICE] and b"X-Guard-Notice: held" in m.data:
                n = parse_notice(m.data)
                if n.for_id == queue_id:
                    return n
        return None

    notice = wait_for(find, what=f"held notice for {queue_id}")
    page = http_request("GET", notice.link, headers={"User-Agent": "Mozilla/5.0 test"})
    assert page.status == 200
    return notice.link, page, notice.body


def confirm(g: Any, link: str, page: Any) -> Any:
    (form,) = [f for f in forms_of(page.body) if f.get("op") in ("confirm", "send_now")]
    base = link.split("/review")[0]
    return http_request("POST", link, form={**form, "rcpt-0": "send"}, cookies=page.cookies,
                        headers={"Origin": base, "User-Agent": "Mozilla/5.0 test"})


def test_password_mail_waits_for_its_zip_and_goes_with_it(guarded, sink: Sink,
                                                           tls: TlsFiles):
    g, url = guarded
    submit(g.smtp_port, tls, ALICE, [PARTNER], zip_mail())
    zip_row = row(url, "資料送付", "held")
    submit(g.smtp_port, tls, ALICE, [PARTNER], password_mail())
    pw = row(url, "パスワード送付", "held")
    assert pw["verdict"]["rule"] == "defaults.linked_password"
    assert pw["verdict"]["linked_to"] == {"queue_id": zip_row["id"], "effect": "hold",
                                          "state": "held"}
    (f,) = [r for r in pw["verdict"]["reasons"] if r["symbol"] == "ppap.password"]
    assert f["evidence"]["queue_id"] == zip_row["id"]
    assert f["evidence"]["with_value"] is True and f["evidence"]["after_minutes"] == 0
    assert "Xk9pQ2zw" not in json.dumps(pw["verdict"])  # the password is never kept

    # a short mail about a password to someone the zip did not go to is not linked
    submit(g.smtp_port, tls, ALICE, [OTHER], password_mail(OTHER, "パスワードは後ほど。"))
    # stored with its verdict, decided once, before the 250 that submit waited for
    other = wait_for(lambda: [r for r in rows(url) if r["recipients"] == [OTHER]],
                     what="the mail to another partner stored")
    assert other[0]["verdict"]["rule"] != "defaults.linked_password"
    assert not other[0]["verdict"].get("linked_to")
    assert "ppap.password" not in json.dumps(other[0]["verdict"])

    # the password mail's page says it waits; its sender cannot send it alone
    pw_link, pw_page, pw_notice = sender_page(g, sink, pw["id"])
    assert zip_row["id"] in pw_notice  # "sent or cancelled together with …"
    assert 'id="waits-for"' in pw_page.body and zip_row["id"] in pw_page.body
    forms = forms_of(pw_page.body)
    assert [f["op"] for f in forms if "op" in f] == ["cancel"]  # no confirm form
    crafted = {"csrf": forms[0]["csrf"], "op": "confirm", "rcpt-0": "send"}
    refused = http_request("POST", pw_link, form=crafted, cookies=pw_page.cookies,
                           headers={"Origin": pw_link.split("/review")[0],
                                    "User-Agent": "Mozilla/5.0 test"})
    assert refused.status == 403, refused.status
    assert row(url, "パスワード送付")["state"] == "held"
    # the zip's page names the password mail waiting with it
    zip_link, zip_page, _ = sender_page(g, sink, zip_row["id"])
    assert 'id="linked"' in zip_page.body and pw["id"] in zip_page.body

    ok = confirm(g, zip_link, zip_page)
    assert ok.status == 200, ok.body

    def delivered() -> list[Any]:
        return [m for m in sink.messages if m.rcpt_tos == [PARTNER]]

    both = wait_for(lambda: len(delivered()) == 2 and delivered(), what="both delivered")
    # the zip first, then the password (our Received: line names the queue id)
    assert f"id {zip_row['id']};".encode() in both[0].data
    assert f"id {pw['id']};".encode() in both[1].data
    (moved,) = [a for a in audit(url, pw["id"]) if a["action"] == "release"]
    assert moved["detail"]["linked_to"] == zip_row["id"] and moved["to_state"] == "queued"
    assert moved["actor"].startswith("web:sender:")


def test_cancelled_zip_takes_its_password_mail_and_refuses_the_next(guarded, sink: Sink,
                                                                     tls: TlsFiles):
    g, url = guarded
    submit(g.smtp_port, tls, ALICE, [PARTNER], zip_mail())
    zip_row = row(url, "資料送付", "held")
    submit(g.smtp_port, tls, ALICE, [PARTNER],
           password_mail(body="Password for the attached file: Xk9pQ2zw\n"))
    pw = row(url, "パスワード送付", "held")
    assert pw["verdict"]["linked_to"]["queue_id"] == zip_row["id"]
    # the sender cancels the zip on its page ("wrong attachment")
    link, page, _ = sender_page(g, sink, zip_row["id"])
    (form,) = [f for f in forms_of(page.body) if f.get("op") == "cancel"]
    done = http_request("POST", link, form={**form, "cancel_reason": "wrong_attachment"},
                        cookies=page.cookies, headers={"Origin": link.split("/review")[0],
                                                       "User-Agent": "Mozilla/5.0 test"})
    assert done.status == 200, done.body
    assert row(url, "パスワード送付", "cancelled")
    (moved,) = [a for a in audit(url, pw["id"]) if a["action"] == "cancel"]
    assert moved["detail"]["reason"] == "linked_cancelled"
    assert moved["detail"]["linked_to"] == zip_row["id"]
    # a password mail sent after the zip was cancelled is refused at DATA
    with pytest.raises(smtplib.SMTPDataError) as e:
        submit(g.smtp_port, tls, ALICE, [PARTNER], password_mail())
    assert e.value.smtp_code == 550
    assert zip_row["id"].encode() in e.value.smtp_error
    # a mail inside the company sent after all that passes: once it has arrived, the
    # cancelled two had their chance to be (wrongly) delivered before it
    marker = EmailMessage(policy=SMTP_POLICY)
    marker["From"], marker["To"], marker["Subject"] = ALICE, COLLEAGUE, "打ち合わせ"
    marker.set_content("明日の打ち合わせは10時からです。\n")
    submit(g.smtp_port, tls, ALICE, [COLLEAGUE], marker.as_bytes())
    wait_for(lambda: [m for m in sink.messages if m.rcpt_tos == [COLLEAGUE]],
             what="the later internal mail delivered")
    assert not [m for m in sink.messages if PARTNER in m.rcpt_tos]
    assert sorted((r["subject"], r["state"]) for r in rows(url)
                  if r["recipients"] == [PARTNER]) == [("パスワード送付", "cancelled"),
                                                       ("パスワード送付", "rejected"),
                                                       ("資料送付", "cancelled")]


def stored_zip(url: str) -> str:
    """A held zip mail of alice's in a fresh store, as the relay records it (the stored
    findings name the encrypted attachment)."""
    import asyncio

    from guard.ids import new_queue_id
    from guard.store import migrate
    from guard.store import queue as q

    qid = new_queue_id()
    finding = {"symbol": "uninspectable.encrypted", "where": "attachment:資料.zip"}

    async def go() -> None:
        engine = db.create_engine(url)
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await q.insert_message(conn, time.time() - 120, q.NewMessage(
                id=qid, state="held", mail_from=ALICE, sender="alice", rcpt_tos=[PARTNER],
                data=zip_mail(), subject="資料送付", actor="smtp:alice",
                verdict={"action": "confirm", "reasons": [finding], "findings": [finding]}))
        await engine.dispose()

    asyncio.run(go())
    return qid


def test_policy_test_asks_the_guards_store_like_the_relay(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    zip_id = stored_zip(url)
    eml = tmp_path / "pw.eml"
    eml.write_bytes(password_mail())
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env.update(GUARD_DATABASE_URL=url, GUARD_POLICY=str(EXAMPLE_POLICY))

    def policy_test(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "guard.cli", "policy", "test", str(eml),
                              "--sender", "alice", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    doc = json.loads(policy_test("--json"))
    assert doc["linked_to"] == {"queue_id": zip_id, "effect": "hold", "state": "held"}
    assert doc["rule"] == "defaults.linked_password"
    (f,) = [x for x in doc["findings"] if x["symbol"] == "ppap.password"]
    assert f["evidence"]["after_minutes"] == 2
    assert f"link:   linked to {zip_id} (held): held until it is released" in policy_test()
