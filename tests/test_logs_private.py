"""No body, password or review token ever reaches a log: a `guard serve` process at
DEBUG holds a message, its sender uses the review link, other mail is delivered (a
password mail among it), and then every line the guard logged is searched for them."""

from __future__ import annotations

import re
import smtplib
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

from tests.conftest import GuardProcess, Sink, TlsFiles, submit, wait_for
from tests.test_metrics import held_notice_link, review

POLICY = """\
version: 1
name: logs-test
defaults:
  internal_domains: [example.co.jp]
  uninspectable: pass
keywords:
  - {name: hold-me, pattern: "HOLDME", fields: [subject]}
rules:
  - name: confirm-keyword
    conditions: [{symbol: keyword, evidence: {rule: hold-me}}]
    action: confirm
    message: {ja: 確認してください。, en: Please confirm.}
"""

ME, EXT = "alice@example.co.jp", "bob@example.net"
HELD_BODY = "見積もりの本文です held-body-q7Rk2"
PLAIN_BODY = "会議の議事録 plain-body-W4nd8"
PASSWORD = "Zx9-secret"
PASSWORD_BODY = f"先ほどのファイルのパスワードは {PASSWORD} です"


def _mail(subject: str, body: str) -> bytes:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"], m["To"], m["Subject"] = ME, EXT, subject
    m.set_content(body)
    return m.as_bytes()


def test_logs_never_carry_bodies_passwords_or_tokens(
        guard_factory: Any, sink: Sink, tls: TlsFiles, tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY, encoding="utf-8")
    g: GuardProcess = guard_factory(sink.url, policy=str(tmp_path / "policy.yaml"),
                                    log_level="DEBUG")
    submit(g.smtp_port, tls, ME, [EXT], _mail("HOLDME 見積", HELD_BODY))
    submit(g.smtp_port, tls, ME, [EXT], _mail("議事録", PLAIN_BODY))
    try:
        submit(g.smtp_port, tls, ME, [EXT], _mail("パスワード", PASSWORD_BODY))
    except smtplib.SMTPDataError:
        pass  # refused or not, it went through the guard and its logs
    link = held_notice_link(sink, "HOLDME")
    mid, token = link.rsplit("/", 2)[1:]
    review(link, "confirm", **{"rcpt-0": "send"})
    wait_for(lambda: sum(b"plain-body" in m.data or b"held-body" in m.data
                         for m in sink.messages) == 2, what="both messages delivered")
    assert g.cli("purge").returncode == 0
    g.stop()

    logs = g.logs()
    assert "review" in logs and len(logs.splitlines()) > 10  # the capture did capture
    # the token and each of its parts long enough to mean something (but the queue id
    # it names: that one is logged by design)
    parts = [p for p in re.split(r"[.\-_~]", token) if len(p) >= 12 and p != mid]
    secrets = [HELD_BODY, "held-body-q7Rk2", PLAIN_BODY, "plain-body-W4nd8", PASSWORD,
               PASSWORD_BODY, token, *parts]
    for secret in secrets:
        assert secret not in logs, f"{secret!r} is in the log"
