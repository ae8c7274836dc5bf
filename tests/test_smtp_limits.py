"""SMTP limits, advertised extensions and listeners (reliability D46-D48, E58-E59, G, H).

One guard for the module with small limits (100 000-byte messages, 20 recipients) and an
extra implicit-TLS listener; the connection cap gets a guard of its own.
"""

from __future__ import annotations

import itertools
import re
import ssl
import time
import warnings
from collections.abc import Iterator

import pytest

from tests.conftest import Sink, TlsFiles, free_port, simple_message, wait_for
from tests.smtp_client import RawSMTP, Shared, send_message, shared_guard

# one worker (pytest-xdist) runs this module: one guard for all its tests
pytestmark = pytest.mark.xdist_group("smtp_limits")

ALICE = "alice@example.co.jp"
MAX_SIZE = 100_000
MAX_RCPTS = 20
QUEUED = re.compile(r"^2\.0\.0 Ok: queued as ([0-9A-Z]+)$")
_tags = itertools.count(1)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[Shared]:
    with shared_guard(tmp_path_factory.mktemp("guard-limits"), tls,
                      smtp__max_message_size=str(MAX_SIZE),
                      smtp__max_recipients=str(MAX_RCPTS),
                      smtps_listen=f"127.0.0.1:{free_port()}") as s:
        yield s


@pytest.fixture
def tag() -> str:
    return f"lim{next(_tags)}x"


def smtps_port(shared: Shared) -> int:
    return int(shared.guard.env["GUARD_SMTPS_LISTEN"].rsplit(":", 1)[1])


def start_data(c: RawSMTP, rcpt: str) -> None:
    assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>").code == 250
    assert c.cmd("DATA").code == 354


def sized(n: int, subject: str = "size") -> bytes:
    """A message of exactly n octets: short CRLF lines, none starting with a dot."""
    head = f"Subject: {subject}\r\n\r\n".encode()
    full, rem = divmod(n - len(head), 100)
    lines = [b"x" * 98 + b"\r\n"] * full
    if rem == 1:  # no room for a CRLF of its own: one line gets an octet longer
        lines[-1] = b"x" * 99 + b"\r\n"
    elif rem:
        lines.append(b"x" * (rem - 2) + b"\r\n")
    body = b"".join(lines)
    out = head + body
    assert len(out) == n
    return out


# --- H76 / G71: what EHLO says --------------------------------------------------------------


def test_ehlo_advertises_exactly_what_is_implemented(shared: Shared, tls: TlsFiles):
    """SIZE equal to our limit, 8BITMIME; STARTTLS only before TLS, AUTH only after; no
    CHUNKING, PIPELINING, SMTPUTF8 or DSN."""
    with RawSMTP(shared.port) as c:
        before = c.ehlo()
        c.starttls(tls.client_context())
        after = c.ehlo()
    assert before == [f"SIZE {MAX_SIZE}", "8BITMIME", "STARTTLS", "HELP"], before
    assert after == [f"SIZE {MAX_SIZE}", "8BITMIME", "AUTH LOGIN PLAIN", "HELP"], after
    with RawSMTP(smtps_port(shared), implicit_tls=tls.client_context()) as c:
        assert c.ehlo() == after


# --- G67 / G68: command lines and addresses -------------------------------------------------


def test_command_line_limits_do_not_grow(shared: Shared, tls: TlsFiles):
    """512 octets per command (538 for MAIL after EHLO: SIZE=); the limit does not grow
    with every EHLO (aiosmtpd keeps it on the class, reliability G67)."""
    ctx = tls.client_context()
    prefix = f"MAIL FROM:<{ALICE}> SIZE="

    def mail_line(length: int) -> str:
        return prefix + "0" * (length - len(prefix))

    with RawSMTP(shared.port) as c:
        c.login(ctx)
        assert c.cmd("NOOP " + "x" * 507).code == 250  # 512 octets
        r = c.cmd("NOOP " + "x" * 508)
        assert r.code == 500 and "too long" in r.text, str(r)
        assert c.cmd("NOOP").code == 250  # the session is still usable
        r = c.cmd("NOOP " + "x" * 5000)  # beyond the 1001-octet line buffer
        assert r.code == 500 and "too long" in r.text, str(r)
        assert c.cmd("NOOP").code == 250
        r = c.cmd(f"MAIL FROM:<{'a' * 600}@example.co.jp>")
        assert r.code == 500, str(r)

        assert c.cmd(mail_line(538)).code == 250
        assert c.cmd("RSET").code == 250
        assert c.cmd(mail_line(539)).code == 500
        for _ in range(50):
            c.ehlo()
        r = c.cmd(mail_line(539))
        assert r.code == 500, f"limit grew after 50 EHLOs: {r}"
        assert c.cmd("NOOP " + "x" * 508).code == 500
        assert c.cmd(mail_line(538)).code == 250

        with RawSMTP(shared.port) as other:  # a parallel session sees the same limits
            other.login(ctx)
            assert other.cmd(mail_line(539)).code == 500
            assert other.cmd(mail_line(538)).code == 250


