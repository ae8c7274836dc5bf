"""A deliberately dumb SMTP client on a raw socket, for protocol tests.

smtplib is polite: it waits for every reply, refuses CR/LF in arguments and hides the
bytes on the wire. Security tests need the opposite: exact bytes in one TCP segment,
commands out of order, and every reply read back verbatim.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests import conftest
from tests.conftest import USER_PASSWORD, GuardProcess, Sink, SinkMessage, TlsFiles, wait_for


@dataclass
class Reply:
    code: int
    lines: list[str]  # text after "NNN-" / "NNN " of every line

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class ConnectionClosed(Exception):
    pass


class RawSMTP:
    """One connection. `send()` writes bytes as given; `reply()` reads one full reply."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0,
                 implicit_tls: ssl.SSLContext | None = None, read_banner: bool = True,
                 source: str | None = None) -> None:
        # source: another loopback address (127.0.0.2) to be another client
        self.sock: socket.socket = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None)
        # one segment per send(): no Nagle coalescing of our writes with earlier ones
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if implicit_tls is not None:
            self.sock = implicit_tls.wrap_socket(self.sock, server_hostname="localhost")
        self._buf = b""
        self.banner: Reply | None = self.reply() if read_banner else None

    # --- bytes ----------------------------------------------------------------------
    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _readline(self) -> bytes:
        while b"\r\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLEOFError) as e:
                raise ConnectionClosed(repr(e)) from e
            if not chunk:
                raise ConnectionClosed(f"closed; unread {self._buf!r}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def reply(self) -> Reply:
        lines: list[str] = []
        while True:
            raw = self._readline().decode("utf-8", "replace")
            assert len(raw) >= 3 and raw[:3].isdigit(), f"not an SMTP reply: {raw!r}"
            lines.append(raw[4:])
            if raw[3:4] != "-":
                return Reply(int(raw[:3]), lines)

    def replies(self, n: int) -> list[Reply]:
        return [self.reply() for _ in range(n)]

    def cmd(self, line: bytes | str) -> Reply:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True when the server has closed the connection (EOF or reset)."""
        if self._buf:
            return False
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(old)

    def drain(self, timeout: float = 5.0) -> tuple[bytes, bool]:
        """Everything the server still sends, and whether it then closed the connection."""
        data, self._buf = self._buf, b""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                    return data, True
                except TimeoutError:
                    return data, False
                if not chunk:
                    return data, True
                data += chunk
        finally:
            self.sock.settimeout(old)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawSMTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- conveniences ---------------------------------------------------------------
    def ehlo(self, name: str = "client.localhost") -> list[str]:
        """EHLO; returns the extension keywords lines (without the greeting line)."""
        r = self.cmd(f"EHLO {name}")
        assert r.code == 250, str(r)
        return r.lines[1:]

    def starttls(self, ctx: ssl.SSLContext) -> None:
        r = self.cmd("STARTTLS")
        assert r.code == 220, str(r)
        self.wrap(ctx)

    def wrap(self, ctx: ssl.SSLContext) -> None:
        assert not self._buf, f"plaintext left over before TLS: {self._buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def auth_plain(self, user: str = "alice", password: str = USER_PASSWORD,
                   authzid: str = "") -> Reply:
        blob = base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {blob}")

    def login(self, ctx: ssl.SSLContext, user: str = "alice",
              password: str = USER_PASSWORD) -> None:
        """EHLO, STARTTLS, EHLO, AUTH PLAIN: a submission session ready for MAIL."""
        self.ehlo()
        self.starttls(ctx)
        self.ehlo()
        r = self.auth_plain(user, password)
        assert r.code == 235, str(r)


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def queue_rows(guard: GuardProcess) -> list[dict[str, object]]:
    """Every message row the guard has stored (`guard queue list --json`)."""
    out = guard.cli("queue", "list", "--json", "--limit", "100000")
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


# --- one guard for a whole test module -----------------------------------------------------


@dataclass
class Shared:
    """A guard and its upstream Sink, shared by the tests of one module.

    Tests stay independent by putting their own `tag` into every recipient address and
    looking only at messages and queue rows that carry it.
    """

    guard: GuardProcess
    sink: Sink

    @property
    def port(self) -> int:
        return self.guard.smtp_port

    def mine(self, tag: str) -> list[SinkMessage]:
        with self.sink.lock:
            return [m for m in self.sink.messages if any(tag in r for r in m.rcpt_tos)]

    def wait_mine(self, tag: str, n: int, settle: float = 0.3) -> list[SinkMessage]:
        """Wait for n tagged deliveries, then a moment longer: a smuggled extra message
        would arrive right behind them."""
        wait_for(lambda: len(self.mine(tag)) >= n, 15, what=f"{n} messages tagged {tag}")
        time.sleep(settle)
        got = self.mine(tag)
        assert len(got) == n, [(m.mail_from, m.rcpt_tos) for m in got]
        return got

    def rows(self, tag: str) -> list[dict[str, object]]:
        return [r for r in queue_rows(self.guard)
                if any(tag in str(x) for x in r["recipients"])]  # type: ignore[attr-defined]


@contextlib.contextmanager
def shared_guard(workdir: Path, tls: TlsFiles, **overrides: str) -> Iterator[Shared]:
    """conftest's guard_factory, once for a whole module (a module-scoped fixture can't
    request the function-scoped one). The fixture's own function runs here, so the
    settings, users and teardown stay exactly those of conftest; only the scope differs."""
    factory = conftest.guard_factory._get_wrapped_function()  # pytest's FixtureFunctionDefinition
    gen = factory(workdir, tls)
    make = next(gen)
    sink = Sink().start()
    try:
        yield Shared(make(sink.url, **overrides), sink)
    finally:
        next(gen, None)  # the fixture's teardown: stops the guard
        sink.stop()


def send_message(c: RawSMTP, mail_from: str, rcpts: list[str], data: bytes) -> Reply:
    """MAIL, RCPT..., DATA, body (dot-stuffed here) and the final dot; the last reply."""
    r = c.cmd(f"MAIL FROM:<{mail_from}>")
    assert r.code == 250, str(r)
    for rcpt in rcpts:
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        assert r.code == 250, str(r)
    r = c.cmd("DATA")
    assert r.code == 354, str(r)
    body = data.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    c.send(body + b".\r\n")
    return c.reply()
