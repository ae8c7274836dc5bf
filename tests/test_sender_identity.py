"""Whose mail this is: the envelope sender and every From:/Sender: mailbox must belong to
the authenticated user or an alias of theirs, through real SMTP."""

from __future__ import annotations

import shutil
import subprocess
import time
from email.header import Header
from typing import Any

import pytest

from tests.conftest import USER_PASSWORD, Sink, TlsFiles
from tests.smtp_client import RawSMTP, send_message

ALICE = "alice@example.co.jp"
SALES = "sales@example.co.jp"  # a shared mailbox: an alias of alice


def _message(head: str | bytes, subject: str) -> bytes:
    raw = head if isinstance(head, bytes) else head.encode()
    return raw + (f"\r\nTo: buyer@example.net\r\nSubject: {subject}\r\n"
                  f"Message-ID: <{subject}@example.co.jp>\r\n\r\nbody\r\n").encode()


def _with_alias(g: Any) -> None:
    """alice gets the shared address through the CLI, as an admin would do it."""
    r = g.cli("users", "add", "alice", "--address", ALICE, "--alias", SALES,
              "--password-stdin", input=USER_PASSWORD + "\n")
    assert r.returncode == 0, r.stderr


def _jp_name(name: str, charset: str = "iso-2022-jp") -> str:
    return Header(name, charset).encode()


# (subject, MAIL FROM, header lines, expected code, text the reply must contain)
CASES = [
    ("own", ALICE, f"From: Alice <{ALICE}>", 250, ""),
    ("own-case-and-domain-case", ALICE, "From: ALICE@Example.CO.JP", 250, ""),
    ("alias", SALES, f"From: Sales <{SALES}>", 250, ""),
    ("alias-in-from-only", ALICE, f"From: {SALES}", 250, ""),
    ("japanese-display-name", ALICE, f"From: {_jp_name('営業 佐藤')} <{ALICE}>", 250, ""),
    # raw Shift_JIS (an old mailer): "ァ" is 83 40, its second byte an "@" in ASCII
    ("raw-shift-jis-name", ALICE, "From: ファイン.Corp <alice@example.co.jp>".encode("cp932"),
     250, ""),
    # raw ISO-2022-JP: 清水 is "@6?e", 中村 "CfB<" in its 7-bit bytes
    ("raw-iso-2022-jp-name", ALICE,
     "From: 清水 中村 <alice@example.co.jp>".encode("iso-2022-jp"), 250, ""),
    ("two-own-mailboxes", ALICE, f"From: {ALICE}, {SALES}\r\nSender: {ALICE}", 250, ""),
    ("no-from-claims-nobody", ALICE, "X-Mailer: a script", 250, ""),
    ("other-user", ALICE, "From: bob@example.co.jp", 550,
     "5.7.1 From: header <bob@example.co.jp> is not an address of user alice"),
    ("outside-address", ALICE, "From: Boss <ceo@evil.example>", 550,
     "<ceo@evil.example> is not an address of user alice"),
    ("display-name-shows-own-address", ALICE, f'From: "{ALICE}" <mallory@evil.example>', 550,
     "<mallory@evil.example> is not an address of user alice"),
    ("display-name-shows-other-address", ALICE, f'From: "ceo@example.co.jp" <{ALICE}>', 550,
     "shows <ceo@example.co.jp>, which is not an address of user alice"),
    ("encoded-word-shows-other-address", ALICE,
     f"From: {_jp_name('社長 ceo@example.co.jp', 'utf-8')} <{ALICE}>", 550,
     "shows <ceo@example.co.jp>"),
    ("comment-shows-other-address", ALICE, f"From: {ALICE} (ceo@example.co.jp)", 550,
     "shows <ceo@example.co.jp>"),
    ("one-of-two-mailboxes-foreign", ALICE, f"From: {ALICE}, bob@example.co.jp", 550,
     "<bob@example.co.jp> is not an address of user alice"),
    ("second-from-field", ALICE, f"From: {ALICE}\r\nFrom: bob@example.co.jp", 550,
     "<bob@example.co.jp> is not an address of user alice"),
    ("foreign-sender-field", ALICE, f"From: {ALICE}\r\nSender: bob@example.co.jp", 550,
     "5.7.1 Sender: header <bob@example.co.jp>"),
    ("unquoted-address-as-name", ALICE, f"From: {ALICE} <mallory@evil.example>", 550,
     "5.7.1 From: header cannot be read"),
    ("empty-from", ALICE, "From: ", 550, "5.7.1 From: header cannot be read"),
]


