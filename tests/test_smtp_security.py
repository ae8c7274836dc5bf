"""SMTP protocol security through the real interface (reliability C, D, E, F).

Every test talks to a real `guard serve` subprocess over a raw socket (tests/smtp_client)
and, where mail could leak, checks the real upstream Sink and the guard's own queue.
Most tests share one guard (module fixture `shared`) and tell their mail apart by `tag`.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import USER_PASSWORD, Sink, TlsFiles, simple_message, wait_for
from tests.smtp_client import RawSMTP, Shared, b64, send_message, shared_guard

# one worker (pytest-xdist) runs this module: one guard for all its tests
pytestmark = pytest.mark.xdist_group("smtp_security")

ALICE = "alice@example.co.jp"
QUEUED = re.compile(r"2\.0\.0 Ok: queued as ([0-9A-Z]+)$")
_tags = itertools.count(1)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[Shared]:
    with shared_guard(tmp_path_factory.mktemp("guard-security"), tls) as s:
        yield s


@pytest.fixture
def tag() -> str:
    """Goes into every recipient address of one test ("tag7x" is not in "tag17x")."""
    return f"tag{next(_tags)}x"


def control_message(c: RawSMTP, shared: Shared, tag: str, subject: str) -> None:
    """Positive control after a refusal: one good message on the same connection must be
    queued and delivered, and be the only row and the only delivery of this test."""
    r = send_message(c, ALICE, [f"control.{tag}@example.net"], simple_message(subject))
    assert r.code == 250 and QUEUED.search(r.text), str(r)
    (m,) = shared.wait_mine(tag, 1)
    assert f"Subject: {subject}".encode() in m.data
    assert [row["subject"] for row in shared.rows(tag)] == [subject]


# --- D. STARTTLS and AUTH policy ---------------------------------------------------------


def test_nothing_but_starttls_before_tls_and_nothing_but_auth_before_auth(
        shared: Shared, tls: TlsFiles):
    """D41/D42: no AUTH offered or accepted in plaintext; MAIL needs TLS, then AUTH."""
    g = shared.guard
    with RawSMTP(g.smtp_port) as c:
        assert c.banner is not None and c.banner.code == 220
        ext = c.ehlo()
        assert "STARTTLS" in ext
        assert not [e for e in ext if e.upper().startswith("AUTH")], ext
        creds = b64(f"\0alice\0{USER_PASSWORD}")
        r = c.cmd(f"AUTH PLAIN {creds}")
        assert r.code in (530, 538), str(r)
        assert c.cmd("AUTH LOGIN").code in (530, 538)
        for line in (f"MAIL FROM:<{ALICE}>", "RCPT TO:<bob@example.net>", "DATA",
                     "VRFY alice", "HELP", "HELO client.localhost", "RSET", "EXPN x"):
            r = c.cmd(line)
            assert r.code == 530, f"{line!r} -> {r}"
        assert c.cmd("NOOP").code == 250

        c.starttls(tls.client_context())
        ext = c.ehlo()
        assert "STARTTLS" not in ext
        assert "AUTH LOGIN PLAIN" in ext
        for line in (f"MAIL FROM:<{ALICE}>", "RCPT TO:<bob@example.net>", "DATA"):
            r = c.cmd(line)
            assert r.code == 530 and r.text.startswith("5.7.0"), f"{line!r} -> {r}"
        assert c.auth_plain().code == 235
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250


def test_starttls_command_injection_is_discarded(shared: Shared, tag: str, tls: TlsFiles):
    """D43 (CVE-2024-34083): commands sent in the same segment as STARTTLS are plaintext
    and must be thrown away, not run inside the TLS session."""
    g = shared.guard
    creds = b64(f"\0alice\0{USER_PASSWORD}")
    with RawSMTP(g.smtp_port) as c:
        c.ehlo()
        c.send(f"STARTTLS\r\nMAIL FROM:<attacker@x>\r\nRCPT TO:<victim.{tag}@x>\r\n")
        assert c.reply().code == 220
        c.wrap(tls.client_context())
        # had the injected MAIL run after the switch, its "503 send HELO first" would be
        # the first thing we read here
        assert c.cmd("EHLO client.localhost").code == 250
        assert c.auth_plain().code == 235
        r = c.cmd("RCPT TO:<bob@example.net>")
        assert r.code == 503, str(r)  # no MAIL in this transaction
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250  # not "503 nested MAIL"
        assert c.cmd("NOOP").code == 250

    # a whole injected session: EHLO, AUTH, MAIL, RCPT, DATA, body, dot
    with RawSMTP(g.smtp_port) as c:
        c.ehlo()
        c.send(f"STARTTLS\r\nEHLO evil\r\nAUTH PLAIN {creds}\r\nMAIL FROM:<{ALICE}>\r\n"
               f"RCPT TO:<victim.{tag}@example.net>\r\nDATA\r\nSubject: injected\r\n\r\nx\r\n"
               ".\r\n")
        assert c.reply().code == 220
        c.wrap(tls.client_context())
        assert c.cmd("EHLO client.localhost").code == 250
        r = c.cmd("RCPT TO:<bob@example.net>")
        assert r.code == 530, f"injected AUTH ran: {r}"
        assert c.auth_plain().code == 235  # not "503 Already authenticated"
        r = c.cmd("RCPT TO:<bob@example.net>")
        assert r.code == 503, f"injected MAIL ran: {r}"
        control_message(c, shared, tag, "after injection")


def test_starttls_resets_the_session(shared: Shared, tls: TlsFiles):
    """D44: EHLO given before TLS is forgotten (RFC 3207 4.2); a failed handshake ends
    the connection (D45); STARTTLS inside TLS is refused, not nested."""
    g = shared.guard
    with RawSMTP(g.smtp_port) as c:
        c.ehlo("before.tls")
        c.starttls(tls.client_context())
        r = c.cmd(f"MAIL FROM:<{ALICE}>")
        assert r.code == 503, str(r)
        r = c.auth_plain()
        assert r.code == 503, str(r)  # "send EHLO first"
        r = c.cmd("STARTTLS")
        assert r.code == 554 and "TLS already active" in r.text, str(r)
        c.ehlo()
        r = c.cmd("STARTTLS")
        assert r.code == 554, str(r)
        assert c.cmd("NOOP").code == 250  # the session survived
        assert c.auth_plain().code == 235

    # D45: plaintext after "220 Ready to start TLS" is a broken handshake, not a command
    with RawSMTP(g.smtp_port) as c:
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        c.send("EHLO plaintext.after.starttls\r\n")
        rest, closed = c.drain()
        assert closed
        assert not re.search(rb"(^|\n)\d{3}[ -]", rest), rest  # no plaintext SMTP reply


def test_auth_failures(shared: Shared, tls: TlsFiles):
    """D48: 535 5.7.8, the same for an unknown user; the 4th AUTH gets 421 and close."""
    g = shared.guard
    with RawSMTP(g.smtp_port) as c:
        c.ehlo()
        c.starttls(tls.client_context())
        c.ehlo()
        wrong = c.auth_plain("alice", "not the password")
        unknown = c.auth_plain("nosuchuser", "not the password")
        assert wrong.code == 535 and wrong.text.startswith("5.7.8"), str(wrong)
        assert str(unknown) == str(wrong)
        assert c.auth_plain("alice", "").code == 535
        r = c.auth_plain()  # even the right password: too many attempts
        assert r.code == 421, str(r)
        assert c.is_closed()

    # AUTH LOGIN: the same reply, and a fresh connection starts a fresh budget
    with RawSMTP(g.smtp_port) as c:
        c.ehlo()
        c.starttls(tls.client_context())
        c.ehlo()
        assert c.cmd("AUTH LOGIN").code == 334
        assert c.cmd(b64("alice")).code == 334
        r = c.cmd(b64("wrong password"))
        assert str(r) == str(wrong)
        assert c.cmd("AUTH LOGIN " + b64("alice")).code == 334
        assert c.cmd(b64(USER_PASSWORD)).code == 235


def test_auth_protocol_edge_cases(shared: Shared, tls: TlsFiles):
    """D49: bad base64, wrong field count and abort → 501; unknown mechanism → 504;
    a second AUTH after success → 503."""
    g = shared.guard
    ctx = tls.client_context()
    with RawSMTP(g.smtp_port) as c:
        c.ehlo()
        c.starttls(ctx)
        c.ehlo()
        r = c.cmd("AUTH PLAIN not!base64")
        assert r.code == 501, str(r)
        r = c.cmd("AUTH PLAIN " + b64(f"a\0b\0alice\0{USER_PASSWORD}"))
        assert r.code == 501, str(r)
        assert c.cmd("AUTH PLAIN").code == 334
        r = c.cmd("*")
        assert r.code == 501, str(r)
        r = c.cmd(f"MAIL FROM:<{ALICE}>")
        assert r.code == 530, f"not authenticated after abort: {r}"

    with RawSMTP(g.smtp_port) as c:
        c.ehlo()
        c.starttls(ctx)
        c.ehlo()
        for mech in ("CRAM-MD5", "XOAUTH2", "GSSAPI"):
            r = c.cmd(f"AUTH {mech} {b64('x')}")
            assert r.code == 504, f"{mech}: {r}"
    with RawSMTP(g.smtp_port) as c:
        c.login(ctx)
        r = c.auth_plain("bob", USER_PASSWORD)
        assert r.code == 503, str(r)
        r = c.cmd(f"MAIL FROM:<{ALICE}>")  # still alice, not bob
        assert r.code == 250, str(r)


def test_authzid_does_not_change_identity(shared: Shared, tag: str, tls: TlsFiles):
    """D50/D51: AUTH PLAIN "ceo\\0alice\\0pw" logs in alice; the authzid is ignored."""
    g = shared.guard
    with RawSMTP(g.smtp_port) as c:
        c.ehlo()
        c.starttls(tls.client_context())
        c.ehlo()
        assert c.auth_plain("alice", USER_PASSWORD, authzid="ceo").code == 235
        r = c.cmd("MAIL FROM:<ceo@example.co.jp>")
        assert r.code == 553 and r.text.startswith("5.7.1"), str(r)
        assert "alice" in r.text
        r = send_message(c, ALICE, [f"bob.{tag}@example.net"], simple_message("authzid"))
        assert r.code == 250, str(r)
    (m,) = shared.wait_mine(tag, 1)
    assert m.mail_from == ALICE
    (row,) = shared.rows(tag)
    assert row["sender"] == "alice"


def test_auth_login_username_with_crlf(shared: Shared, tls: TlsFiles):
    """F61: a username with CRLF never authenticates and is never logged raw."""
    g = shared.guard
    with RawSMTP(g.smtp_port) as c:
        c.ehlo()
        c.starttls(tls.client_context())
        c.ehlo()
        assert c.cmd("AUTH LOGIN").code == 334
        assert c.cmd(b64("alice\r\nBcc: victim@example.net")).code == 334
        r = c.cmd(b64(USER_PASSWORD))
        assert r.code == 535, str(r)
        r = c.cmd("AUTH LOGIN " + b64("alice\r\n"))
        assert r.code == 334
        assert c.cmd(b64(USER_PASSWORD)).code == 535
        r = c.cmd("AUTH PLAIN " + b64(f"\0alice\nX-Evil: 1\0{USER_PASSWORD}"))
        assert r.code == 535, str(r)
    logs = g.logs()
    assert "\nBcc: victim" not in logs and "\nX-Evil" not in logs


def test_users_add_cli_writes_a_working_user(shared: Shared, tag: str, tls: TlsFiles):
    g = shared.guard
    out = g.cli("users", "add", "carol", "--address", "carol@example.co.jp",
                "--password-stdin", input="short\n")
    assert out.returncode == 2, out.stdout + out.stderr
    password = "carol's long passphrase"
    out = g.cli("users", "add", "carol", "--address", "carol@example.co.jp",
                "--language", "en", "--password-stdin", input=password + "\n")
    assert out.returncode == 0, out.stderr
    users_file = g.env["GUARD_USERS_FILE"]
    assert stat.S_IMODE(os.stat(users_file).st_mode) == 0o600
    text = Path(users_file).read_text(encoding="utf-8")
    assert password not in text and "scrypt$" in text

    def logs_in() -> bool:  # the running guard re-reads the file (at most once a second)
        with RawSMTP(g.smtp_port) as c:
            c.ehlo()
            c.starttls(tls.client_context())
            c.ehlo()
            return c.auth_plain("carol", password).code == 235

    wait_for(logs_in, timeout=10, interval=0.3, what="carol can log in")
    with RawSMTP(g.smtp_port) as c:
        c.login(tls.client_context(), "carol", password)
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 553
        r = send_message(c, "carol@example.co.jp", [f"bob.{tag}@example.net"],
                         simple_message("from carol", sender="carol@example.co.jp"))
        assert r.code == 250, str(r)
    with RawSMTP(g.smtp_port) as c:  # the others are still there
        c.login(tls.client_context())
    (m,) = shared.wait_mine(tag, 1)
    assert m.mail_from == "carol@example.co.jp"


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_sees_no_plaintext_auth_and_a_sender_check(shared: Shared, tag: str,
                                                          tls: TlsFiles):
    """What an administrator's swaks run shows: no AUTH without TLS (exit 28), and a
    553 5.7.1 for a sender that is not the user's (exit 23)."""
    base = ["swaks", "--server", f"127.0.0.1:{shared.port}", "--auth", "PLAIN",
            "--auth-user", "alice", "--auth-password", USER_PASSWORD,
            "--to", f"x.{tag}@example.net", "--helo", "swaks.localhost"]
    r = subprocess.run([*base, "--from", ALICE], capture_output=True, text=True, timeout=60)
    assert r.returncode == 28, r.stdout + r.stderr
    assert "did not advertise authentication" in r.stdout + r.stderr
    r = subprocess.run([*base, "--from", "bob@example.co.jp", "--tls", "--tls-verify",
                        "--tls-ca-path", str(tls.ca_file)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 23, r.stdout + r.stderr
    assert "235 2.7.0" in r.stdout and "553 5.7.1 <bob@example.co.jp>" in r.stdout
    assert shared.rows(tag) == []


# --- E. Open relay and sender authorization ----------------------------------------------

RELAY_TRICK_RCPTS = [
    "<user%external.example@example.co.jp>",
    '<"user@external.example">',
    '<"user@external.example"@example.co.jp>',
    "<@example.co.jp:user@external.example>",
    "<@a.example,@b.example:user@external.example>",
    "<external.example!user>",
    "<user!external.example@example.co.jp>",
    "<user@external.example@example.co.jp>",
    "<user@[192.0.2.1]>",
    "<user@[IPv6:2001:db8::1]>",
    "<user(comment)@external.example>",
    "<user @external.example>",
    "<test>",
    "<postmaster>",
    "<user@.external.example>",
    "<user@external..example>",
]


def test_no_relay_without_auth(shared: Shared, tag: str, tls: TlsFiles):
    """E53: without AUTH every MAIL and RCPT is refused, whatever the trick."""
    g = shared.guard
    senders = ["<>", "<postmaster@example.co.jp>", "<test@localhost>", "<test>", f"<{ALICE}>"]
    for use_tls in (False, True):
        with RawSMTP(g.smtp_port) as c:
            c.ehlo()
            if use_tls:
                c.starttls(tls.client_context())
                c.ehlo()
            for s in senders:
                r = c.cmd(f"MAIL FROM:{s}")
                assert r.code == 530, f"tls={use_tls} MAIL FROM:{s} -> {r}"
            for rcpt in [f"<bob.{tag}@external.example>", *RELAY_TRICK_RCPTS]:
                r = c.cmd(f"RCPT TO:{rcpt}")
                assert r.code == 530, f"tls={use_tls} RCPT TO:{rcpt} -> {r}"
            assert c.cmd("DATA").code == 530
    assert shared.rows(tag) == []


def test_sender_binding(shared: Shared, tag: str, tls: TlsFiles):
    """E55: alice may only use her own addresses as MAIL FROM, and not the null sender."""
    g = shared.guard
    with RawSMTP(g.smtp_port) as c:
        c.login(tls.client_context())
        for s in ("<bob@example.co.jp>", "<>", "<ceo@example.co.jp>",
                  "<alice@example.co.jp.evil.example>", "<alice@example.co.j>",
                  "<x-alice@example.co.jp>"):
            r = c.cmd(f"MAIL FROM:{s}")
            assert r.code == 553 and r.text.startswith("5.7.1"), f"{s} -> {r}"
        r = c.cmd("MAIL FROM:<ALICE@EXAMPLE.CO.JP>")  # addresses are case-insensitive
        assert r.code == 250, str(r)
        assert c.cmd("RSET").code == 250
        control_message(c, shared, tag, "own address")


def test_recipient_routing_tricks_are_refused_not_rewritten(
        shared: Shared, tag: str, tls: TlsFiles):
    """E56: authenticated, every routing trick gets a 553 (never silently rewritten, as
    aiosmtpd's parser does with source routes, comments and spaces)."""
    g = shared.guard
    with RawSMTP(g.smtp_port) as c:
        c.login(tls.client_context())
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
        for rcpt in RELAY_TRICK_RCPTS:
            r = c.cmd(f"RCPT TO:{rcpt}")
            assert r.code == 553, f"RCPT TO:{rcpt} -> {r}"
        assert c.cmd(f"RCPT TO:<user.{tag}@external.example>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(simple_message("tricks") + b".\r\n")
        assert c.reply().code == 250
    (m,) = shared.wait_mine(tag, 1)
    assert m.rcpt_tos == [f"user.{tag}@external.example"]


def test_trusted_listener_refuses_other_networks(guard_factory, sink: Sink):
    g = guard_factory(sink.url, smtp_mode="trusted", trusted_networks="10.9.9.0/24")
    with RawSMTP(g.smtp_port, read_banner=False) as c:
        r = c.reply()
        assert r.code == 554 and r.text.startswith("5.7.1"), str(r)
        assert c.is_closed()


def test_trusted_listener_relays_without_auth(guard_factory, sink: Sink):
    """A trusted listener needs no AUTH from its networks, still refuses routing tricks,
    and passes a null sender (bounces from the office MTA) on as a null sender."""
    g = guard_factory(sink.url, smtp_mode="trusted", trusted_networks="127.0.0.0/8")
    with RawSMTP(g.smtp_port) as c:
        ext = c.ehlo("mta.example.co.jp")
        assert not [e for e in ext if e.startswith(("AUTH", "STARTTLS"))], ext
        r = c.cmd("AUTH PLAIN " + b64(f"\0alice\0{USER_PASSWORD}"))
        assert r.code in (502, 503, 504, 538), str(r)
        assert c.cmd("MAIL FROM:<anyone@example.co.jp>").code == 250
        for rcpt in RELAY_TRICK_RCPTS:
            r = c.cmd(f"RCPT TO:{rcpt}")
            assert r.code == 553, f"RCPT TO:{rcpt} -> {r}"
        assert c.cmd("RCPT TO:<bob@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(simple_message("trusted", sender="anyone@example.co.jp") + b".\r\n")
        assert c.reply().code == 250

        r = send_message(c, "", ["anyone@example.co.jp"],
                         b"From: MAILER-DAEMON@example.co.jp\r\nSubject: bounce\r\n\r\nx\r\n")
        assert r.code == 250, str(r)
    msgs = sink.wait_count(2)
    by_subject = {b"trusted" if b"Subject: trusted" in m.data else b"bounce": m for m in msgs}
    assert by_subject[b"trusted"].mail_from == "anyone@example.co.jp"
    assert by_subject[b"trusted"].data.startswith(b"Received: from mta.example.co.jp")
    # the Sink records the null reverse-path as "" (aiosmtpd itself would say "<>")
    assert by_subject[b"bounce"].mail_from == ""


# --- F. Command injection -----------------------------------------------------------------


def test_ehlo_with_bare_cr_is_refused(shared: Shared, tag: str, tls: TlsFiles):
    """F60: the EHLO name goes into our Received: header; a bare CR there would become a
    header line upstream."""
    g = shared.guard
    with RawSMTP(g.smtp_port) as c:
        for name in ("foo\rX-Injected: 1", "foo\rX-Injected:1", "foo\x00bar", "foo\tbar"):
            r = c.cmd(f"EHLO {name}")
            assert r.code == 501, f"EHLO {name!r} -> {r}"
        c.ehlo()
        c.starttls(tls.client_context())
        r = c.cmd("EHLO foo\rX-Injected: 1")
        assert r.code == 501, str(r)
        r = c.cmd("HELO foo\rX-Injected: 1")
        assert r.code == 501, str(r)
        r = c.cmd(f"MAIL FROM:<{ALICE}>")
        assert r.code == 503, f"a refused EHLO must not start a session: {r}"
        c.ehlo("client.localhost")
        assert c.auth_plain().code == 235
        control_message(c, shared, tag, "after bad ehlo")
    (m,) = shared.mine(tag)
    assert b"X-Injected" not in m.data
    assert m.data.startswith(b"Received: from client.localhost ")


MAIL_INJECTIONS = [
    # (MAIL FROM argument, expected code)
    (f"<{ALICE}\rRCPT TO:<x@example.net>>", 553),
    (f"<{ALICE}>\rRCPT TO:<x@example.net>", 553),
    (f"<{ALICE}\x00>", 553),
    (f"<{ALICE}>\x00", 553),
    (f"<{ALICE}\x7f>", 553),
    (f"<{ALICE}\t>", 553),
    ("<alice @example.co.jp>", 553),
    (f"<{ALICE}> AUTH=<ceo@example.co.jp>", 555),
    (f"<{ALICE}>AUTH=<ceo@example.co.jp>", 553),
    (f"<{ALICE}> BODY=8BITMIME\rDATA", 553),
    (f"<{ALICE}> RET=FULL", 555),
    (f"<{ALICE}> ENVID=abc", 555),
    (f"<{ALICE}> RET=HDRS ENVID=QQ", 555),
    (f"<{ALICE}> BODY=BINARYMIME", 501),
    (f"<{ALICE}> BODY=foo", 501),
    (f"<{ALICE}> SMTPUTF8", 501),
    (f"<{ALICE}> SIZE=abc", 501),
]

RCPT_INJECTIONS = [
    ("<bob@example.net\rDATA>", 553),
    ("<bob@example.net>\rDATA", 553),
    ("<bob@example.net\r>", 553),
    ("<bob\r@example.net>", 553),
    ("<bob@example.net\x00>", 553),
    ("<bob@example.net\x1b>", 553),
    ("<bob@example.net> NOTIFY=NEVER", 555),
    ("<bob@example.net> ORCPT=rfc822;x@y", 555),
    ("<bob@example.net>,<x@y>", 553),
    ("<bob@example.net,x@y>", 553),
]


def test_control_characters_and_parameters_in_mail_and_rcpt(
        shared: Shared, tag: str, tls: TlsFiles):
    """F62/F63/H79/H80: control characters, smuggled parameters, unknown ESMTP params,
    BINARYMIME, SMTPUTF8 and non-ASCII addresses are refused with exact codes."""
    g = shared.guard
    with RawSMTP(g.smtp_port) as c:
        c.login(tls.client_context())
        for arg, code in MAIL_INJECTIONS:
            r = c.cmd(f"MAIL FROM:{arg}")
            assert r.code == code, f"MAIL FROM:{arg!r} -> {r}"
        r = c.cmd("MAIL FROM:<josé@example.co.jp> SMTPUTF8".encode())
        assert r.code == 500, str(r)  # strict ASCII mode
        r = c.cmd("MAIL FROM:<alicé@example.co.jp>".encode())
        assert r.code == 500, str(r)

        assert c.cmd(f"MAIL FROM:<{ALICE}> BODY=8BITMIME SIZE=100").code == 250
        for arg, code in RCPT_INJECTIONS:
            r = c.cmd(f"RCPT TO:{arg}")
            assert r.code == code, f"RCPT TO:{arg!r} -> {r}"
        r = c.cmd("RCPT TO:<bjørn@example.net>".encode())
        assert r.code == 500, str(r)
        assert c.cmd(f"RCPT TO:<bob.{tag}@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(simple_message("params") + b".\r\n")
        assert c.reply().code == 250
    (m,) = shared.wait_mine(tag, 1)
    assert m.rcpt_tos == [f"bob.{tag}@example.net"]
    assert m.mail_from == ALICE
    assert "RET=FULL" not in m.mail_options and "ENVID=ABC" not in m.mail_options


# --- C. SMTP smuggling -----------------------------------------------------------------------

SMUGGLE_ENDINGS = {
    "lf.lf": b"\n.\n",
    "cr.cr": b"\r.\r",
    "cr.lf": b"\r.\n",
    "lf.cr": b"\n.\r",
    "lf.crlf": b"\n.\r\n",
    "crlf.lf": b"\r\n.\n",
    "cr.crlf": b"\r.\r\n",
    "crlf.cr": b"\r\n.\r",
    "crlf-nul.crlf": b"\r\n\x00.\r\n",
}


def smuggled(tag: str) -> bytes:
    return (f"MAIL FROM:<spoof@evil.example>\r\nRCPT TO:<x.{tag}@example.net>\r\nDATA\r\n"
            "From: spoof@evil.example\r\nSubject: spoofed\r\n\r\nspoofed\r\n.\r\n").encode()


def _until_noop(c: RawSMTP) -> list[str]:
    """Send NOOP and read replies up to and including its "250 OK"."""
    c.send("NOOP\r\n")
    out: list[str] = []
    for _ in range(20):
        r = c.reply()
        out.append(str(r))
        if str(r) == "250 OK":
            return out
    raise AssertionError(f"no NOOP reply among {out}")


def test_smuggling_matrix(shared: Shared, tag: str, tls: TlsFiles):
    """C36: no non-standard end of data ends the data: bare CR/LF and NUL get a 550 after
    the real <CRLF>.<CRLF>, the smuggled MAIL never runs, nothing is queued."""
    g = shared.guard
    ctx = tls.client_context()
    for name, ending in SMUGGLE_ENDINGS.items():
        with RawSMTP(g.smtp_port) as c:
            c.login(ctx)
            assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
            assert c.cmd(f"RCPT TO:<bob.{tag}@example.net>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(b"From: alice@example.co.jp\r\nSubject: smuggle " + name.encode()
                   + b"\r\n\r\nhello" + ending + smuggled(tag) + b"\r\n.\r\n")
            replies = _until_noop(c)
            want = "550 5.6.0" if b"\x00" in ending else "550 5.6.11"
            assert replies[0].startswith(want), f"{name}: {replies}"
            # the leftover "\r\n.\r\n" is read as two junk commands; nothing else ran
            assert [r[:3] for r in replies[1:]] == ["500", "500", "250"], f"{name}: {replies}"
    with RawSMTP(g.smtp_port) as c:
        c.login(ctx)
        control_message(c, shared, tag, "after smuggling")
    assert not [m for m in shared.sink.messages if m.mail_from == "spoof@evil.example"]


def test_aiosmtpd_smuggling_regression_shape(shared: Shared, tag: str, tls: TlsFiles):
    """C35 (CVE-2024-27305): "\\n.\\r\\n" is not an end of data; the guard refuses the bare
    LF outright rather than storing it."""
    g = shared.guard
    with RawSMTP(g.smtp_port) as c:
        c.login(tls.client_context())
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
        assert c.cmd(f"RCPT TO:<bob.{tag}@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"From: alice@example.co.jp\r\nSubject: smug\r\n\r\n"
               b"Testing\n.\r\nNO SMUGGLING\n\r\n.\r\n")
        r = c.reply()
        assert r.code == 550 and r.text.startswith("5.6.11"), str(r)
        control_message(c, shared, tag, "after regression shape")


def test_unauthenticated_pipelining_is_refused(shared: Shared, tag: str, tls: TlsFiles):
    """C39: a whole transaction in one packet without AUTH gets nowhere, before or
    after TLS."""
    g = shared.guard
    packet = (f"EHLO client.localhost\r\nMAIL FROM:<alice@example.co.jp>\r\n"
              f"RCPT TO:<bob.{tag}@example.net>\r\nDATA\r\nSubject: pipelined\r\n\r\n"
              "body\r\n.\r\nQUIT\r\n").encode()
    with RawSMTP(g.smtp_port) as c:
        c.send(packet)
        assert c.reply().code == 250  # EHLO
        codes = [c.reply().code for _ in range(7)]
        # MAIL, RCPT, DATA, the three body lines, the dot: no STARTTLS → 530 (the empty
        # line is "500 bad syntax")
        assert codes == [530, 530, 530, 530, 500, 530, 530], codes
        assert c.reply().code == 221
    with RawSMTP(g.smtp_port) as c:
        c.ehlo()
        c.starttls(tls.client_context())
        c.send(packet)
        assert c.reply().code == 250
        codes = [c.reply().code for _ in range(7)]
        # no AUTH → 530; the body lines are unknown commands (500)
        assert codes == [530, 530, 530, 500, 500, 500, 500], codes
        assert c.reply().code == 221
    assert shared.rows(tag) == []


def test_authenticated_pipelining_one_message_per_end_of_data(
        shared: Shared, tag: str, tls: TlsFiles):
    """C39: bytes read past the final dot are the next commands and are answered in
    order; exactly one message per proper <CRLF>.<CRLF>."""
    g = shared.guard
    with RawSMTP(g.smtp_port) as c:
        c.login(tls.client_context())
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
        assert c.cmd(f"RCPT TO:<one.{tag}@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: one\r\n\r\nfirst\r\n.\r\nMAIL FROM:<alice@example.co.jp>\r\n"
               + f"RCPT TO:<two.{tag}@example.net>\r\nDATA\r\n".encode())
        r1, r2, r3, r4 = c.replies(4)
        assert r1.code == 250 and QUEUED.search(r1.text), str(r1)
        assert (r2.code, r3.code, r4.code) == (250, 250, 354), (r2, r3, r4)
        # the whole third transaction and QUIT in one packet, right after the dot
        c.send(b"Subject: two\r\n\r\nsecond\r\n.\r\nMAIL FROM:<alice@example.co.jp>\r\n"
               + f"RCPT TO:<three.{tag}@example.net>\r\n".encode()
               + b"DATA\r\nSubject: three\r\n\r\n..third\r\n.\r\nNOOP\r\n")
        replies = c.replies(6)
        assert [str(r)[:9] for r in replies] == [
            "250 2.0.0", "250 2.1.0", "250 2.1.5", "354 End d", "250 2.0.0", "250 OK"], replies
        ids = {QUEUED.search(r.text).group(1) for r in (r1, replies[0], replies[4])}
        assert len(ids) == 3
        assert c.cmd("QUIT").code == 221
    msgs = shared.wait_mine(tag, 3)
    got = {m.rcpt_tos[0]: m.data.split(b"\r\n\r\n", 1)[-1] for m in msgs}
    assert got == {f"one.{tag}@example.net": b"first\r\n",
                   f"two.{tag}@example.net": b"second\r\n",
                   f"three.{tag}@example.net": b".third\r\n"}, got


def test_end_of_data_split_across_segments(shared: Shared, tag: str, tls: TlsFiles):
    """The block DATA reader finds <CRLF>.<CRLF> when it straddles two reads, and puts
    the bytes after it back for the command reader."""
    g = shared.guard
    end = b"\r\n.\r\n"
    splits = [b"\r", b"\r\n", b"\r\n.", b"\r\n.\r"]
    with RawSMTP(g.smtp_port) as c:
        c.login(tls.client_context())
        for i, split in enumerate(splits):
            assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
            assert c.cmd(f"RCPT TO:<split{i}.{tag}@example.net>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(b"Subject: split\r\n\r\nbody" + split)
            time.sleep(0.1)
            c.send(end[len(split):] + b"NOOP\r\n")
            r = c.reply()
            assert r.code == 250 and QUEUED.search(r.text), f"{split!r}: {r}"
            assert str(c.reply()) == "250 OK"
    msgs = shared.wait_mine(tag, len(splits))
    assert sorted(m.rcpt_tos[0] for m in msgs) == [f"split{i}.{tag}@example.net"
                                                    for i in range(len(splits))]
    for m in msgs:
        assert m.data.endswith(b"Subject: split\r\n\r\nbody\r\n")
