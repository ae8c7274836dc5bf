"""Shared test machinery: real SMTP peers on loopback, a guard subprocess, TLS, databases.

- `Sink`: an aiosmtpd upstream in a thread that records raw bytes and can be told to
  refuse recipients (451/550 by local part), delay or refuse DATA, or speak STARTTLS.
- `GuardProcess`: `guard serve` as a real subprocess with GUARD_* settings.
- `tls`: a trustme CA with a certificate for localhost / 127.0.0.1.
- `db_url`: SQLite in tmp_path, or the PostgreSQL on 127.0.0.1:5432 (database `test`;
  under pytest-xdist each worker has its own, `test_gw0`, `test_gw1`…, made on first use).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parent.parent
PASS_ALL = ROOT / "tests" / "data" / "pass-all.yaml"
EXAMPLE_POLICY = ROOT / "policies"
# the database the tests may empty at will (GUARD_TEST_PG_URL, else `test`)
BASE_PG_URL = os.environ.get("GUARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# pytest-xdist sets these in each worker before this module is imported
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"… ("" without -n)
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)


def _worker_pg_url(base: str, worker: str) -> str:
    """Each xdist worker empties a database of its own: the base one's name + `_gwN`."""
    if not worker:
        return base
    from sqlalchemy.engine import make_url

    url = make_url(base)
    return url.set(database=f"{url.database or 'test'}_{worker}").render_as_string(
        hide_password=False)


PG_URL = _worker_pg_url(BASE_PG_URL, XDIST_WORKER)