def test_from_header_must_be_the_users(guard_factory: Any, sink: Sink, tls: TlsFiles) -> None:
    g = guard_factory(sink.url, start=False)
    _with_alias(g)
    g.start()
    accepted = []
    with RawSMTP(g.smtp_port) as c:
        c.login(tls.client_context())
        for subject, mail_from, head, code, text in CASES:
            r = send_message(c, mail_from, ["buyer@example.net"], _message(head, subject))
            assert r.code == code, f"{subject}: {r}"
            assert text in r.text, f"{subject}: {r}"
            if code == 250:
                accepted.append(subject)
            c.cmd("RSET")
        # the envelope sender is checked at MAIL, before any data
        r = c.cmd("MAIL FROM:<bob@example.co.jp>")
        assert r.code == 553 and "not owned by user alice" in r.text, str(r)
    msgs = sink.wait_count(len(accepted))
    time.sleep(0.5)  # a refused message would arrive right behind the others
    got = sorted(next(line for line in m.data.split(b"\r\n") if line.startswith(b"Subject: "))
                 [9:].decode() for m in sink.messages)
    assert got == sorted(accepted), "a refused message reached the upstream"
    assert len(msgs) == len(accepted)
    rows = g.cli("queue", "list", "--json")
    assert rows.returncode == 0
    assert "other-user" not in rows.stdout  # refused before the queue, nothing stored
    assert "refused from alice" in g.logs()


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_with_someone_elses_from(guard_factory: Any, sink: Sink, tls: TlsFiles) -> None:
    """An admin's check with swaks: the From: header of another person → 550 after DATA
    (swaks exit 26), with the reason."""
    g = guard_factory(sink.url)
    r = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{g.smtp_port}", "--tls", "--tls-verify",
         "--tls-ca-path", str(tls.ca_file), "--auth", "PLAIN", "--auth-user", "alice",
         "--auth-password", USER_PASSWORD, "--from", ALICE, "--to", "buyer@example.net",
         "--header", "From: 社長 <ceo@example.co.jp>", "--header", "Subject: spoof",
         "--helo", "swaks.localhost"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 26, r.stdout + r.stderr
    assert "550 5.7.1 From: header <ceo@example.co.jp> is not an address of user alice" in r.stdout
    assert sink.messages == []


@pytest.mark.parametrize("mode", ["envelope", "off"])
def test_the_check_is_a_listener_setting(guard_factory: Any, sink: Sink, tls: TlsFiles,
                                         mode: str) -> None:
    g = guard_factory(sink.url, smtp__sender_identity=mode)
    with RawSMTP(g.smtp_port) as c:
        c.login(tls.client_context())
        r = send_message(c, ALICE, ["buyer@example.net"],
                         _message("From: bob@example.co.jp", f"mode-{mode}"))
        assert r.code == 250, str(r)
        r = c.cmd("MAIL FROM:<bob@example.co.jp>")
        assert r.code == (553 if mode == "envelope" else 250), str(r)
    sink.wait_count(1)


POSTFIX_RECEIVED = ("Received: from pc12.example.co.jp (pc12.example.co.jp [10.0.0.12])\r\n"
                    "\t(Authenticated sender: {user})\r\n"
                    "\tby mta.example.co.jp (Postfix) with ESMTPSA id 4XyZ1;\r\n"
                    "\tMon,  7 Dec 2026 10:00:00 +0900 (JST)")


