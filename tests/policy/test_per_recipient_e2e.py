"""Per-recipient actions through a running guard over SMTP: a drop rule takes out the
recipient on a suppression list and the others get the mail; a split hold delivers the
known recipients now and holds the new-domain one until it is released."""

from __future__ import annotations

import asyncio
import base64
import re
import smtplib
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from guard.store import db, reads
from tests.conftest import Sink, SinkMessage, TlsFiles, submit, wait_for
from tests.policy.per_recipient_policy import write_policy

ALICE = "alice@example.co.jp"
WITHDRAWN = "ito.hanako@example.com"  # on the withdrawn list
KNOWN = ["tanaka@partner.example", "sato@partner.example"]
NEW = "buyer@newclient.example"


def mail(to: list[str], subject: str = "ご案内") -> bytes:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = ALICE
    m["To"] = ", ".join(to)
    m["Subject"] = subject
    m.set_content("来月の展示会のご案内です。\n")
    return m.as_bytes()


def stored(url: str) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await reads.list_messages(conn)
                return [m for r in rows if (m := await reads.show_message(conn, r["id"]))]
        finally:
            await engine.dispose()

    return asyncio.run(go())


def notice_text(m: SinkMessage) -> str:
    part = message_from_bytes(m.data)
    payload = part.get_payload()
    assert isinstance(payload, str)
    return base64.b64decode(payload).decode("utf-8")


def head(data: bytes) -> str:
    """The header block, folded lines joined."""
    return data.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n ", " ").replace("\r\n\t", " ")


def without_received(data: bytes) -> list[str]:
    return [ln for ln in head(data).split("\r\n") if not ln.startswith("Received:")]