def _port_range() -> range:
    """Listening ports for the tests: below the kernel's ephemeral range, so that no
    outgoing connection (SMTP clients, database pools) takes a port between free_port()
    and the listener's bind; split between xdist workers so that they never pick the
    same one."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    first, last = 10000, min(low, 32768)
    if last - first < 1000:
        return range(0)  # an unusual machine: let the kernel choose (bind to port 0)
    n = int(XDIST_WORKER[2:]) if XDIST_WORKER[2:].isdigit() else 0
    size = (last - first) // max(XDIST_WORKERS, 1)
    return range(first + n * size, first + (n + 1) * size)


_PORTS = _port_range()
# a random start: two runs at once (two checkouts) rarely walk the same ports
_port_next = [random.randrange(len(_PORTS)) if _PORTS else 0]
_port_lock = threading.Lock()


def free_port() -> int:
    """A port nothing listens on now; not handed out again by this process until the
    whole range has been walked (the caller binds it later, often in a subprocess)."""
    with _port_lock:
        for _ in range(len(_PORTS)):
            port = _PORTS[_port_next[0] % len(_PORTS)]
            _port_next[0] += 1
            with socket.socket() as s:  # no SO_REUSEADDR: skips ports in TIME_WAIT too
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def wait_for(pred: Any, timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what or pred}")


# --- the upstream sink -----------------------------------------------------------------


@dataclass
class SinkMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]


@dataclass
class SinkBehaviour:
    # local part prefix → reply for RCPT, e.g. {"reject": "550 5.1.1 no such user"}
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str = ""  # e.g. "451 4.3.0 try later"; "" = 250
    data_delay: float = 0.0
    # the 250 itself; bytes are sent as they are (an upstream that is not UTF-8 clean)
    accept_reply: str | bytes = "250 2.0.0 stored"


class _SinkHandler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        local = address.split("@")[0]
        for prefix, reply in self.sink.behaviour.rcpt_replies.items():
            if local.startswith(prefix):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope
                          ) -> str | bytes:
        import asyncio

        b = self.sink.behaviour
        if b.data_delay:
            await asyncio.sleep(b.data_delay)
        if b.data_reply:
            return b.data_reply
        with self.sink.lock:
            mail_from = envelope.mail_from or ""
            self.sink.messages.append(SinkMessage(
                "" if mail_from == "<>" else mail_from, list(envelope.rcpt_tos),
                envelope.original_content or b"", list(envelope.mail_options)))
        return b.accept_reply


class Sink:
    """An upstream SMTP server on 127.0.0.1 in a thread (aiosmtpd Controller)."""

    def __init__(self, port: int | None = None, tls_context: Any = None) -> None:
        self.port = port or free_port()
        self.messages: list[SinkMessage] = []
        self.lock = threading.Lock()
        self.behaviour = SinkBehaviour()
        self.tls_context = tls_context
        self._controller: Controller | None = None

    def start(self) -> Sink:
        kw: dict[str, Any] = {}
        if self.tls_context is not None:
            kw = {"tls_context": self.tls_context, "require_starttls": True}
        self._controller = Controller(
            _SinkHandler(self), hostname="127.0.0.1", port=self.port,
            server_hostname="sink.localhost", decode_data=False,
            data_size_limit=200 * 1024 * 1024, **kw)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def wait_count(self, n: int, timeout: float = 15.0) -> list[SinkMessage]:
        wait_for(lambda: len(self.messages) >= n, timeout, what=f"{n} messages at the sink")
        return list(self.messages)


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink().start()
    yield s
    s.stop()


# --- TLS -------------------------------------------------------------------------------


@dataclass
class TlsFiles:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> Any:
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return ctx


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", "guard.localhost")
    ca_file = d / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file, key_file = d / "cert.pem", d / "key.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(cert_file), append=True)
    return TlsFiles(ca, ca_file, cert_file, key_file)


# --- databases -------------------------------------------------------------------------


def reset_postgres(url: str = PG_URL) -> None:
    """Drop the guard's tables in the test database (this xdist worker's own)."""
    import asyncio

    from sqlalchemy import text

    from guard.store import db

    async def go() -> None:
        engine = db.create_engine(url)
        async with engine.begin() as conn:
            # the database `test` is the tests' own: start from an empty schema
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(go())


def query_rows(url: str, stmt: Any) -> list[Any]:
    """Rows of one statement, read from the store at `url` (what a test checks)."""
    import asyncio

    from guard.store import db

    async def go() -> list[Any]:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                return list(await conn.execute(stmt))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def postgres_available() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), 1):
        return True
    return False


_pg_ready: list[str] = []


def _create_worker_database() -> None:
    """CREATE DATABASE this worker's one if missing (connected to the base database)."""
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from guard.store import db

    name = make_url(PG_URL).database

    async def go() -> None:
        admin = db.create_engine(BASE_PG_URL)
        try:
            async with admin.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                found = (await conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})).first()
                if not found:
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await admin.dispose()

    def in_thread() -> None:  # require_postgres() is also called from async fixtures
        failed: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(go())
            except BaseException as e:  # handed to the caller
                failed.append(e)

        t = threading.Thread(target=run)
        t.start()
        t.join()
        if failed:
            raise failed[0]

    # CREATE DATABASE copies template1 and refuses while another session is copying it
    # (other workers making theirs): a few tries, a moment apart
    for attempt in range(10):
        try:
            in_thread()
            return
        except Exception as e:  # the last one is raised below
            if "already exists" in str(e):
                return  # made at the same moment by another run of this checkout
            if attempt == 9:
                raise
            time.sleep(0.2 + random.random())


def require_postgres() -> str:
    """The test PostgreSQL URL; fails under CI=true when it does not answer, skips elsewhere.
    Under xdist, this worker's database, made on first use."""
    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is required in CI")
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    if PG_URL != BASE_PG_URL and not _pg_ready:
        _create_worker_database()
        _pg_ready.append(PG_URL)
    return PG_URL


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'guard.db'}"
    url = require_postgres()
    reset_postgres()
    return url


# --- the guard as a subprocess ---------------------------------------------------------


class GuardProcess:
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.smtp_port = int(env["GUARD_SMTP_LISTEN"].rsplit(":", 1)[1])
        self.web_port = int(env["GUARD_WEB_LISTEN"].rsplit(":", 1)[1])
        self.log_path = workdir / "guard.log"

    def start(self, wait: bool = True) -> GuardProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
        full_env.update(self.env)
        self.log = open(self.log_path, "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guard.cli", "serve"], cwd=self.workdir, env=full_env,
            stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            deadline = time.monotonic() + 30
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"guard exited {self.proc.returncode}:\n{self.logs()}")
                try:
                    wait_port(self.smtp_port, 0.2)
                    wait_port(self.web_port, 0.2)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self.log.close()
        return rc

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
        full_env.update(self.env)
        return subprocess.run([sys.executable, "-m", "guard.cli", *args], cwd=self.workdir,
                              env=full_env, capture_output=True, text=True, input=input,
                              timeout=60)

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