def _trusted(c: RawSMTP, mail_from: str, head: str, subject: str) -> Any:
    return send_message(c, mail_from, ["buyer@example.net"], _message(head, subject))


def test_trusted_listener_takes_the_user_from_the_office_mta(
        guard_factory: Any, sink: Sink, tls: TlsFiles) -> None:
    """Behind Postfix (smtpd_sasl_authenticated_header = yes): its Received: line names
    the user; only the topmost Received: counts (a client can write lower ones)."""
    g = guard_factory(sink.url, start=False, smtp_mode="trusted",
                      smtp__trusted_sender_identity="enforce",
                      smtp__trusted_identity_header="Received")
    _with_alias(g)
    g.start()
    own = POSTFIX_RECEIVED.format(user="alice")
    with RawSMTP(g.smtp_port) as c:
        c.ehlo("mta.example.co.jp")
        r = _trusted(c, ALICE, f"{own}\r\nFrom: Alice <{ALICE}>", "t-own")
        assert r.code == 250, str(r)
        r = _trusted(c, SALES, f"{own}\r\nFrom: {SALES}", "t-alias")
        assert r.code == 250, str(r)
        r = _trusted(c, ALICE, f"{own}\r\nFrom: bob@example.co.jp", "t-other")
        assert r.code == 550 and "<bob@example.co.jp> is not an address of user alice" in r.text
        r = _trusted(c, "bob@example.co.jp", f"{own}\r\nFrom: {ALICE}", "t-envelope")
        assert r.code == 550 and "Sender address not owned by user alice" in r.text, str(r)
        # unauthenticated at the MTA, with a forged lower line: nobody to check against
        forged = f"Received: from x by y;\r\n\tdate\r\n{own}"
        r = _trusted(c, ALICE, f"{forged}\r\nFrom: {ALICE}", "t-forged")
        assert r.code == 550 and "No authenticated user" in r.text, str(r)
        r = _trusted(c, ALICE, f"{POSTFIX_RECEIVED.format(user='mallory')}\r\nFrom: {ALICE}",
                     "t-unknown")
        assert r.code == 550 and "mallory is not in the guard's users file" in r.text, str(r)
        # a bounce from the MTA itself (null sender) names nobody
        r = send_message(c, "", ["buyer@example.net"],
                         _message("From: MAILER-DAEMON@example.co.jp", "t-dsn"))
        assert r.code == 250, str(r)
    sink.wait_count(3)
    subjects = sorted(m.data.split(b"Subject: ")[1].split(b"\r\n")[0] for m in sink.messages)
    assert subjects == [b"t-alias", b"t-dsn", b"t-own"]


def test_trusted_listener_with_a_named_header(guard_factory: Any, sink: Sink) -> None:
    g = guard_factory(sink.url, smtp_mode="trusted", smtp__trusted_sender_identity="enforce",
                      smtp__trusted_identity_header="X-Authenticated-User")
    with RawSMTP(g.smtp_port) as c:
        c.ehlo("mta.example.co.jp")
        r = _trusted(c, ALICE, f"X-Authenticated-User: alice\r\nFrom: {ALICE}", "h-own")
        assert r.code == 250, str(r)
        r = _trusted(c, ALICE, "X-Authenticated-User: bob\r\nFrom: alice@example.co.jp", "h-bob")
        assert r.code == 550 and "not owned by user bob" in r.text, str(r)
    sink.wait_count(1)


def test_trusted_identity_without_a_header_is_refused_at_start(guard_factory: Any,
                                                                sink: Sink) -> None:
    g = guard_factory(sink.url, start=False, smtp_mode="trusted",
                      smtp__trusted_sender_identity="enforce")
    with pytest.raises(RuntimeError) as e:
        g.start()
    assert "smtp.trusted_sender_identity needs smtp.trusted_identity_header" in str(e.value)
