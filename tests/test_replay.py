"""`guard policy replay`: each message inspected as it was received,
against the delivery history as it was when it arrived. An unchanged policy reproduces
every recorded verdict; a changed one shows exactly what it changes."""

from __future__ import annotations

import json
import shutil
import smtplib
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest

from guard.store import queue as q
from guard.store import reads, retention
from tests.conftest import EXAMPLE_POLICY, Sink, TlsFiles, submit, wait_for
from tests.test_policy_e2e import _rows, plain_mail
from tests.test_store_queue import store  # noqa: F401 - the fixture

FIRST = "buyer@newclient.example"  # a first-time domain: delayed, then released
AGAIN = "other@newclient.example"  # the same domain once delivered to: passes
LOOKALIKE = "buyer@newc1ient.example"  # resembles the address delivered to
WITHDRAWN = "ito.hanako@example.com"
PARTNERS = [f"staff{i}@partner-logistics.example" for i in range(6)]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICY, d, ignore=shutil.ignore_patterns("samples"))
    return d


def visible_list_mail() -> bytes:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = "alice@example.co.jp"
    m["To"] = ", ".join(PARTNERS[:4])
    m["Cc"] = ", ".join([*PARTNERS[4:], "tanaka@example.co.jp"])
    m["Subject"] = "年末のご挨拶"
    m.set_content("本年もお世話になりました。\n")
    return m.as_bytes()


def by_first_rcpt(url: str) -> dict[str, dict]:
    return {r["recipients"][0]: r for r in _rows(url) if r["mail_from"]}


