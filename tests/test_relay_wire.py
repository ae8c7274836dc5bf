"""Delivery sends the stored bytes in their wire form (guard/relay/wire.py), not through
aiosmtplib's per-message re-encoding: the same bytes arrive, at an aiosmtpd upstream, at
Postfix's smtp-sink and through a real (private) Postfix relay."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from guard.config import UpstreamSettings
from guard.relay.client import Upstream
from guard.relay.wire import _crlf_clean, wire_form
from tests.conftest import Sink, free_port, wait_for

SMTP_SINK = shutil.which("smtp-sink", path="/usr/sbin:/usr/bin")
POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin")

HEAD = (b"From: <sender@example.co.jp>\r\nTo: <rcpt@example.co.jp>\r\n"
        b"Date: Mon, 7 Dec 2026 08:00:00 +0900\r\n")
LINE = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\r\n"


def _big() -> bytes:
    """About 30 MB: ordinary lines, every 97th starting with a dot, an empty line and a
    lone dot line in between."""
    chunk = LINE * 96 + b"." + LINE + b"\r\n.\r\n"
    return HEAD + b"Subject: 30 MB\r\nMessage-ID: <big@example.co.jp>\r\n\r\n" + chunk * (
        30_000_000 // len(chunk))


# name → the stored message (what the store keeps; delivery prepends nothing here)
MESSAGES: dict[str, bytes] = {
    "dots": HEAD + b"Subject: dots\r\nMessage-ID: <dots@example.co.jp>\r\n\r\n"
            b".\r\n..\r\n.leading dot\r\n...three\r\n. \r\nend\r\n",
    "no-final-crlf": HEAD + b"Subject: no final CRLF\r\nMessage-ID: <eol@example.co.jp>\r\n"
                     b"\r\nthe last line has no line break",
    "8bit": HEAD + "Subject: 日本語の件名（テスト）\r\nMessage-ID: <8bit@example.co.jp>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "本文です。請求書を添付します。\r\n.ドットで始まる行\r\nEnglish alongside\r\n"
            .encode(),
    "bare-newlines": HEAD + b"Subject: bare LF and CR\r\nMessage-ID: <bare@example.co.jp>\r\n"
                     b"\r\nline one\nline two\rline three\r\r\n.dot after a bare LF\n",
    "30MB": _big(),
}


def reference(data: bytes) -> bytes:
    """What aiosmtplib's SMTP.data puts on the wire for `data`."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"


def arrived(data: bytes) -> bytes:
    """What a receiver keeps: CRLF line endings, a final CRLF, dots unstuffed."""
    return normalize_message_line_endings(data)


def test_wire_form_is_what_aiosmtplib_would_send() -> None:
    cases = [b"", b".", b"\r\n", b".\r\n", b"..", b"\n.", b"\r.", b"a\r\n.", b"a\r\n.\r\n",
             b"\r\r\n\n", b"x", *MESSAGES.values()]
    rnd = random.Random(18)
    alphabet = [b"\r", b"\n", b"\r\n", b".", b"a", "あ".encode()]
    cases += [b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(40)))
              for _ in range(3000)]
    for data in cases:
        assert wire_form(data) == reference(data), data[:80]
    assert wire_form(b"Received: x\r\n", b".a\r\n") == reference(b"Received: x\r\n.a\r\n")


def test_wire_form_on_long_lines_with_stray_line_ends() -> None:
    """Lines long enough for wire.py's one-split CRLF check (and some too short for it),
    a stray CR, LF or dot put anywhere: the same bytes as aiosmtplib, and the check says
    what the three counts say."""
    rnd = random.Random(1818)
    strays = [b"\r", b"\n", b"\n\r", b"\r\r\n", b"\r\n\n", b".", b"\r\n.", b"\r\n"]
    for _ in range(3000):
        width = rnd.choice([1, 8, 31, 32, 33, 76, 200])
        lines = [bytes(rnd.choice(b"ab.=") for _ in range(rnd.randrange(width + 1)))
                 for _ in range(rnd.randrange(1, 60))]
        data = bytearray(b"\r\n".join(lines) + rnd.choice([b"", b"\r\n"]))
        for _ in range(rnd.choice([0, 0, 1, 2])):
            at = rnd.randrange(len(data) + 1)
            data[at:at] = rnd.choice(strays)
        d = bytes(data)
        crlf = d.count(b"\r\n")
        assert _crlf_clean(d) == (d.count(b"\n") == crlf and d.count(b"\r") == crlf), d
        assert wire_form(d) == reference(d), d[:80]
        cut = rnd.randrange(len(d) + 1)
        assert wire_form(d[:cut], d[cut:]) == reference(d)