def test_address_length_limits(shared: Shared, tls: TlsFiles, tag: str):
    """Local part ≤ 64, domain ≤ 255, path ≤ 256 (RFC 5321 4.5.3.1)."""
    long_domain = ".".join(["d" * 63] * 4)  # 255 octets
    with RawSMTP(shared.port) as c:
        c.login(tls.client_context())
        r = c.cmd(f"MAIL FROM:<{'a' * 65}@example.co.jp>")
        assert r.code == 553, str(r)
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
        local64 = ("r" + tag).ljust(64, "r")
        for rcpt in (("r" + tag).ljust(65, "r") + "@example.net",
                     "x@" + long_domain + "x",
                     "x@" + long_domain,  # 257 octets: longer than a path may be
                     local64 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 63 + ".jp"):
            r = c.cmd(f"RCPT TO:<{rcpt}>")
            assert r.code == 553, f"{len(rcpt)}: {r}"
        assert c.cmd(f"RCPT TO:<{local64}@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(simple_message("long local part") + b".\r\n")
        assert c.reply().code == 250
    (m,) = shared.wait_mine(tag, 1)
    assert m.rcpt_tos == [f"{local64}@example.net"]


# --- G69 / G70 / G71: DATA limits ------------------------------------------------------------


def test_data_line_too_long(shared: Shared, tls: TlsFiles, tag: str):
    """A 1002-octet line: one 500 after the final dot (not mid-DATA), nothing queued,
    and the session goes on. 1000 octets (1001 on the wire when dot-stuffed) pass."""
    with RawSMTP(shared.port) as c:
        c.login(tls.client_context())
        start_data(c, f"long.{tag}@example.net")
        c.send(b"Subject: long line\r\n\r\n" + b"x" * 1000 + b"\r\n")
        early, closed = c.drain(timeout=0.3)
        assert early == b"" and not closed, early  # no reply before the final dot
        c.send(b"more\r\n.\r\n")
        r = c.reply()
        assert r.code == 500 and "Line too long" in r.text, str(r)
        assert c.cmd("NOOP").code == 250

        ok = b"Subject: just fits\r\n\r\n" + b"y" * 998 + b"\r\n." + b"z" * 997 + b"\r\n"
        r = send_message(c, ALICE, [f"fits.{tag}@example.net"], ok)
        assert r.code == 250, str(r)
    (m,) = shared.wait_mine(tag, 1)
    assert m.rcpt_tos == [f"fits.{tag}@example.net"]
    assert m.data.endswith(ok)
    assert [r["recipients"] for r in shared.rows(tag)] == [[f"fits.{tag}@example.net"]]


def test_message_size_limit(shared: Shared, tls: TlsFiles, tag: str):
    """SIZE= over the limit → 552 at MAIL; a body over the limit → 552 after the dot,
    nothing queued; exactly the limit is accepted byte for byte."""
    with RawSMTP(shared.port) as c:
        c.login(tls.client_context())
        for size in ("999999999", str(MAX_SIZE + 1)):
            r = c.cmd(f"MAIL FROM:<{ALICE}> SIZE={size}")
            assert r.code == 552, f"SIZE={size}: {r}"
        assert c.cmd(f"MAIL FROM:<{ALICE}> SIZE={MAX_SIZE}").code == 250
        assert c.cmd("RSET").code == 250

        for n in (MAX_SIZE + 1, 3 * MAX_SIZE):
            start_data(c, f"big{n}.{tag}@example.net")
            c.send(sized(n, "too big") + b".\r\n")
            r = c.reply()
            assert r.code == 552, f"{n}: {r}"
            assert c.cmd("NOOP").code == 250

        exact = sized(MAX_SIZE, "exactly the limit")
        r = send_message(c, ALICE, [f"exact.{tag}@example.net"], exact)
        assert r.code == 250, str(r)
    (m,) = shared.wait_mine(tag, 1)
    assert m.rcpt_tos == [f"exact.{tag}@example.net"]
    assert m.data.endswith(exact)
    assert len(shared.rows(tag)) == 1


# --- E58: recipients; hops and the queue id ----------------------------------------------------


def test_recipient_limit(shared: Shared, tls: TlsFiles, tag: str):
    with RawSMTP(shared.port) as c:
        c.login(tls.client_context())
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
        for i in range(MAX_RCPTS):
            assert c.cmd(f"RCPT TO:<r{i}.{tag}@example.net>").code == 250
        for i in (MAX_RCPTS, MAX_RCPTS + 1):
            r = c.cmd(f"RCPT TO:<r{i}.{tag}@example.net>")
            assert r.code == 452 and r.text.startswith("4.5.3"), str(r)
        assert c.cmd("DATA").code == 354
        c.send(simple_message("many recipients") + b".\r\n")
        assert c.reply().code == 250
    (m,) = shared.wait_mine(tag, 1)
    assert m.rcpt_tos == [f"r{i}.{tag}@example.net" for i in range(MAX_RCPTS)]


def test_mail_loop_hops_and_queue_id(shared: Shared, tls: TlsFiles, tag: str):
    """50 Received: headers → 554 5.4.6 (any case); 49 pass. The 250 names the queue id,
    which is the stored row and the id in our Received: line."""

    def with_hops(n: int, name: str = "Received") -> bytes:
        hops = b"".join(f"{name}: from hop{i}.example by x; Mon, 1 Jan 2024 00:00:00 +0000"
                        "\r\n".encode() for i in range(n))
        return hops + simple_message(f"{n} hops")

    with RawSMTP(shared.port) as c:
        c.login(tls.client_context())
        for n, name in ((50, "Received"), (50, "received"), (80, "RECEIVED")):
            r = send_message(c, ALICE, [f"loop{n}.{tag}@example.net"], with_hops(n, name))
            assert r.code == 554 and r.text.startswith("5.4.6"), f"{n} {name}: {r}"
        r = send_message(c, ALICE, [f"ok.{tag}@example.net"], with_hops(49))
        assert r.code == 250, str(r)
        match = QUEUED.match(r.text)
        assert match, str(r)
        queue_id = match.group(1)
    (m,) = shared.wait_mine(tag, 1)
    assert m.data.count(b"Received: ") == 50  # 49 + ours
    ours = b"\r\n".join(m.data.split(b"\r\n")[:3])  # one folded header on three lines
    assert ours.startswith(b"Received: from client.localhost ([127.0.0.1])"), ours
    assert f" with ESMTPSA id {queue_id};".encode() in ours, ours
    (row,) = shared.rows(tag)
    assert row["id"] == queue_id
    out = shared.guard.cli("queue", "show", queue_id)
    assert out.returncode == 0 and queue_id in out.stdout, out.stdout + out.stderr


# --- H77: BDAT and unknown commands ---------------------------------------------------------


def test_bdat_and_unknown_commands(shared: Shared, tls: TlsFiles):
    with RawSMTP(shared.port) as c:
        c.login(tls.client_context())
        r = c.cmd("BDAT 10 LAST")
        assert r.code == 500 and 'command "BDAT" not recognized' in r.text, str(r)
        for cmd in ("XFOO", "CHUNKING", "XCLIENT ADDR=1.2.3.4"):
            assert c.cmd(cmd).code == 500
        r = c.cmd("XBAR")
        assert r.code == 502 and r.text.startswith("5.5.1"), str(r)
        assert c.is_closed()


# --- D46 / D47: implicit TLS and protocol versions --------------------------------------------


def test_implicit_tls_listener(shared: Shared, tls: TlsFiles, tag: str):
    """Port-465 shape: AUTH offered and working over implicit TLS, while the submission
    listener of the same guard still refuses AUTH before STARTTLS."""
    port = smtps_port(shared)
    with RawSMTP(port, implicit_tls=tls.client_context()) as c:
        assert c.banner is not None and c.banner.code == 220
        ext = c.ehlo()
        assert "AUTH LOGIN PLAIN" in ext and "STARTTLS" not in ext
        r = c.cmd(f"MAIL FROM:<{ALICE}>")
        assert r.code == 530, str(r)
        r = c.cmd("STARTTLS")
        assert r.code == 554, str(r)
        assert c.auth_plain("alice", "wrong password").code == 535
        assert c.auth_plain().code == 235
        assert c.cmd("MAIL FROM:<bob@example.co.jp>").code == 553
        r = send_message(c, ALICE, [f"smtps.{tag}@example.net"], simple_message("smtps"))
        assert r.code == 250, str(r)
    (m,) = shared.wait_mine(tag, 1)
    assert b"Subject: smtps" in m.data

    with RawSMTP(shared.port) as c:  # the submission listener is unchanged
        ext = c.ehlo()
        assert not [e for e in ext if e.startswith("AUTH")]
        assert c.auth_plain().code in (530, 538)

    with RawSMTP(port, read_banner=False) as c:  # plaintext on the TLS port: nothing
        c.send("EHLO plain.client\r\n")
        rest, closed = c.drain()
        assert closed and b"220" not in rest and b"250" not in rest, rest


def _tls11_client(tls: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(tls.ca_file))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def _client_can_do_tls11(client: ssl.SSLContext, tls: TlsFiles) -> bool:
    """Handshake in memory against a server that allows TLS 1.1: can this OpenSSL still
    speak it at all? (Otherwise a refusal would prove nothing about the guard.)"""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            server.minimum_version = ssl.TLSVersion.TLSv1_1
        server.set_ciphers("DEFAULT:@SECLEVEL=0")
        bios = [ssl.MemoryBIO() for _ in range(4)]
        c = client.wrap_bio(bios[0], bios[1], server_hostname="localhost")
        s = server.wrap_bio(bios[2], bios[3], server_side=True)
        done = [False, False]
        for _ in range(10):
            for i, (end, src, dst) in enumerate(((c, bios[1], bios[2]),
                                                 (s, bios[3], bios[0]))):
                if not done[i]:
                    try:
                        end.do_handshake()
                        done[i] = True
                    except ssl.SSLWantReadError:
                        pass
                dst.write(src.read())
            if all(done):
                return c.version() == "TLSv1.1"
    except (ssl.SSLError, ValueError):
        return False
    return False


def test_tls_1_1_client_is_refused(shared: Shared, tls: TlsFiles):
    ctx = _tls11_client(tls)
    if not _client_can_do_tls11(ctx, tls):
        pytest.skip("this OpenSSL cannot make a TLS 1.1 handshake at all")
    with RawSMTP(shared.port) as c:
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        with pytest.raises(ssl.SSLError):
            c.wrap(ctx)
    with pytest.raises(ssl.SSLError):
        RawSMTP(smtps_port(shared), implicit_tls=ctx)
    with RawSMTP(shared.port) as c:  # TLS 1.2 and up still work
        c.login(tls.client_context())
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]


# --- E59: connection cap ------------------------------------------------------------------------


def test_connection_cap(guard_factory, sink: Sink, tls: TlsFiles):
    g = guard_factory(sink.url, smtp__max_connections="5")
    time.sleep(0.2)  # let the start-up port probes' sessions end
    conns = [RawSMTP(g.smtp_port) for _ in range(5)]
    try:
        assert [c.banner.code for c in conns if c.banner] == [220] * 5
        with RawSMTP(g.smtp_port, read_banner=False) as sixth:
            r = sixth.reply()
            assert r.code == 421 and r.text.startswith("4.7.0"), str(r)
            assert sixth.is_closed()
        for c in conns:  # the admitted sessions are unaffected
            assert c.cmd("NOOP").code == 250
        assert conns[0].cmd("QUIT").code == 221
        conns[0].close()

        def admitted() -> bool:
            with RawSMTP(g.smtp_port, read_banner=False) as c:
                return c.reply().code == 220

        wait_for(admitted, timeout=5, interval=0.1, what="a slot after QUIT")
        conns[1].login(tls.client_context())  # TLS sessions count the same
        assert conns[1].cmd(f"MAIL FROM:<{ALICE}>").code == 250
    finally:
        for c in conns:
            c.close()
