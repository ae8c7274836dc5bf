#!/usr/bin/env python3
"""Relay benchmark (issues "Core relay", 18): one command, one run, four paths, same harness.

    (a) smtp-source → smtp-sink                          the ceiling of this machine
    (b) smtp-source → bare_relay.py → smtp-sink          the floor: ~50 lines of aiosmtpd +
                                                         SQLite (WAL, FULL, commit before 250)
                                                         + pooled aiosmtplib delivery
    (p) smtp-source → Postfix 3.7 → smtp-sink            a private stock Postfix relay (Debian's
                                                         package, queue fsync'd), started here
    (c) smtp-source → `guard serve` → smtp-sink          the product, started as a user would

For every cell (message size × concurrent sessions) and path it measures:
  - accept msg/s: messages / time until smtp-source got its last 250;
  - e2e msg/s:    messages / time until the last message arrived at smtp-sink (drained),
                  counted from smtp-sink's own running counter (-c), not at the client;
  - time-to-250:  a sequential raw-socket probe timing end-of-data → final reply, idle
                  (after the drain) and under load (smtp-source -s N running again);
  - VmHWM of the relay process (peak RSS) and relay CPU ms per message (/proc/PID/stat).

Everything binds to 127.0.0.1, every child is killed by PID at the end (and gets SIGKILL
if this driver dies: PR_SET_PDEATHSIG), every wait is bounded. Each cell gets a fresh sink,
a fresh relay process and a fresh database in a temporary directory on the same disk as
/tmp (fsync is real there; do not point TMPDIR at a tmpfs).

    .venv/bin/python tests/bench/relay_bench.py --quick --rounds 3  # a b p c ×3, ~15 minutes
    .venv/bin/python tests/bench/relay_bench.py                    # full: ≥ 5 s per cell
    .venv/bin/python tests/bench/relay_bench.py --cells 4096x10 --rounds 3
    .venv/bin/python tests/bench/relay_bench.py --memory           # 20,000 msgs through c
    .venv/bin/python tests/bench/relay_bench.py --quick --uvloop --out results.json
    .venv/bin/python tests/bench/relay_bench.py --cells 4096x10 --variants c --profile prof/

See tests/bench/README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BARE = Path(__file__).resolve().parent / "bare_relay.py"
SMTP_SOURCE = shutil.which("smtp-source", path="/usr/sbin:/usr/bin") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink", path="/usr/sbin:/usr/bin") or "/usr/sbin/smtp-sink"
HOST = "127.0.0.1"
# The shipped example policy (policies/policy.yaml) treats example.co.jp as internal:
# internal mail passes after inspection. External mail to a domain nobody wrote to yet is
# delayed 5 minutes by its first-time-domain rule, so it would never drain here.
# (--mail-from / --rcpt-to / --policy change this.) Never use *.test or *.invalid: the
# guard's address normalisation refuses special-use domains.
FROM, TO = "sender@example.co.jp", "rcpt@example.co.jp"
KIB = 1024
MIB = 1024 * 1024

# messages per (path, size). quick: the issue's 2,000 at 4 KiB / 500 at 100 KiB.
# full: each cell lasts ≥ 5 s at the rates measured on the 2-core research VM
# (a ≈ 5-6.7k msg/s at 4 KiB and 1.4k at 100 KiB; relays ≈ 400-700 and 130-300).
QUICK = {("a", 4096): 2000, ("a", 102400): 500, ("b", 4096): 2000, ("b", 102400): 500,
         ("p", 4096): 2000, ("p", 102400): 1000, ("c", 4096): 2000, ("c", 102400): 1000}
FULL = {("a", 4096): 40000, ("a", 102400): 10000, ("b", 4096): 4000, ("b", 102400): 1200,
        ("p", 4096): 5000, ("p", 102400): 3000, ("c", 4096): 5000, ("c", 102400): 2000}
VARIANTS = ("a", "b", "p", "c")
SIZES = (4096, 102400)
SESSIONS = (10, 50)


# --------------------------------------------------------------------------- processes
def _die_with_parent() -> None:
    """Child side of fork: SIGKILL when the driver dies (Linux PR_SET_PDEATHSIG = 1)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def spawn(cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, preexec_fn=_die_with_parent, **kw)


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM,
         grace: float = 10.0) -> None:
    """End one child we started, by its PID: signal, bounded wait, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until an SMTP greeting comes from port (the process must stay alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on {HOST}:{port} within {timeout:.0f}s")


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS in KiB."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def threads(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/task"))
    return None


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    """Live child processes, recursively (the guard's forkserver and extraction workers)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                children.setdefault(int(st[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def proc_cpu(pid: int, tree: bool = False) -> float:
    """utime + stime of the process (all threads), plus live descendants if tree, plus
    (cutime + cstime) the children each of them has already reaped: Postfix's master
    reaps an smtpd after max_use sessions, and that CPU must not vanish; s."""
    total = 0.0
    for p in [pid, *(descendants(pid) if tree else [])]:
        st = _stat(p)
        if st:
            total += sum(int(x) for x in st[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def cpu_by_role(pid: int) -> dict[str, float]:
    """proc_cpu split by what each process of the guard's tree is: main (`guard serve`),
    front (the SMTP front, a spawned child) and workers (the extraction workers and their
    forkserver, which holds the CPU of workers it has reaped); s. Empty for Postfix."""
    out: dict[str, float] = {}
    for p in [pid, *descendants(pid)]:
        st = _stat(p)
        if not st:
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        role = ("main" if p == pid else "front" if b"spawn_main" in cmd
                else "workers" if b"forkserver" in cmd else "other")
        out[role] = out.get(role, 0.0) + sum(int(x) for x in st[11:15]) / os.sysconf(
            "SC_CLK_TCK")
    return out


def tree_pss_kib(pid: int) -> int:
    """Σ Pss (proportional set size: shared pages split between their users) over the
    process and its live descendants, now: what the tree really holds in memory, where
    Σ VmHWM counts Postfix's twenty processes' shared libraries twenty times."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError), open(f"/proc/{p}/smaps_rollup") as f:
            total += next((int(ln.split()[1]) for ln in f if ln.startswith("Pss:")), 0)
    return total


def tree_hwm_kib(pid: int) -> int:
    """Σ VmHWM over the process and its live descendants: an upper bound of the tree's
    peak RSS (shared pages are counted in every process)."""
    return sum(proc_status(p).get("VmHWM", 0) for p in [pid, *descendants(pid)])


# --------------------------------------------------------------------------- sink
class Sink:
    """smtp-sink with -c: its running counter ("sess=N quit=N mesg=N\\r") is parsed from
    stdout by a thread; `wait_for(n)` returns when n messages have arrived."""

    _MESG = re.compile(rb"mesg=(\d+)")

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        cmd = [SMTP_SINK, "-4", "-c", "-h", "sink.local", "-t", "60", "-m", "1000"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root without it
        self.proc = spawn([*cmd, f"{HOST}:{self.port}", "1024"], stdout=subprocess.PIPE,
                          stderr=open(tmp / "sink.err", "wb"))
        self.count = 0
        self._cond = threading.Condition()
        self._reached: list[tuple[int, float]] = []  # (target, time first seen ≥ target)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_listening(self.port, self.proc, 10)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        tail = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            now = time.perf_counter()
            if not chunk:
                with self._cond:
                    self._cond.notify_all()
                return
            found = self._MESG.findall(tail + chunk)
            tail = chunk[-32:]
            if found:
                with self._cond:
                    self.count = max(self.count, int(found[-1]))
                    self._reached.append((self.count, now))
                    if len(self._reached) > 4096:
                        del self._reached[:2048]
                    self._cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> float | None:
        """perf_counter() at which the counter first reached n, or None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.count < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self._cond.wait(min(left, 0.5))
            return next((t for c, t in self._reached if c >= n), time.perf_counter())

    def close(self) -> None:
        stop(self.proc)


# --------------------------------------------------------------------------- probe
def make_message(size: int, tag: str) -> bytes:
    head = (f"From: <{FROM}>\r\nTo: <{TO}>\r\nSubject: probe {tag}\r\n"
            f"Message-ID: <{tag}@probe.local>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\r\n"
    body = (line * (size // len(line) + 1))[:size]
    return head + body[: body.rfind(b"\r\n") + 2]


class _Reply(Exception):
    pass


def _reply(f: Any) -> bytes:
    while True:
        line = f.readline(2048)
        if not line:
            raise _Reply("connection closed")
        if len(line) < 4 or line[3:4] != b"-":
            return line


def probe_once(port: int, msg: bytes) -> tuple[float, float]:
    """One SMTP transaction on a fresh connection → (end-of-data→final reply, whole
    session connect→final reply), seconds. Raises on anything but 2xx/3xx."""
    t0 = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=30) as s:
        f = s.makefile("rb")
        for cmd, want in ((None, b"220"), (b"EHLO probe.local", b"250"),
                          (f"MAIL FROM:<{FROM}>".encode(), b"250"),
                          (f"RCPT TO:<{TO}>".encode(), b"250"), (b"DATA", b"354")):
            if cmd:
                s.sendall(cmd + b"\r\n")
            r = _reply(f)
            if not r.startswith(want):
                raise _Reply(r.decode(errors="replace").strip())
        s.sendall(msg + b".\r\n")
        t1 = time.perf_counter()
        r = _reply(f)
        t2 = time.perf_counter()
        if not r.startswith(b"250"):
            raise _Reply(r.decode(errors="replace").strip())
        with contextlib.suppress(OSError):
            s.sendall(b"QUIT\r\n")
    return t2 - t1, t2 - t0


@dataclass
class ProbeResult:
    eod: list[float] = field(default_factory=list)  # end-of-data → 250, s
    session: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {"n": len(self.eod), "p50_ms": pct(self.eod, 50), "p99_ms": pct(self.eod, 99),
                "max_ms": max(self.eod) * 1e3 if self.eod else None,
                "session_p50_ms": pct(self.session, 50),
                "session_p99_ms": pct(self.session, 99), "errors": dict(self.errors)}


def run_probe(port: int, size: int, n: int, max_seconds: float) -> ProbeResult:
    res = ProbeResult()
    deadline = time.monotonic() + max_seconds
    msg = make_message(size, "p")
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        try:
            eod, sess = probe_once(port, msg)
            res.eod.append(eod)
            res.session.append(sess)
        except (OSError, _Reply) as e:
            res.errors[str(e)[:80]] += 1
            time.sleep(0.01)
    return res


def pct(xs: list[float], p: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k] * 1e3


# --------------------------------------------------------------------------- load
def source_cmd(port: int, sessions: int, count: int, size: int, reuse: bool) -> list[str]:
    cmd = [SMTP_SOURCE, "-4", "-s", str(sessions), "-m", str(count), "-l", str(size),
           "-f", FROM, "-t", TO, "-M", "source.local"]
    if reuse:
        cmd.append("-d")
    return [*cmd, f"{HOST}:{port}"]


def run_source(port: int, sessions: int, count: int, size: int, reuse: bool,
               timeout: float, tmp: Path) -> tuple[float, int, str]:
    """smtp-source to completion → (wall seconds, exit code, stderr tail)."""
    err = tmp / "source.err"
    t0 = time.perf_counter()
    p = spawn(source_cmd(port, sessions, count, size, reuse), stdout=subprocess.DEVNULL,
              stderr=open(err, "wb"))
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(p, signal.SIGKILL)
        rc = -9
    wall = time.perf_counter() - t0
    return wall, rc, err.read_text(errors="replace")[-400:]


# --------------------------------------------------------------------------- relays
def guard_cmd() -> list[str]:
    exe = REPO / ".venv" / "bin" / "guard"
    if exe.exists():
        return [str(exe), "serve"]
    found = shutil.which("guard")
    return [found, "serve"] if found else [sys.executable, "-m", "guard.cli", "serve"]


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Relay:
    proc: Any  # subprocess.Popen, or PostfixMaster
    port: int
    log: Path
    web_port: int | None = None  # the guard's /metrics
    dropdb: str = ""  # a PostgreSQL database made for this relay, dropped at its stop


def guard_env(tmp: Path, port: int, web_port: int, sink_port: int, db_url: str
              ) -> dict[str, str]:
    """`guard serve`'s environment in a bench: a trusted loopback listener relaying to the
    sink, its secret and users file in `tmp`, none of the caller's GUARD_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env.update({
        "GUARD_SMTP_LISTEN": f"{HOST}:{port}",
        "GUARD_SMTP_MODE": "trusted",
        "GUARD_TRUSTED_NETWORKS": "127.0.0.0/8",
        "GUARD_UPSTREAM": f"smtp://{HOST}:{sink_port}",
        "GUARD_DATABASE_URL": db_url,
        "GUARD_WEB_LISTEN": f"{HOST}:{web_port}",
        "GUARD_BASE_URL": f"http://{HOST}:{web_port}",
        "GUARD_LOG_LEVEL": "WARNING",
        "GUARD_SECRET_FILE": str(tmp / "guard.secret"),
        "GUARD_USERS_FILE": str(tmp / "users.yaml"),
    })
    return env


def fresh_database(server_url: str, tmp: Path) -> tuple[str, str]:
    """A new empty PostgreSQL database on the server of `server_url` for one relay (the
    guard migrates it at start) → (its SQLAlchemy URL, the psql URL to drop it from)."""
    base, _, _ = server_url.rpartition("/")
    name = f"relay_bench_{os.getpid()}_{tmp.name.rsplit('-', 1)[-1].lower()}"
    name = re.sub(r"[^a-z0-9_]", "_", name)
    psql = base.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    subprocess.run(["psql", "-q", "-X", psql, "-c", f'CREATE DATABASE "{name}"'],
                   check=True, capture_output=True, timeout=60)
    return f"{base}/{name}", psql + f"\n{name}"


def start_relay(variant: str, tmp: Path, sink_port: int, use_uvloop: bool,
                policy: str = "", database: str = "") -> Relay:
    port = free_port()
    log = tmp / f"{variant}.log"
    web_port = None
    if variant == "p":
        pf = PostfixMaster(tmp, port, sink_port)
        try:
            wait_listening(port, pf, 30)  # type: ignore[arg-type]
        except Exception as e:
            pf.stop()
            raise RuntimeError(f"postfix did not start: {e}: "
                               f"{pf.log.read_text(errors='replace')[-800:]}") from e
        return Relay(pf, port, pf.log)
    dropdb = ""
    if variant == "b":
        cmd = [sys.executable, str(BARE), "--listen", f"{HOST}:{port}",
               "--upstream", f"{HOST}:{sink_port}", "--db", str(tmp / "bare.db")]
        if use_uvloop:
            cmd.append("--uvloop")
        env = dict(os.environ)
    else:
        cmd = guard_cmd()
        web_port = free_port()
        db_url = f"sqlite:///{tmp / 'guard.db'}"
        if database:  # --database: the same server, a fresh database per relay
            db_url, dropdb = fresh_database(database, tmp)
        env = guard_env(tmp, port, web_port, sink_port, db_url)
        if policy == "off":  # the relay alone: no inspection, no policy
            env["GUARD_INSPECT__ENABLED"] = "false"
        else:  # `guard serve` needs a policy: the shipped example unless told
            env["GUARD_POLICY"] = str(Path(policy or REPO / "policies").resolve())
    proc = spawn(cmd, cwd=tmp, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc, 60)
    except Exception as e:
        stop(proc)
        raise RuntimeError(f"{variant} did not start: {e}: "
                           f"{log.read_text(errors='replace')[-800:]}") from e
    return Relay(proc, port, log, web_port, dropdb)


POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin") or "/usr/sbin/postfix"
# Debian's master.cf.dist without chroot (the queue is in a temporary directory) and with
# the smtpd on the bench's port; only what a relay uses (no local delivery, no pickup of
# sendmail drops matters here, but master wants the standard services).
POSTFIX_MASTER_CF = """\
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixMaster:
    """A private Postfix instance (Debian's package, stock settings except what makes it
    a loopback relay to the sink) in `tmp`, shaped like a Popen for the driver: pid is the
    master daemon's (it daemonizes: `postfix start`), poll() is None while it lives.
    Queue files are fsync'd as always (Postfix has no switch for that)."""

    def __init__(self, tmp: Path, port: int, sink_port: int,
                 extra: dict[str, Any] | None = None) -> None:
        self.dir = tmp / "postfix"
        self.conf = self.dir / "etc"
        self.queue = self.dir / "spool"
        self.data = self.dir / "lib"
        for d in (self.conf, self.queue, self.data):
            d.mkdir(parents=True)
        # the postfix user must reach the queue through mkdtemp's 0700 directory
        for d in (tmp, self.dir, self.conf, self.queue):
            d.chmod(0o755)
        shutil.chown(self.data, "postfix", "postfix")
        self.log = self.dir / "maillog"
        settings = {
            "compatibility_level": "3.6",
            "config_directory": self.conf, "queue_directory": self.queue,
            "data_directory": self.data, "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "postfix-bench.local", "mydomain": "postfix-bench.local",
            "myorigin": "$myhostname", "inet_interfaces": HOST, "inet_protocols": "ipv4",
            "mydestination": "", "local_recipient_maps": "", "local_transport": "error:no local",
            "relay_domains": "", "relayhost": f"[{HOST}]:{sink_port}",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtpd_recipient_restrictions": "",
            "disable_dns_lookups": "yes", "smtp_host_lookup": "native",
            "smtpd_peername_lookup": "no", "biff": "no", "alias_maps": "",
            "alias_database": "", "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none", "message_size_limit": 64 * MIB,
            "maillog_file": self.log, "maillog_file_prefixes": tmp,
            "append_dot_mydomain": "no",
            **(extra or {}),
        }
        (self.conf / "main.cf").write_text(
            "".join(f"{k} = {v}\n" for k, v in settings.items()))
        (self.conf / "master.cf").write_text(POSTFIX_MASTER_CF.format(port=f"{HOST}:{port}"))
        self.returncode: int | None = None
        run = subprocess.run([POSTFIX, "-c", str(self.conf), "start"], capture_output=True,
                             text=True, timeout=60)
        if run.returncode != 0:  # (the postfix command logs to syslog, or a tty)
            logged = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"postfix start: {run.stdout} {run.stderr} {logged}"[-800:])
        pidfile = self.queue / "pid" / "master.pid"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                self.pid = int(pidfile.read_text().split()[0])
                if _stat(self.pid) is not None:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"no live postfix master after start ({pidfile})")

    def poll(self) -> int | None:
        st = _stat(self.pid)
        if st is None or st[0] in ("Z", "X"):
            self.returncode = self.returncode if self.returncode is not None else -1
            return self.returncode
        return None

    def stop(self) -> None:
        """`postfix stop`, a bounded wait for the master, then SIGKILL by its PID."""
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run([POSTFIX, "-c", str(self.conf), "stop"], capture_output=True,
                           timeout=30)
        tree = descendants(self.pid)
        deadline = time.monotonic() + 10
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in [self.pid, *tree]:
            with contextlib.suppress(ProcessLookupError):
                if _stat(pid) is not None:
                    os.kill(pid, signal.SIGKILL)


def stop_relay(relay: Relay) -> None:
    """SIGTERM the relay (the guard shuts down its workers), then end by PID whatever of
    its process tree is still alive."""
    if isinstance(relay.proc, PostfixMaster):
        relay.proc.stop()
        return
    tree = descendants(relay.proc.pid)
    stop(relay.proc, signal.SIGTERM, grace=15)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    for pid in tree:
        while _stat(pid) is not None and _stat(pid)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
    if relay.dropdb:
        psql, _, name = relay.dropdb.partition("\n")
        subprocess.run(["psql", "-q", "-X", psql, "-c", f'DROP DATABASE IF EXISTS "{name}"'],
                       capture_output=True, timeout=60)
        with contextlib.suppress(ProcessLookupError):
            if _stat(pid) is not None:
                os.kill(pid, signal.SIGKILL)


_METRIC = re.compile(
    r"^(guard_[a-z_]+?)(_bucket|_sum|_count|_total)?(\{[^}]*\})? ([0-9.e+-]+|NaN)$")


def guard_metrics(web_port: int) -> dict[str, Any]:
    """A few of the guard's own numbers from /metrics: commit latency behind the 250 and
    operations per write transaction (group commit)."""
    try:
        with socket.create_connection((HOST, web_port), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
    except OSError as e:
        return {"error": str(e)}
    vals: dict[str, float] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for ln in raw.decode(errors="replace").splitlines():
        m = _METRIC.match(ln)
        if not m:
            continue
        name, suffix, labels, v = m.group(1), m.group(2) or "", m.group(3) or "", m.group(4)
        if suffix == "_bucket":
            le = re.search(r'le="([^"]+)"', labels)
            if le:
                buckets.setdefault(name, []).append((float(le.group(1)), float(v)))
        else:
            key = name + suffix + labels
            vals[key] = vals.get(key, 0.0) + float(v)
    out: dict[str, Any] = {}
    for name, label in (("guard_accept_commit_seconds", "accept_commit_ms"),
                        ("guard_db_batch_operations", "db_batch_ops")):
        n, total = vals.get(name + "_count", 0.0), vals.get(name + "_sum", 0.0)
        if not n:
            continue
        scale = 1e3 if name.endswith("_seconds") else 1.0
        out[label] = {"count": n, "mean": total / n * scale}
        bs = sorted(buckets.get(name, []))
        for q in (50, 99):  # upper bound of the bucket holding the percentile
            le = next((b for b, c in bs if c >= n * q / 100), None)
            out[label][f"p{q}_le"] = le * scale if le not in (None, float("inf")) else None
    return out


def log_problems(log: Path) -> int:
    """Lines at WARNING or above in a relay's log (the guard runs at GUARD_LOG_LEVEL=WARNING;
    Postfix's maillog: warning/error/fatal/panic, mail deferred or bounced)."""
    return len(log_problem_lines(log))


def log_problem_lines(log: Path) -> list[str]:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines()
            if re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b"
                         r"|\b(warning|error|fatal|panic):|status=(deferred|bounced)", ln)]


# --------------------------------------------------------------------------- one cell
@dataclass
class Opts:
    quick: bool
    reuse: bool
    use_uvloop: bool
    idle_n: int
    load_n: int
    load_seconds: float
    profile: Path | None
    profile_gil: bool = False
    policy: str = ""
    database: str = ""  # --database: (c) on this PostgreSQL server instead of SQLite
    loaded_sessions: int = 10  # --quick probes under load only at this concurrency


def run_cell(variant: str, size: int, sessions: int, count: int, o: Opts) -> dict[str, Any]:
    label = {"a": "a direct", "b": "b bare", "p": "p postfix", "c": "c guard"}[variant]
    r: dict[str, Any] = {"variant": variant, "size": size, "sessions": sessions,
                         "messages": count, "problems": [], "loadavg_start": os.getloadavg()}
    if variant == "b":
        r["loop"] = "uvloop" if o.use_uvloop else "asyncio"
    elif variant == "c":
        r["loop"] = "uvloop" if has_uvloop() else "asyncio"  # guard.cli picks uvloop if present
    tmp = Path(tempfile.mkdtemp(prefix=f"relay-bench-{variant}-"))
    sink = relay = spy = None
    cell_started = time.monotonic()
    try:
        sink = Sink(tmp)
        target_port, pid = sink.port, None
        if variant != "a":
            relay = start_relay(variant, tmp, sink.port, o.use_uvloop, o.policy, o.database)
            target_port, pid = relay.port, relay.proc.pid
            # warm-up, and proof that the path works end to end before timing anything
            warm = run_probe(target_port, size, 20, 30)
            if warm.errors or sink.wait_for(len(warm.eod), 30) is None:
                raise RuntimeError(f"warm-up failed: {dict(warm.errors)}, sink={sink.count}")
        base = sink.count
        if o.profile and pid and variant == "c":
            o.profile.mkdir(parents=True, exist_ok=True)
            out = o.profile / f"guard-{size // KIB}k-s{sessions}.txt"
            gil = ["--gil"] if o.profile_gil else []
            spy = spawn([str(REPO / ".venv" / "bin" / "py-spy"), "record", "--format", "raw",
                         # --subprocesses: the extraction workers inspect every message
                         # > 16 KiB; at 100 KiB they, not the main process, are the limit
                         "--rate", "200", "--nonblocking", "--threads", "--subprocesses",
                         *gil, "-p", str(pid),
                         "-o", str(out)], stdout=subprocess.DEVNULL,
                        stderr=open(tmp / "py-spy.err", "wb"))
            time.sleep(1.0)
            r["profile"] = str(out)
        cpu0 = proc_cpu(pid, tree=True) if pid else None
        roles0 = cpu_by_role(pid) if pid and variant == "c" else {}

        # 1. throughput: smtp-source alone, then wait until the sink has everything
        t0 = time.perf_counter()
        wall, rc, err = run_source(target_port, sessions, count, size, o.reuse,
                                   timeout=600, tmp=tmp)
        if rc != 0:
            r["problems"].append(f"smtp-source exit {rc}: {err.strip()[-200:]}")
        t_done = sink.wait_for(base + count, timeout=max(120.0, wall * 5))
        r["accept_s"] = wall
        r["accept_rate"] = count / wall
        if t_done is None:
            r["problems"].append(f"not drained: sink has {sink.count - base} of {count}")
            r["e2e_rate"] = None
        else:
            r["e2e_s"] = t_done - t0
            r["e2e_rate"] = count / (t_done - t0)
        if pid:
            cpu1 = proc_cpu(pid, tree=True)
            r["cpu_ms_per_msg"] = (cpu1 - cpu0) / count * 1e3 if cpu0 is not None else None
            if cpu0 is not None and r.get("e2e_s"):
                r["cores"] = (cpu1 - cpu0) / r["e2e_s"]  # of this machine's, on average
            if variant == "c":
                roles1 = cpu_by_role(pid)
                r["cpu_ms_per_msg_by_process"] = {
                    k: (v - roles0.get(k, 0.0)) / count * 1e3 for k, v in roles1.items()}
            r["mem_after_load"] = proc_status(pid)
            r["tree_hwm_mib"] = tree_hwm_kib(pid) / KIB
            r["tree_pss_mib"] = tree_pss_kib(pid) / KIB
            r["processes"] = 1 + len(descendants(pid))
            r["threads_after_load"] = threads(pid)
        if relay is not None and relay.web_port:
            r["guard_metrics"] = guard_metrics(relay.web_port)
        if spy is not None:
            stop(spy, signal.SIGINT, grace=30)
            spy = None

        # 2. time-to-250 idle (after the drain), 3. under load (smtp-source -s N again)
        r["idle"] = run_probe(target_port, size, o.idle_n, 20).summary()
        if variant != "a" and (not o.quick or sessions == o.loaded_sessions):
            bg = spawn(source_cmd(target_port, sessions, 10_000_000, size, o.reuse),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(0.5)  # let the sessions ramp up
                r["loaded"] = run_probe(target_port, size, o.load_n,
                                        o.load_seconds).summary()
            finally:
                stop(bg, signal.SIGKILL)
        if variant != "a":
            r["mem_end"] = proc_status(pid) if pid else {}
            if relay is not None and relay.proc.poll() is not None:
                r["problems"].append(f"relay exited with {relay.proc.returncode}")
            lines = log_problem_lines(relay.log) if relay is not None else []
            if lines:
                r["problems"].append(f"{len(lines)} warning/error lines in {variant}'s log")
                r["log_problem_lines"] = lines[:10]
        for phase in ("idle", "loaded"):
            if (r.get(phase) or {}).get("errors"):
                r["problems"].append(f"{phase} probe errors: {r[phase]['errors']}")
        r["loadavg_end"] = os.getloadavg()
        hwm = (r.get("mem_after_load") or {}).get("VmHWM")
        r["vmhwm_mib"] = hwm / KIB if hwm else None
        print(f"  {label:9} {size // KIB:>4} KiB s={sessions:<3} m={count:<6} "
              f"accept {r['accept_rate']:7.0f}/s  e2e {fmt(r['e2e_rate'], '7.0f')}/s  "
              f"t250 idle {fmt(r['idle']['p50_ms'], '.1f')}/{fmt(r['idle']['p99_ms'], '.1f')} ms"
              + (f"  loaded {fmt(r['loaded']['p50_ms'], '.1f')}/"
                 f"{fmt(r['loaded']['p99_ms'], '.1f')} ms (n={r['loaded']['n']})"
                 if "loaded" in r else "")
              + (f"  HWM {r['vmhwm_mib']:.0f} MiB  cpu {r['cpu_ms_per_msg']:.2f} ms/msg"
                 if r.get("vmhwm_mib") else "")
              + (f" (cores {r['cores']:.2f}" if r.get("cores") else "")
              + ("; " + ", ".join(f"{k} {v:.2f}" for k, v in
                                  r["cpu_ms_per_msg_by_process"].items())
                 if r.get("cpu_ms_per_msg_by_process") else "")
              + (")" if r.get("cores") else "")
              + (f"  PROBLEMS: {r['problems']}" if r["problems"] else ""), flush=True)
        return r
    except Exception as e:  # one broken cell must not lose the others
        r["problems"].append(f"{type(e).__name__}: {e}")
        r.setdefault("e2e_rate", None)
        print(f"  {label} {size // KIB} KiB s={sessions}: FAILED {e}", flush=True)
        if relay is not None:
            with contextlib.suppress(OSError):
                print("    " + relay.log.read_text(errors="replace")[-1500:].replace(
                    "\n", "\n    "), flush=True)
        return r
    finally:
        stop(spy, signal.SIGINT, grace=30)
        if relay is not None:
            t_stop = time.monotonic()
            stop_relay(relay)
            r["stop_s"] = round(time.monotonic() - t_stop, 2)
            if r["problems"]:
                with contextlib.suppress(OSError):
                    r["log_tail"] = relay.log.read_text(errors="replace")[-2000:]
        if sink is not None:
            sink.close()
        shutil.rmtree(tmp, ignore_errors=True)
        r["cell_s"] = round(time.monotonic() - cell_started, 1)


def fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


# --------------------------------------------------------------------------- memory
def run_memory(n: int, size: int, sessions: int, o: Opts) -> dict[str, Any]:
    """n messages through the guard in one smtp-source run; RSS/HWM sampled every second."""
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-mem-"))
    sink = relay = None
    samples: list[dict[str, Any]] = []
    try:
        sink = Sink(tmp)
        relay = start_relay("c", tmp, sink.port, o.use_uvloop, o.policy, o.database)
        port = relay.port
        warm = run_probe(port, size, 20, 30)
        if warm.errors or sink.wait_for(len(warm.eod), 30) is None:
            raise RuntimeError(f"warm-up failed: {dict(warm.errors)}")
        base = sink.count
        t0 = time.perf_counter()
        src = spawn(source_cmd(port, sessions, n, size, o.reuse), stdout=subprocess.DEVNULL,
                    stderr=open(tmp / "source.err", "wb"))
        deadline = time.monotonic() + max(600.0, n / 20)
        drained = None
        try:
            while time.monotonic() < deadline:
                st = proc_status(relay.proc.pid)
                # the SMTP front processes and extraction workers too (their own memory)
                tree = sum(proc_status(p).get("VmRSS", 0) for p in descendants(relay.proc.pid))
                samples.append({"t": round(time.perf_counter() - t0, 2),
                                "delivered": sink.count - base,
                                "rss_mib": st.get("VmRSS", 0) / KIB,
                                "hwm_mib": st.get("VmHWM", 0) / KIB,
                                "children_rss_mib": tree / KIB})
                if sink.count - base >= n:
                    drained = time.perf_counter() - t0
                    break
                if relay.proc.poll() is not None:
                    break
                if len(samples) % 30 == 0:
                    print(f"  {samples[-1]}", flush=True)
                time.sleep(1.0)
        finally:
            stop(src, signal.SIGKILL)
        st = proc_status(relay.proc.pid)
        out: dict[str, Any] = {"messages": n, "size": size, "sessions": sessions,
                               "drained_s": drained, "samples": samples,
                               "final_rss_mib": st.get("VmRSS", 0) / KIB,
                               "final_hwm_mib": st.get("VmHWM", 0) / KIB,
                               "log_problems": log_problems(relay.log),
                               "guard_metrics": guard_metrics(relay.web_port or 0)}
        if drained:
            out["e2e_rate"] = n / drained
        out.update(flatness(samples, n))
        return out
    finally:
        if relay is not None:
            stop_relay(relay)
        if sink is not None:
            sink.close()
        shutil.rmtree(tmp, ignore_errors=True)


def flatness(samples: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """RSS once 25 % of the messages were through vs the end, and the least-squares slope
    of RSS over delivered messages from there on (MiB per 10k messages; flat ≈ 0)."""
    after = [s for s in samples if s["delivered"] >= n * 0.25]
    if len(after) < 3:
        return {}
    xs = [s["delivered"] for s in after]
    ys = [s["rss_mib"] for s in after]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return {"rss_at_25pct_mib": ys[0], "rss_end_mib": ys[-1], "rss_max_mib": max(ys),
            "hwm_at_25pct_mib": after[0]["hwm_mib"], "hwm_end_mib": after[-1]["hwm_mib"],
            "rss_slope_mib_per_10k": slope * 10000,
            "children_rss_at_25pct_mib": after[0].get("children_rss_mib"),
            "children_rss_end_mib": after[-1].get("children_rss_mib")}


# --------------------------------------------------------------------------- profile
def summarize_profile(path: Path, top: int = 25) -> str:
    """py-spy raw (collapsed) stacks → self and inclusive % per function."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no profile at {path})"
    for ln in lines:
        stack, _, n = ln.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        frames = stack.split(";")
        total += k
        # with --subprocesses a child's stack starts "process MAIN;…process CHILD:CMDLINE;
        # thread (TID): NAME;frames…": label the samples main / spawn (the SMTP front) /
        # forkserver (extraction workers), by thread
        procs = [f for f in frames if f.startswith("process ")]
        proc = "" if not procs else "main " if len(procs) == 1 else (
            "forkserver " if "forkserver" in procs[-1] else "spawn ")
        thread = next((f for f in frames if f.startswith("thread (")), frames[0])
        threads[proc + re.sub(r"thread \(\d+\): |-\d+", "", thread)] += k
        names = [re.sub(r" \((.*?)/(site-packages|lib/python3\.\d+|main)/", r" (", f)
                 for f in frames[1:]
                 if not f.startswith(("process ", "thread (", " main(", "<module> (<string>)"))]
        names = [re.sub(r":\d+\)$", ")", f) for f in names]  # per function, not per line
        if names:
            own[names[-1]] += k
        for f in set(names):
            incl[f] += k
    if not total:
        return "(empty profile)"
    out = [f"{total} samples; by thread: "
           + ", ".join(f"{t} {c / total:.0%}" for t, c in threads.most_common(5)),
           "self %   function"]
    out += [f"{c / total:6.1%}  {f}" for f, c in own.most_common(top)]
    out += ["incl %   function"]
    out += [f"{c / total:6.1%}  {f}" for f, c in incl.most_common(top)]
    return "\n".join(out)


# --------------------------------------------------------------------------- report
def median(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return statistics.median(v) if v else None


def rng(xs: list[float | None], spec: str = ".0f") -> str:
    v = [x for x in xs if x is not None]
    return "" if len(v) < 2 else f" [{min(v):{spec}}–{max(v):{spec}}]"


def table(results: list[dict[str, Any]], cells: list[tuple[int, int]], variants: list[str]
          ) -> str:
    names = {"a": "a: smtp-source → smtp-sink", "b": "b: bare relay (floor)",
             "p": "p: Postfix 3.7 relay", "c": "c: guard serve"}
    rows = ["| size | sessions | path | msgs | accept msg/s | **e2e msg/s** | "
            "t250 idle p50 / p99 ms | t250 loaded p50 / p99 ms | VmHWM MiB | CPU ms/msg | "
            "problems |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    ratio_rows = ["| size | sessions | a e2e msg/s | b e2e msg/s | p e2e msg/s | c e2e msg/s | "
                  "**c/p** | c/b | c/a | CPU ms/msg b / p / c | Σ VmHWM MiB p / c | "
                  "Σ PSS MiB p / c |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lat_rows = ["| size | sessions | path | t250 loaded p50 / p99 ms | t250 idle p50 / p99 ms |",
                "|---|---|---|---|---|"]
    for size, sess in cells:
        e2e: dict[str, float | None] = {}
        for v in variants:
            rs = [r for r in results if (r["variant"], r["size"], r["sessions"]) == (v, size, sess)]
            if not rs:
                continue

            def col(key: str, sub: str | None = None, rs: list[dict[str, Any]] = rs
                    ) -> list[float | None]:
                return [(r.get(key) or {}).get(sub) if sub else r.get(key) for r in rs]

            e2e[v] = median(col("e2e_rate"))
            loop = f" ({rs[0]['loop']})" if rs[0].get("loop") else ""
            loaded = (f"{fmt(median(col('loaded', 'p50_ms')), '.1f')} / "
                      f"{fmt(median(col('loaded', 'p99_ms')), '.1f')}" if v != "a" else "–")
            probs = sum(len(r["problems"]) for r in rs)
            rows.append(
                f"| {size // KIB} KiB | {sess} | {names[v]}{loop} | {rs[0]['messages']}"
                f"{' ×' + str(len(rs)) if len(rs) > 1 else ''} | "
                f"{fmt(median(col('accept_rate')), '.0f')}{rng(col('accept_rate'))} | "
                f"**{fmt(e2e[v], '.0f')}**{rng(col('e2e_rate'))} | "
                f"{fmt(median(col('idle', 'p50_ms')), '.1f')} / "
                f"{fmt(median(col('idle', 'p99_ms')), '.1f')} | {loaded} | "
                f"{fmt(median(col('vmhwm_mib')), '.0f')}"
                f"{tree_note(col('tree_hwm_mib'), col('vmhwm_mib'))} | "
                f"{fmt(median(col('cpu_ms_per_msg')), '.2f')} | {probs or ''} |")

        cell = [r for r in results if (r["size"], r["sessions"]) == (size, sess)]

        def ratio(x: str, y: str, cell: list[dict[str, Any]] = cell) -> str:
            """Median of the per-round ratios (paths of one round ran back to back), with
            their min–max."""
            rounds: dict[int, dict[str, float | None]] = {}
            for r in cell:
                rounds.setdefault(r.get("round", 0), {})[r["variant"]] = r.get("e2e_rate")
            rs = [d[x] / d[y] for d in rounds.values() if d.get(x) and d.get(y)]  # type: ignore[operator]
            return (f"{statistics.median(rs):.2f}{rng(list(rs), '.2f')}" if rs else "–")

        def med(v: str, key: str, cell: list[dict[str, Any]] = cell) -> float | None:
            return median([r.get(key) for r in cell if r["variant"] == v])

        ratio_rows.append(
            f"| {size // KIB} KiB | {sess} | {fmt(e2e.get('a'), '.0f')} | "
            f"{fmt(e2e.get('b'), '.0f')} | {fmt(e2e.get('p'), '.0f')} | "
            f"{fmt(e2e.get('c'), '.0f')} | **{ratio('c', 'p')}** | {ratio('c', 'b')} | "
            f"{ratio('c', 'a')} | {fmt(med('b', 'cpu_ms_per_msg'), '.2f')} / "
            f"{fmt(med('p', 'cpu_ms_per_msg'), '.2f')} / {fmt(med('c', 'cpu_ms_per_msg'), '.2f')}"
            f" | {fmt(med('p', 'tree_hwm_mib'), '.0f')} / {fmt(med('c', 'tree_hwm_mib'), '.0f')}"
            f" | {fmt(med('p', 'tree_pss_mib'), '.0f')} / {fmt(med('c', 'tree_pss_mib'), '.0f')} |")
        for v in variants:
            vs = [r for r in cell if r["variant"] == v]
            if v == "a" or not vs:
                continue

            def q(phase: str, vs: list[dict[str, Any]] = vs) -> str:
                p50 = median([(r.get(phase) or {}).get("p50_ms") for r in vs])
                p99s = [(r.get(phase) or {}).get("p99_ms") for r in vs]
                if p50 is None:
                    return "–"
                return f"{p50:.1f} / {fmt(median(p99s), '.1f')}{rng(p99s, '.1f')}"
            lat_rows.append(f"| {size // KIB} KiB | {sess} | {names[v]} | {q('loaded')} | "
                            f"{q('idle')} |")
    return ("\n".join(rows) + "\n\n" + "\n".join(ratio_rows) + "\n\n"
            + "\n".join(lat_rows))


def tree_note(tree: list[float | None], main: list[float | None]) -> str:
    t, m = median(tree), median(main)
    return f" (Σ tree {t:.0f})" if t and m and t > m + 1 else ""


def git_state() -> dict[str, Any]:
    """Which guard code was measured (read-only git commands)."""
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"head": run("rev-parse", "--short", "HEAD"),
            "guard_dirty": bool(run("status", "--porcelain", "--", "guard"))}


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                    if ln.startswith("model name")), "")
    with contextlib.suppress(OSError):
        mem = next(int(ln.split()[1]) for ln in open("/proc/meminfo")
                   if ln.startswith("MemTotal"))
    versions = {}
    for mod in ("aiosmtpd", "aiosmtplib", "sqlalchemy", "aiosqlite", "uvloop"):
        with contextlib.suppress(Exception):
            versions[mod] = __import__(mod).__version__
    import sqlite3
    versions["sqlite"] = sqlite3.sqlite_version
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "mem_gib": round(mem / MIB, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_start": os.getloadavg(), **versions}


def parse_cells(spec: str) -> list[tuple[int, int]]:
    out = []
    for part in spec.split(","):
        size, _, sess = part.strip().lower().partition("x")
        n = int(size.rstrip("k")) * (KIB if size.endswith("k") else 1)
        out.append((n if n >= KIB else n * KIB, int(sess)))  # "4096x10", "4kx10", "100x50"
    return out


def main(argv: list[str] | None = None) -> int:
    global FROM, TO
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="2,000 msgs at 4 KiB / 500 at 100 KiB per cell (3-4 min today)")
    p.add_argument("--cells", default="",
                   help="size×sessions, comma separated (default 4096x10,4096x50,"
                        "102400x10,102400x50; '4kx10' works too)")
    p.add_argument("--variants", default="a,b,p,c",
                   help="subset of a,b,p,c (p: a private Postfix relay), run in this order")
    p.add_argument("--messages", type=int, default=0, help="override messages per cell")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat each cell, interleaved a b c a b c …; medians are reported")
    p.add_argument("--uvloop", action="store_true",
                   help="run (b) under uvloop (the guard uses uvloop whenever it is installed)")
    p.add_argument("--reuse", action="store_true",
                   help="smtp-source -d: many messages per connection (default: one each)")
    p.add_argument("--memory", action="store_true",
                   help="only the memory run: --memory-messages through (c), RSS every second")
    p.add_argument("--memory-messages", type=int, default=20000)
    p.add_argument("--profile", type=Path, default=None,
                   help="directory: record the guard with py-spy during its throughput phase")
    p.add_argument("--profile-gil", action="store_true",
                   help="with --profile: only samples holding the GIL (py-spy --gil)")
    p.add_argument("--policy", default="",
                   help="GUARD_POLICY for (c) (default: the shipped example policy); "
                   "'off' runs (c) with inspection off (the relay's own cost)")
    p.add_argument("--database", default="",
                   help="(c) on PostgreSQL: a server URL such as postgresql+asyncpg://"
                   "postgres@127.0.0.1:5432/test; each relay gets a fresh database there, "
                   "dropped after (default: SQLite FULL in the cell's directory)")
    p.add_argument("--mail-from", default=FROM, help=f"envelope sender (default {FROM})")
    p.add_argument("--rcpt-to", default=TO, help=f"recipient (default {TO})")
    p.add_argument("--out", type=Path, default=None, help="write JSON results here")
    a = p.parse_args(argv)
    FROM, TO = a.mail_from, a.rcpt_to

    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not os.access(tool, os.X_OK):
            p.error(f"{tool} not found: apt-get install postfix (the daemon is not needed)")
    variants = [v for v in a.variants.split(",") if v in VARIANTS]
    cells = parse_cells(a.cells) if a.cells else [(s, n) for s in SIZES for n in SESSIONS]
    o = Opts(quick=a.quick, reuse=a.reuse, use_uvloop=a.uvloop,
             idle_n=100 if a.quick else 400, load_n=400,
             load_seconds=5.0 if a.quick else 15.0, profile=a.profile,
             profile_gil=a.profile_gil, policy=a.policy, database=a.database,
             loaded_sessions=min(n for _, n in cells))
    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
            "git": git_state(),
            "mode": "memory" if a.memory else ("quick" if a.quick else "full"),
            "argv": sys.argv[1:], "reuse_connections": a.reuse, "mail_from": FROM,
            "rcpt_to": TO, "policy": a.policy or "shipped (policies/)",
            "database": a.database or "sqlite (synchronous=FULL)"}
    print(f"# relay bench, {info['mode']} mode, {info['date']}, git {info['git']['head']}"
          f"{' (guard/ modified)' if info['git']['guard_dirty'] else ''}, "
          f"{info['machine']['cpus']} CPUs "
          f"({info['machine']['cpu_model']}), load {info['machine']['loadavg_start']}"
          f"{', guard on PostgreSQL' if a.database else ''}",
          flush=True)
    started = time.monotonic()

    if a.memory:
        size, sess = cells[0] if a.cells else (4096, 10)
        mem = run_memory(a.memory_messages, size, sess, o)
        info["memory"] = mem
        marks = [s for i, s in enumerate(mem["samples"])
                 if i % max(1, len(mem["samples"]) // 12) == 0] + mem["samples"][-1:]
        print("| t s | delivered | VmRSS MiB | VmHWM MiB | children VmRSS MiB |\n"
              "|---|---|---|---|---|")
        for s in marks:
            print(f"| {s['t']:.0f} | {s['delivered']} | {s['rss_mib']:.1f} | "
                  f"{s['hwm_mib']:.1f} | {s.get('children_rss_mib', 0):.1f} |")
        print(f"\ndrained {mem['messages']} in {fmt(mem.get('drained_s'), '.1f')} s "
              f"({fmt(mem.get('e2e_rate'), '.0f')} msg/s). After 25 % of the messages: RSS "
              f"{fmt(mem.get('rss_at_25pct_mib'), '.1f')} → {fmt(mem.get('rss_end_mib'), '.1f')}"
              f" MiB (max {fmt(mem.get('rss_max_mib'), '.1f')}), slope "
              f"{fmt(mem.get('rss_slope_mib_per_10k'), '+.2f')} MiB per 10k msgs; VmHWM "
              f"{fmt(mem.get('hwm_at_25pct_mib'), '.1f')} → {fmt(mem.get('hwm_end_mib'), '.1f')}"
              f" MiB; child processes' RSS {fmt(mem.get('children_rss_at_25pct_mib'), '.1f')}"
              f" → {fmt(mem.get('children_rss_end_mib'), '.1f')} MiB"
              f"; log problems {mem['log_problems']}; guard metrics "
              f"{mem.get('guard_metrics')}")
    else:
        results = []
        for size, sess in cells:
            for rnd in range(a.rounds):
                for v in variants:
                    count = a.messages or (QUICK if a.quick else FULL)[(v, size)]
                    results.append(run_cell(v, size, sess, count, o) | {"round": rnd})
        info["results"] = results
        md = table(results, cells, variants)
        info["table_md"] = md
        print("\n" + md)
        if a.profile:
            for r in results:
                if r.get("profile"):
                    print(f"\n## profile {r['profile']}\n```\n"
                          f"{summarize_profile(Path(r['profile']))}\n```")
    info["elapsed_s"] = round(time.monotonic() - started, 1)
    print(f"\n(elapsed {info['elapsed_s']} s)")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(info, indent=1, default=str))
        print(f"results written to {a.out}")
    failed = any(r["problems"] for r in info.get("results", []))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
