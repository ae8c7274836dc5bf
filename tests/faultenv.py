"""Environments that fail on purpose: a PostgreSQL cluster of the test's own that can be
frozen (SIGSTOP), stopped and started, and a small tmpfs that fills up.

Both need root (mount) or the PostgreSQL server binaries; where they are missing the
test skips, except under CI=true where it fails: CI runs as root with PostgreSQL
installed, so a skip there would hide a test that should have run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port


def unavailable(why: str) -> None:
    """Skip locally, fail in CI (where everything the fault tests need is installed)."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {why}")
    pytest.skip(why)


def _children(pid: int) -> list[int]:
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.split("/")[2]))
    return out


class PgCluster:
    """initdb + postgres on 127.0.0.1:<free port>, run as the `postgres` user, in a temp
    directory; `freeze()` stops the postmaster and every backend with SIGSTOP (a server
    that does not answer, not one that is down)."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            unavailable("PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        if os.geteuid() != 0:
            unavailable("root (to run the test cluster as the postgres user)")
        try:
            self._user = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("a `postgres` system user")
        self.bin = Path(bins[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="guard-pg-"))
        os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--no-sync"])

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _demote(self) -> None:
        os.setgid(self._user.pw_gid)
        os.setuid(self._user.pw_uid)

    def _run(self, cmd: list[str]) -> None:
        subprocess.run(cmd, check=True, preexec_fn=self._demote, cwd=self.dir,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> PgCluster:
        log = open(self.dir / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", "fsync=on", "-c", "max_connections=60"],
            preexec_fn=self._demote, cwd=self.dir, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("test PostgreSQL exited:\n" + self.logs())
            r = subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1",
                                "-p", str(self.port)], check=False)
            if r.returncode == 0:
                return self
            time.sleep(0.1)
        raise TimeoutError("test PostgreSQL did not start:\n" + self.logs())

    def logs(self) -> str:
        p = self.dir / "postgres.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def _pids(self) -> list[int]:
        if self.proc is None:
            return []
        return [self.proc.pid, *_children(self.proc.pid)]

    def freeze(self) -> None:
        """The server stops answering: postmaster first (no new backends), then every
        backend; connections stay open and TCP still accepts."""
        self.frozen = True
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        """Fast shutdown (like `pg_ctl stop -m fast`): clients are disconnected."""
        if self.proc is None:
            return
        if self.frozen:
            self.thaw()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def psql(self, sql: str) -> str:
        r = subprocess.run([str(self.bin / "psql"), "-X", "-A", "-t", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                            "-v", "ON_ERROR_STOP=1", "-c", sql],
                           check=True, capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        for pid in self._pids():  # anything left behind (a backend of a killed postmaster)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def running_pg_cluster() -> Iterator[PgCluster]:
    c = PgCluster()
    try:
        yield c.start()
    finally:
        c.destroy()


class SmallFs:
    """A tmpfs of `size` bytes mounted on a temp directory; `fill()` takes every free
    byte, `free()` gives them back."""

    def __init__(self, size: int) -> None:
        if os.geteuid() != 0:
            unavailable("root (to mount a small tmpfs)")
        self.path = Path(tempfile.mkdtemp(prefix="guard-fs-"))
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                            str(self.path)], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            self.path.rmdir()
            unavailable(f"mounting a tmpfs: {r.stderr.strip()}")
        self._filler = self.path / "filler"

    def fill(self) -> None:
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 65536, 4096, 512, 1):  # down to the last byte
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * size)
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)
        with contextlib.suppress(OSError):
            self.path.rmdir()


@contextlib.contextmanager
def mounted_small_fs(size: int = 24 * 1024 * 1024) -> Iterator[SmallFs]:
    fs = SmallFs(size)
    try:
        yield fs
    finally:
        fs.unmount()
