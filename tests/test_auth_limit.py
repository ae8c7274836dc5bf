"""Failed AUTH is limited per client address over a time window, across connections and
SMTP front processes; each failure is one line fail2ban reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Sink, TlsFiles
from tests.smtp_client import RawSMTP

FILTER = ROOT / "deploy" / "fail2ban" / "filter.d" / "guard-auth.conf"


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _auth_session(port: int, tls: TlsFiles, source: str | None = None) -> RawSMTP:
    c = RawSMTP(port, source=source)
    c.ehlo()
    c.starttls(tls.client_context())
    c.ehlo()
    return c


def test_thirty_wrong_passwords_over_ten_connections_then_the_right_one(
        guard_factory: Any, sink: Sink, tls: TlsFiles) -> None:
    # two fronts: the connections land on either, the window is the main process's
    g = guard_factory(sink.url, smtp__front_processes="2")
    codes = []
    for _ in range(10):
        with _auth_session(g.smtp_port, tls) as c:
            for _ in range(3):  # the per-connection limit: a 4th AUTH is a 421
                codes.append(c.auth_plain("alice", "not the password"))
    assert [r.code for r in codes[:10]] == [535] * 10
    assert {r.code for r in codes[10:]} == {454}
    assert str(codes[10]) == "454 4.7.0 Too many authentication failures, try again later"
    with _auth_session(g.smtp_port, tls) as c:
        r = c.auth_plain()  # the right password
        assert r.code == 454, str(r)
        assert c.cmd("MAIL FROM:<alice@example.co.jp>").code == 530
    # another client address is not blocked, and its login does not unblock the first
    with _auth_session(g.smtp_port, tls, source="127.0.0.2") as c:
        assert c.auth_plain().code == 235
    with _auth_session(g.smtp_port, tls) as c:
        assert c.auth_plain().code == 454

    logs = g.logs()
    failed = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) WARNING guard\.smtp \[-\] "
                        r"AUTH failed: client=127\.0\.0\.1 user=alice$", logs, re.M)
    assert len(failed) == 10, logs[-3000:]
    assert len(re.findall(r"AUTH refused: client=127\.0\.0\.1 user=alice", logs)) == 22
    status, metrics = g.http("/metrics")
    assert status == 200
    assert _metric(metrics, 'guard_auth_failures_total{listener="submission"}') == 10
    assert _metric(
        metrics, 'guard_smtp_refused_total{listener="submission",reason="auth_rate_limited"}') == 22


def _fail2ban_regex() -> str:
    exe = shutil.which("fail2ban-regex")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("fail2ban-regex is required in CI (.ci/run installs fail2ban)")
        pytest.skip("fail2ban not installed")
    return exe


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_fail2ban_filter_reads_the_guards_log(guard_factory: Any, sink: Sink, tls: TlsFiles,
                                              tmp_path: Path, log_format: str) -> None:
    """The shipped filter, run by fail2ban's own fail2ban-regex over a real guard log."""
    exe = _fail2ban_regex()
    g = guard_factory(sink.url, log_format=log_format, smtp__auth_failures_per_address="3")
    with _auth_session(g.smtp_port, tls) as c:
        for user in ("alice", "nosuchuser", "bob\r\nclient=192.0.2.66"):
            c.auth_plain(user, "wrong")
    with _auth_session(g.smtp_port, tls) as c:
        assert c.auth_plain().code == 454
    g.stop()
    r = subprocess.run([exe, str(g.log_path), str(FILTER)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"Failregex: (\d+) total", r.stdout)
    assert m and int(m.group(1)) == 4, r.stdout
    r = subprocess.run([exe, "--print-all-matched", str(g.log_path), str(FILTER)],
                       capture_output=True, text=True, timeout=60)
    matched = [line for line in r.stdout.splitlines() if "AUTH " in line]
    assert matched and not any("192.0.2.66" in line.split("client=")[1].split()[0]
                               for line in matched)


def test_window_and_block_expire() -> None:
    from guard.smtp.authlimit import AuthLimiter

    now = [1000.0]
    lim = AuthLimiter(3, window=60, block_seconds=120, clock=lambda: now[0])
    assert lim.failed("192.0.2.1") == 0 and lim.failed("192.0.2.1") == 0
    now[0] += 61  # the first two fell out of the window
    assert lim.failed("192.0.2.1") == 0
    assert lim.blocked_for("192.0.2.1") == 0
    assert lim.failed("192.0.2.1") == 0
    assert lim.failed("192.0.2.1") == 120  # three within the window
    assert lim.blocked_for("192.0.2.1") == 120
    assert lim.blocked_for("192.0.2.2") == 0  # another address
    now[0] += 119
    assert lim.blocked_for("192.0.2.1") == pytest.approx(1)
    now[0] += 2
    assert lim.blocked_for("192.0.2.1") == 0
    assert lim.failed("192.0.2.1") == 0  # a fresh count after the block


def test_an_ipv6_client_is_its_slash_64() -> None:
    from guard.smtp.authlimit import AuthLimiter, client_key

    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:3::5") != client_key("2001:db8:1:2::5")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    lim = AuthLimiter(2, window=60, block_seconds=60, clock=lambda: 0.0)
    lim.failed("2001:db8:1:2::1")
    assert lim.failed("2001:db8:1:2::2") == 60


def test_tracked_addresses_are_bounded() -> None:
    from guard.smtp.authlimit import AuthLimiter

    now = [0.0]
    lim = AuthLimiter(5, window=60, block_seconds=60, clock=lambda: now[0], max_tracked=100)
    for i in range(1000):
        lim.failed(f"10.0.{i // 250}.{i % 250}")
    assert lim.tracked() <= 100
    now[0] += 61
    lim.failed("192.0.2.1")
    assert lim.tracked() == 1