def replay(g, *args: str) -> dict:
    r = g.cli("policy", "replay", "--since", "1h", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_replay_reproduces_every_verdict_and_shows_a_policy_change(
        guard_factory, sink: Sink, tls: TlsFiles, tmp_path: Path, policy_dir: Path):
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    g = guard_factory(sink.url, url, policy=str(policy_dir))

    def send(rcpts: list[str], data: bytes) -> None:
        submit(g.smtp_port, tls, "alice@example.co.jp", rcpts, data)

    # a first-time domain is delayed; released, it is delivered and the domain is known
    send([FIRST], plain_mail(FIRST, "お見積りをお送りします。"))
    first = wait_for(lambda: by_first_rcpt(url).get(FIRST), what="first stored")
    assert first["state"] == "held" and first["verdict"]["action"] == "delay"
    assert g.cli("queue", "release", first["id"]).returncode == 0
    wait_for(lambda: [m for m in sink.messages if m.rcpt_tos == [FIRST]], what="delivered")
    wait_for(lambda: by_first_rcpt(url)[FIRST]["state"] == "delivered", what="recorded")
    # the same domain again: passes now
    send([AGAIN], plain_mail(AGAIN, "追加のご連絡です。"))
    wait_for(lambda: [m for m in sink.messages if m.rcpt_tos == [AGAIN]], what="second")
    # the Bcc fix rewrites To/Cc: what was relayed is not what was sent
    send([*PARTNERS, "tanaka@example.co.jp"], visible_list_mail())
    (relayed,) = wait_for(lambda: [m for m in sink.messages if PARTNERS[0] in m.rcpt_tos],
                          what="bcc relayed")
    assert b"partner-logistics" not in relayed.data.split(b"\r\n\r\n", 1)[0]
    # internal mail, a withdrawn member, a look-alike of the address delivered to
    send(["tanaka@example.co.jp"], plain_mail("tanaka@example.co.jp", "社内連絡です。"))
    send([WITHDRAWN], plain_mail(WITHDRAWN, "キャンペーンのお知らせです。"))
    send([LOOKALIKE], plain_mail(LOOKALIKE, "先ほどの件です。"))
    # and a refusal at DATA
    with pytest.raises(smtplib.SMTPDataError):
        send(["x@partner-logistics.example"],
             plain_mail("x@partner-logistics.example", "マイナンバー 1234 5678 9018"))

    stored = wait_for(lambda: (lambda rows: rows if len(rows) == 7 else None)(
        by_first_rcpt(url)), what="seven stored")
    recorded = {rcpt: row["verdict"]["action"] for rcpt, row in stored.items()}
    assert recorded == {FIRST: "delay", AGAIN: "pass", PARTNERS[0]: "bcc",
                        "tanaka@example.co.jp": "pass", WITHDRAWN: "approve",
                        LOOKALIKE: "confirm", "x@partner-logistics.example": "reject"}
    assert stored[LOOKALIKE]["verdict"]["rule"] == "lookalike-recipient"

    # the same policy: every verdict comes out again
    doc = replay(g)
    assert doc["messages"] == 7  # notices and DSNs are not replayed
    assert doc["changed"] == 0, doc["changed_messages"]
    assert doc["before"] == doc["after"] == {"delay": 1, "pass": 2, "bcc": 1, "approve": 1,
                                             "confirm": 1, "reject": 1}
    text = g.cli("policy", "replay", "--since", "1h").stdout
    assert "changed: 0" in text and "held: 3 → 3; rejected: 1 → 1" in text

    # a changed policy: first-time domains need a confirmation, suppressed recipients
    # are refused
    changed = tmp_path / "changed"
    changed.mkdir()
    for f in policy_dir.iterdir():
        if f.is_file():
            (changed / f.name).write_bytes(f.read_bytes())
    (changed / "lists").symlink_to(policy_dir / "lists")
    policy = changed / "policy.yaml"
    text = policy.read_text()
    text = text.replace("    conditions:\n      - new_domain\n    action: delay\n"
                        "    delay_minutes: 5\n",
                        "    conditions:\n      - new_domain\n    action: confirm\n", 1)
    text = text.replace("      - suppressed\n    action: approve\n",
                        "      - suppressed\n    action: reject\n", 1)
    policy.write_text(text)
    assert g.cli("policy", "check", str(changed)).returncode == 0
    doc = replay(g, "--policy", str(changed))
    moved = {m["id"]: (m["before"]["action"], m["after"]["action"])
             for m in doc["changed_messages"]}
    assert moved == {stored[FIRST]["id"]: ("delay", "confirm"),
                     stored[WITHDRAWN]["id"]: ("approve", "reject")}
    assert doc["changed"] == 2


async def test_rejected_bytes_are_kept_for_replay_and_purged_like_the_rest(store):  # noqa: F811
    engine, writer = store
    data = b"Subject: t\r\n\r\nMy Number 1234 5678 9018\r\n"
    rejected = q.NewMessage(id="R1", state="rejected", mail_from="a@example.co.jp",
                            sender="alice", rcpt_tos=["x@example.net"], data=data,
                            listener="submission", verdict={"action": "reject"},
                            actor="smtp:alice", audit_detail={"action": "reject"})
    edited = q.NewMessage(id="Q1", state="queued", mail_from="a@example.co.jp",
                          sender="alice", rcpt_tos=["x@example.net"], data=b"edited",
                          original=b"as received", listener="submission", actor="smtp:alice")
    for m in (rejected, edited):
        await writer.submit(lambda c, now, m=m: q.insert_message(c, now, m))
    async with engine.connect() as conn:
        page = {m.id: m for m in await reads.stored_page(conn, 0)}
    assert page["R1"].data == data and page["R1"].received_action == "reject"
    assert page["Q1"].data == b"as received"  # replay reads what the sender sent
    ages = retention.Ages(body_seconds=5, audit_seconds=365 * retention.DAY)
    purged = await writer.submit(lambda c, now: retention.purge(c, now + 10, ages))
    assert purged.bodies == 1
    async with engine.connect() as conn:
        assert [m.id for m in await reads.stored_page(conn, 0)] == ["Q1"]  # queued: kept
        assert await reads.count_without_bytes(conn, 0) == 1