USER_PASSWORD = "correct horse battery staple"


@pytest.fixture
def guard_factory(tmp_path: Path, tls: TlsFiles) -> Iterator[Any]:
    """Make guard processes: guard_factory(upstream_url, db_url=None, **GUARD_* overrides).
    slow_readers=True: its extraction workers read attachments with the misbehaving
    readers of tests/inspect/slow_readers.py (through tests/slow_worker/sitecustomize.py)."""
    made: list[GuardProcess] = []
    users_file = tmp_path / "users.yaml"
    if not users_file.exists():
        from guard.users import add_user

        add_user(users_file, "alice", USER_PASSWORD, ["alice@example.co.jp"], "ja")
        add_user(users_file, "bob", USER_PASSWORD, ["bob@example.co.jp"], "en")

    def make(upstream: str, db_url: str | None = None, start: bool = True,
             slow_readers: bool = False, **overrides: str) -> GuardProcess:
        web = f"127.0.0.1:{free_port()}"
        env = {
            "GUARD_SMTP_LISTEN": f"127.0.0.1:{free_port()}",
            "GUARD_SMTP_MODE": "submission",
            "GUARD_WEB_LISTEN": web,
            "GUARD_BASE_URL": f"http://{web}",  # `guard serve` requires one; links open here
            "GUARD_UPSTREAM": upstream,
            "GUARD_DATABASE_URL": db_url or f"sqlite:///{tmp_path / 'guard.db'}",
            "GUARD_TLS_CERT": str(tls.cert_file),
            "GUARD_TLS_KEY": str(tls.key_file),
            "GUARD_USERS_FILE": str(users_file),
            "GUARD_HOSTNAME": "guard.localhost",
            "GUARD_SECRET_FILE": str(tmp_path / "guard.secret"),
            "GUARD_DELIVERY__MIN_BACKOFF": "1",
            "GUARD_DELIVERY__MAX_BACKOFF": "2",
            "GUARD_DELIVERY__POLL_INTERVAL": "0.2",
            "GUARD_LOG_LEVEL": "INFO",
            "GUARD_POLICY": str(PASS_ALL),
            "GUARD_INSPECT__WORKERS": "1",
        }
        env.update({k if k.startswith("GUARD_") else f"GUARD_{k.upper()}": v
                    for k, v in overrides.items()})
        if slow_readers:
            paths = [str(ROOT / "tests" / "slow_worker"), str(ROOT), os.environ.get("PYTHONPATH")]
            env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        g = GuardProcess(tmp_path, env)
        made.append(g)
        if start:
            g.start()
        return g

    yield make
    for g in made:
        g.stop()


def submit(port: int, tls: TlsFiles, mail_from: str, rcpts: list[str], data: bytes,
           user: str = "alice", password: str = USER_PASSWORD) -> Any:
    """smtplib client: EHLO, STARTTLS, AUTH, send. Returns the sendmail result dict."""
    import smtplib

    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.localhost", timeout=30) as s:
        s.starttls(context=tls.client_context())
        s.login(user, password)
        return s.sendmail(mail_from, rcpts, data)


def simple_message(subject: str = "test", body: str = "hello", sender: str =
                   "alice@example.co.jp", to: str = "bob@example.net") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.time_ns()}@example.co.jp>\r\n\r\n{body}\r\n").encode()


@pytest.fixture
def policy_test_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> Any:
    """`guard policy test MESSAGE --json --no-history --policy POLICY` in this process,
    in tmp_path with no configuration but a secret: the verdict document."""
    import json

    from guard.cli.main import main as guard_main

    monkeypatch.chdir(tmp_path)
    for name in ("GUARD_CONFIG", "GUARD_POLICY", "GUARD_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GUARD_SECRET", "k" * 43)

    def go(message: bytes, policy: Path | str) -> dict[str, Any]:
        (tmp_path / "m.eml").write_bytes(message)
        capsys.readouterr()
        rc = guard_main(["policy", "test", "m.eml", "--json", "--no-history",
                         "--policy", str(policy)])
        out = capsys.readouterr()
        assert rc == 0, out.err
        doc: dict[str, Any] = json.loads(out.out)
        return doc
    return go