def body(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[1]


@pytest.fixture
def guarded(guard_factory: Any, sink: Sink, tmp_path: Path, db_url: str) -> tuple[Any, str]:
    """A guard with the per-recipient policy, on SQLite and on PostgreSQL (the store
    writes dropped recipients and two messages in one transaction)."""
    write_policy(tmp_path / "policies")
    url = db_url
    g = guard_factory(sink.url, url, policy=str(tmp_path / "policies"))
    known = tmp_path / "known.csv"
    known.write_text("domain\npartner.example\nexample.com\n")
    r = g.cli("domains", "import", str(known))
    assert r.returncode == 0, r.stderr
    return g, url


def test_a_suppressed_recipient_is_dropped_and_the_others_get_it(
        guarded: tuple[Any, str], sink: Sink, tls: TlsFiles) -> None:
    g, url = guarded
    rcpts = [KNOWN[0], WITHDRAWN, KNOWN[1]]
    assert submit(g.smtp_port, tls, ALICE, rcpts, mail(rcpts)) == {}

    def arrived(rcpt: str) -> list[SinkMessage]:
        return [m for m in sink.messages if rcpt in m.rcpt_tos]

    (got,) = wait_for(lambda: arrived(KNOWN[0]), what="the mail for the others")
    assert got.rcpt_tos == KNOWN  # the dropped one never gets it
    to = [ln for ln in head(got.data).split("\r\n") if ln.startswith("To:")]
    assert to == [f"To: {KNOWN[0]}, {KNOWN[1]}"]
    (notice,) = wait_for(lambda: arrived(ALICE), what="the sender's notice")
    assert b"X-Guard-Notice: dropped" in notice.data
    text = notice_text(notice)
    # alice reads Japanese (users file): the notice is in her language
    assert "■ 除外した宛先:\r\n  ・ito.hanako@example.com" in text
    assert "ほかの宛先には送信します" in text
    assert "withdrawn" in text  # why: the list it is on
    assert not arrived(WITHDRAWN)
    (row,) = [m for m in stored(url) if m["sender"] != "guard"]
    states = {r["address"]: (r["state"], r["last_reply"]) for r in row["recipients"]}
    assert states[WITHDRAWN][0] == "dropped"
    assert "withdrawn-members" in states[WITHDRAWN][1]
    assert {states[a][0] for a in KNOWN} == {"delivered"}
    accepted = row["audit"][0]
    assert accepted["action"] == "accepted"
    assert list(accepted["detail"]["dropped"]) == [WITHDRAWN]
    assert row["verdict"]["action"] == "drop"


def test_every_recipient_dropped_is_refused_at_data(
        guarded: tuple[Any, str], sink: Sink, tls: TlsFiles) -> None:
    g, url = guarded
    with pytest.raises(smtplib.SMTPDataError) as e:
        submit(g.smtp_port, tls, ALICE, [WITHDRAWN], mail([WITHDRAWN]))
    assert e.value.smtp_code == 550
    assert b"every recipient was dropped" in e.value.smtp_error
    (row,) = stored(url)
    assert row["state"] == "rejected" and row["verdict"]["rule"] == "withdrawn-members"


def test_a_split_hold_sends_the_known_now_and_the_new_one_after_release(
        guarded: tuple[Any, str], sink: Sink, tls: TlsFiles) -> None:
    g, url = guarded
    rcpts = [KNOWN[0], NEW, KNOWN[1]]
    sent = mail(rcpts, "見積もり")
    with smtplib.SMTP("127.0.0.1", g.smtp_port, local_hostname="client.localhost",
                      timeout=30) as s:
        s.starttls(context=tls.client_context())
        s.login("alice", "correct horse battery staple")
        s.mail(ALICE)
        for r in rcpts:
            s.rcpt(r)
        code, reply = s.data(sent)
    assert code == 250 and b"held as" in reply and b"queued as" in reply, reply

    def arrived(rcpt: str) -> list[SinkMessage]:
        return [m for m in sink.messages if rcpt in m.rcpt_tos]

    (now,) = wait_for(lambda: arrived(KNOWN[0]), what="the part that goes now")
    assert now.rcpt_tos == KNOWN
    (held_notice,) = wait_for(lambda: arrived(ALICE), what="the held part's notice")
    text = notice_text(held_notice)
    assert NEW in text and KNOWN[0] in text  # whom it waits for; who got it now
    # the held part's review page shows its own recipient, and who got it now
    link = re.search(r"https?://\S+/review/\S+", text)
    assert link is not None
    status, page = g.http(urlsplit(link.group()).path)
    assert status == 200, page
    assert page.count('id="rcpt-') == 1 and NEW in page
    sent_now = re.search(r'<p class="help" id="sent-now">(.*?)</p>', page)
    assert sent_now is not None, page
    assert sent_now.group(1).endswith(f": {KNOWN[0]}, {KNOWN[1]}")
    assert not arrived(NEW)
    rows = {m["state"]: m for m in stored(url) if m["sender"] != "guard"}
    held, done = rows["held"], rows["delivered"]
    assert [r["address"] for r in held["recipients"]] == [NEW]
    assert [r["address"] for r in done["recipients"]] == KNOWN
    assert held["verdict"]["split"] == {"part": "held", "other": done["id"],
                                        "other_recipients": KNOWN}
    assert held["verdict"]["action"] == "confirm"
    assert done["verdict"]["action"] == "pass"
    assert held["audit"][0]["detail"]["split_into"] == done["id"]
    assert done["audit"][0]["detail"]["split_from"] == held["id"]

    r = g.cli("queue", "release", held["id"], "--reason", "confirmed by phone")
    assert r.returncode == 0, r.stderr
    (later,) = wait_for(lambda: arrived(NEW), what="the held part after release")
    assert later.rcpt_tos == [NEW]
    assert body(later.data) == body(now.data) == body(sent)
    # the same stored bytes: only the Received: line (each part's own id) differs
    assert without_received(later.data) == without_received(now.data)
    after = {m["id"]: m for m in stored(url)}
    assert [a["action"] for a in after[held["id"]]["audit"]][:2] == ["held", "notified"]
    assert "release" in [a["action"] for a in after[held["id"]]["audit"]]
    assert [a["action"] for a in after[done["id"]]["audit"]] == ["accepted", "delivered"]
