"""A real client submits over STARTTLS + AUTH; the guard commits and delivers upstream."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.conftest import Sink, TlsFiles, simple_message, submit, wait_for


def test_submission_is_delivered_byte_for_byte(guard_factory, sink: Sink, tls: TlsFiles):
    g = guard_factory(sink.url)
    data = simple_message("first", "hello from alice")
    assert submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"], data) == {}
    (m,) = sink.wait_count(1)
    assert m.mail_from == "alice@example.co.jp"
    assert m.rcpt_tos == ["bob@example.net"]
    # the only change is our Received: line in front
    assert m.data.endswith(data)
    trace = m.data[: len(m.data) - len(data)]
    assert trace.startswith(b"Received: from client.localhost ([127.0.0.1])")
    # "(guard <id>)": this guard's mark, which the mail loop check counts
    assert re.search(rb"by guard.localhost \(guard [0-9a-f]{12}\) with ESMTPSA id ", trace)
    assert trace.count(b"\r\n") == 3  # one folded header, nothing else


def _jp_messages() -> dict[str, bytes]:
    head = ("From: alice@example.co.jp\r\nTo: bob@example.net\r\nMIME-Version: 1.0\r\n"
            "Subject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\r\n")
    body = "お世話になっております。株式会社テストの田中です。\r\n"
    return {
        "iso-2022-jp": (head + "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
                        "Content-Transfer-Encoding: 7bit\r\n\r\n").encode()
        + body.encode("iso-2022-jp"),
        "shift_jis": (head + "Content-Type: text/plain; charset=Shift_JIS\r\n"
                      "Content-Transfer-Encoding: 8bit\r\n\r\n").encode()
        + (body + "～①髙\r\n").encode("cp932"),
        "utf-8": (head + "Content-Type: text/plain; charset=UTF-8\r\n"
                  "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + body.encode("utf-8")
        + b"\xff stray byte kept as is\r\n",
    }


@pytest.mark.parametrize("charset", ["iso-2022-jp", "shift_jis", "utf-8"])
def test_japanese_mail_is_relayed_unchanged(guard_factory, sink: Sink, tls: TlsFiles,
                                            charset: str):
    g = guard_factory(sink.url)
    data = _jp_messages()[charset]
    submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"], data)
    (m,) = sink.wait_count(1)
    assert m.data.endswith(data)
    assert m.data[: -len(data)].startswith(b"Received: ")
    if charset != "iso-2022-jp":  # 8-bit bodies go out with BODY=8BITMIME
        assert "BODY=8BITMIME" in m.mail_options


def test_dot_transparency_round_trip(guard_factory, sink: Sink, tls: TlsFiles):
    g = guard_factory(sink.url)
    data = b"Subject: dots\r\n\r\n.\r\n..\r\n.foo\r\nlast line\r\n"
    submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"], data)
    (m,) = sink.wait_count(1)
    assert m.data.endswith(data)


def test_queue_cli_lists_and_shows(guard_factory, sink: Sink, tls: TlsFiles):
    g = guard_factory(sink.url)
    submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net", "carol@example.org"],
           simple_message("queue cli"))
    sink.wait_count(1)
    rows = wait_for(lambda: [r for r in json.loads(g.cli("queue", "list", "--json").stdout)
                             if r["state"] == "delivered"], what="delivered row")
    assert rows[0]["subject"] == "queue cli"
    assert rows[0]["recipients"] == ["bob@example.net", "carol@example.org"]
    out = g.cli("queue", "show", rows[0]["id"])
    assert out.returncode == 0, out.stderr
    assert "state:     delivered" in out.stdout
    assert "accepted" in out.stdout and "delivered" in out.stdout
    assert g.cli("queue", "show", "NOSUCHID").returncode == 1


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_starttls_auth(guard_factory, sink: Sink, tls: TlsFiles):
    from tests.conftest import USER_PASSWORD

    g = guard_factory(sink.url)
    r = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{g.smtp_port}", "--tls", "--tls-verify",
         "--tls-ca-path", str(tls.ca_file), "--auth", "PLAIN", "--auth-user", "alice",
         "--auth-password", USER_PASSWORD, "--from", "alice@example.co.jp",
         "--to", "bob@example.net", "--header", "Subject: via swaks", "--body", "hello",
         "--helo", "swaks.localhost"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.0.0 Ok: queued as" in r.stdout
    (m,) = sink.wait_count(1)
    assert b"Subject: via swaks" in m.data
