"""A scope exception changes what the running relay does: the same confidential mail is
refused from one mailbox, delivered from the excepted one and to a customer."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest

from tests.conftest import Sink, TlsFiles, submit
from tests.policy.helpers import write

POLICY = """
defaults:
  internal_domains: [example.co.jp]
lists:
  customers: customers.csv
keywords:
  - {name: confidential, pattern: "社外秘"}
rules:
  - name: confidential-outside
    action: reject
    scope:
      direction: outbound-external
      except: {senders: [bob@example.co.jp], recipient_is: customer}
    conditions:
      - {symbol: keyword, where: [subject, new_text]}
"""


def mail(sender: str, to: str) -> bytes:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = sender
    m["To"] = to
    m["Subject"] = "計画"
    m.set_content("社外秘の計画書です。\n")
    return m.as_bytes()


def test_a_scope_exception_lets_the_excepted_sender_and_a_customer_through(
        guard_factory, sink: Sink, tls: TlsFiles, tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    write(policy, "policy.yaml", POLICY)
    write(policy, "customers.csv", "name,domains\nさくら商事株式会社,sakura-shoji.example\n")
    g = guard_factory(sink.url, policy=str(policy))
    outsider = "yamada@outside.example"
    with pytest.raises(smtplib.SMTPDataError) as refused:
        submit(g.smtp_port, tls, "alice@example.co.jp", [outsider],
               mail("alice@example.co.jp", outsider))
    assert refused.value.smtp_code == 550
    # bob's mailbox is excepted by sender, a customer by what the recipient is
    submit(g.smtp_port, tls, "bob@example.co.jp", [outsider], mail("bob@example.co.jp", outsider),
           user="bob")
    customer = "tanaka@sakura-shoji.example"
    submit(g.smtp_port, tls, "alice@example.co.jp", [customer],
           mail("alice@example.co.jp", customer))
    delivered = sink.wait_count(2)
    assert sorted((m.mail_from, m.rcpt_tos[0]) for m in delivered) == [
        ("alice@example.co.jp", customer), ("bob@example.co.jp", outsider)]
