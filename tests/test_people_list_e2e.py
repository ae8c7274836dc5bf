"""A people list pasted into the body, and a copier's scan, through a running guard."""

from __future__ import annotations

import asyncio
import textwrap
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

from guard.store import db, reads
from tests.conftest import Sink, TlsFiles, submit, wait_for

POLICY = """\
    version: 1
    defaults:
      internal_domains: [example.co.jp]
      uninspectable: pass
      approver_group: security
    groups:
      security:
        members: [sec@example.co.jp]
        approvers: [sec@example.co.jp]
    rules:
      - name: people-list-anywhere
        scope: {direction: outbound-external}
        conditions: [{symbol: pii.people_list, min_count: 10}]
        action: approve
      - name: scan-to-outside
        scope: {direction: outbound-external}
        conditions: [{symbol: client, evidence: {name: copier}}]
        action: confirm
"""


def _rows(url: str) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            rows = await reads.list_messages(conn)
        await engine.dispose()
        return rows

    return asyncio.run(go())


def _mail(to: str, body: str, mailer: str = "Microsoft Outlook 16.0") -> bytes:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = "alice@example.co.jp"
    m["To"] = to
    m["Subject"] = "名簿"
    m["X-Mailer"] = mailer
    m.set_content(body)
    return m.as_bytes()


def test_pasted_people_list_is_held_and_a_copier_scan_waits(
        guard_factory: Any, sink: Sink, tls: TlsFiles, tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(textwrap.dedent(POLICY), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    g = guard_factory(sink.url, url, policy=str(tmp_path / "policy.yaml"))
    rows = "".join(f"山田 太郎{i}\t東京都千代田区丸の内1-{i}-1\t090-1234-{5600 + i}\n"
                   for i in range(12))
    submit(g.smtp_port, tls, "alice@example.co.jp", ["buyer@client.example"],
           _mail("buyer@client.example", "名簿です。\n\n氏名\t住所\t携帯\n" + rows))
    submit(g.smtp_port, tls, "alice@example.co.jp", ["other@client.example"],
           _mail("other@client.example", "スキャンしました。\n", "RICOH IM C3000"))
    held = wait_for(lambda: len(found := [r for r in _rows(url) if r["state"] == "held"]) == 2
                    and found, what="two held messages")
    by_rcpt = {r["recipients"][0]: r["verdict"] for r in held}
    people = by_rcpt["buyer@client.example"]
    assert people["action"] == "approve" and people["rule"] == "people-list-anywhere"
    [reason] = [r for r in people["reasons"] if r["symbol"] == "pii.people_list"]
    assert (reason["count"], reason["where"]) == (12, "body")
    assert by_rcpt["other@client.example"]["rule"] == "scan-to-outside"
    # a plain mail sent after them passes: once it has arrived, the held two had their
    # chance to be (wrongly) delivered before it
    submit(g.smtp_port, tls, "alice@example.co.jp", ["later@client.example"],
           _mail("later@client.example", "ご確認ください。\n"))
    wait_for(lambda: [m for m in sink.messages if m.rcpt_tos == ["later@client.example"]],
             what="the later mail delivered")
    assert not [m for m in sink.messages if set(m.rcpt_tos) & {"buyer@client.example",
                                                                 "other@client.example"}]
    assert sorted(r["state"] for r in _rows(url) if r["recipients"][0] in by_rcpt
                  ) == ["held", "held"]