def _send_all(port: int) -> None:
    """Every message through guard.relay.client.Upstream, one session."""
    async def run() -> None:
        up = Upstream(UpstreamSettings(url=f"smtp://127.0.0.1:{port}"), "guard.localhost")
        smtp = await up.connect()
        try:
            for name, data in MESSAGES.items():
                outcomes = await up.send(smtp, "sender@example.co.jp",
                                         ["rcpt@example.co.jp"], data)
                assert [o.outcome for o in outcomes] == ["delivered"], (name, outcomes)
        finally:
            smtp.close()
    asyncio.run(run())


def test_aiosmtpd_upstream_gets_the_stored_bytes(sink: Sink) -> None:
    _send_all(sink.port)
    got = sink.wait_count(len(MESSAGES))
    for (name, data), m in zip(MESSAGES.items(), got, strict=True):
        assert m.data == arrived(data), name
    assert "BODY=8BITMIME" in got[2].mail_options


@pytest.mark.skipif(SMTP_SINK is None, reason="needs smtp-sink (Debian's postfix package)")
def test_postfix_smtp_sink_gets_the_stored_bytes() -> None:
    top = Path(tempfile.mkdtemp(prefix="guard-wire-"))  # not under pytest's 0700 tmp
    dump = top / "dump"
    dump.mkdir()
    top.chmod(0o755)
    dump.chmod(0o777)  # smtp-sink runs as nobody when started by root
    try:
        _through_smtp_sink(dump)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _through_smtp_sink(dump: Path) -> None:
    port = free_port()
    cmd = [str(SMTP_SINK), "-d", f"{dump}/%H%M%S."]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]
    proc = subprocess.Popen([*cmd, f"127.0.0.1:{port}", "10"], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(port), 10, what="smtp-sink")
        _send_all(port)
        wait_for(lambda: len(list(dump.iterdir())) >= len(MESSAGES), 30, what="dumps")
    finally:
        proc.terminate()
        proc.wait(10)
    # smtp-sink's dump: its X- fields and Received:, then the lines, dots unstuffed, LF
    # for CRLF, and an empty line at the end; one file per message, named by time
    dumps = {_message_id(f.read_bytes()): f.read_bytes() for f in dump.iterdir()}
    for name, data in MESSAGES.items():
        raw = dumps[_message_id(data)]
        start = re.search(rb"\nReceived: from [^\n]*(\n[ \t][^\n]*)*\n", raw)
        assert start, name
        assert raw[start.end():] == arrived(data).replace(b"\r\n", b"\n") + b"\n", name


@pytest.mark.skipif(POSTFIX is None or os.geteuid() != 0,
                    reason="needs Debian's postfix package and root (a private instance)")
def test_through_a_real_postfix_relay(sink: Sink) -> None:
    from tests.bench.relay_bench import PostfixMaster

    tmp = Path(tempfile.mkdtemp(prefix="guard-wire-"))  # not under pytest's 0700 tmp
    port = free_port()
    # no header rewriting for loopback clients: what arrives is what was sent, after
    # Postfix's own Received: field
    pf = PostfixMaster(tmp, port, sink.port, extra={"local_header_rewrite_clients": ""})
    try:
        wait_for(lambda: _listening(port), 20, what="postfix")
        _send_all(port)
        got = sink.wait_count(len(MESSAGES), timeout=120)
    finally:
        pf.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    by_id = {_message_id(m.data): m for m in got}
    for name, data in MESSAGES.items():
        m = by_id[_message_id(data)]
        received = re.match(rb"Received: [^\r]*\r\n([ \t][^\r]*\r\n)*", m.data)
        assert received and b"(Postfix)" in received.group(0), name
        assert m.data[received.end():] == arrived(data), name
        if name == "8bit":
            assert "BODY=8BITMIME" in m.mail_options


def _message_id(data: bytes) -> bytes:
    found = re.search(rb"Message-ID: <([^>]+)>", data)
    assert found
    return found.group(1)


def _listening(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
        return s.recv(64).startswith(b"220")
    time.sleep(0.05)
    return False
