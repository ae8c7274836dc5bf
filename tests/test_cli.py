"""The `guard` command as an admin types it: one-line errors,
no sample policy in production, masked secrets, a quiet closed pipe, users management."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from guard.users import UserDirectory, parse_users
from tests.conftest import EXAMPLE_POLICY, PASS_ALL, ROOT, free_port


def guard(cwd: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=60, input=input)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# --- `guard serve` needs a policy ---------------------------------------------------


def _serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"GUARD_SMTP_LISTEN": f"127.0.0.1:{free_port()}", "GUARD_SMTP_MODE": "trusted",
            "GUARD_WEB_LISTEN": f"127.0.0.1:{free_port()}",
            "GUARD_BASE_URL": "https://guard.example.co.jp",
            "GUARD_UPSTREAM": f"smtp://127.0.0.1:{free_port()}",
            "GUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'guard.db'}", **extra}


def _serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    full.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "guard.cli", "serve"], cwd=tmp_path,
                            env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("guard serve started (and ran) without a usable policy")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_serve_refuses_to_start_without_a_policy(tmp_path: Path) -> None:
    r = _serve(tmp_path, _serve_env(tmp_path))
    assert r.returncode == 2
    line = one_line(r)
    assert "no policy configured" in line
    assert "policy.path" in line and "GUARD_POLICY" in line
    assert not (tmp_path / "guard.db").exists()  # refused before anything started


def test_serve_refuses_a_policy_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-policy"
    r = _serve(tmp_path, _serve_env(tmp_path, GUARD_POLICY=str(missing)))
    assert r.returncode == 2
    assert one_line(r) == (f"guard: policy.path (GUARD_POLICY) {missing}: "
                           "no such file or folder")


def test_dev_runs_the_shipped_example_and_serve_does_not(tmp_path: Path) -> None:
    dev = json.loads(guard(tmp_path, "config", "show", "--dev").stdout)
    assert Path(dev["policy"]["path"]) == EXAMPLE_POLICY
    prod = json.loads(guard(tmp_path, "config", "show").stdout)
    assert prod["policy"]["path"] == ""
    # a configured policy wins in dev too
    dev = json.loads(guard(tmp_path, "config", "show", "--dev",
                           env={"GUARD_POLICY": str(PASS_ALL)}).stdout)
    assert dev["policy"]["path"] == str(PASS_ALL)


def test_policy_commands_say_to_name_a_policy(tmp_path: Path) -> None:
    r = guard(tmp_path, "policy", "check")
    assert r.returncode == 2 and "GUARD_POLICY" in one_line(r)
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: a@example.co.jp\r\nTo: b@example.net\r\nSubject: s\r\n\r\nx\r\n")
    r = guard(tmp_path, "policy", "test", str(eml))
    assert r.returncode == 2 and "or name the policy on the command line" in one_line(r)
    r = guard(tmp_path, "policy", "check", env={"GUARD_POLICY": str(EXAMPLE_POLICY)})
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr


# --- config show --------------------------------------------------------------------


def test_config_show_masks_every_secret(tmp_path: Path) -> None:
    secrets = {"GUARD_UPSTREAM": "smtps://relay:url-pass-123@mx.example.net:465",
               "GUARD_UPSTREAM_PASSWORD": "upstream-pass-456",
               "GUARD_SECRET": "the-hmac-secret-value-789",
               "GUARD_DATABASE_URL": "postgresql://guard:db-pass-000@db.example.net/guard"}
    r = guard(tmp_path, "config", "show", env=secrets)
    assert r.returncode == 0, r.stderr
    for needle in ("url-pass-123", "upstream-pass-456", "the-hmac-secret-value-789",
                   "db-pass-000"):
        assert needle not in r.stdout
    doc = json.loads(r.stdout)
    assert doc["upstream"]["url"] == "smtps://relay:********@mx.example.net:465"
    assert doc["upstream"]["password"] == "********"
    assert doc["secret"] == "********"
    assert doc["database"]["url"] == "postgresql://guard:********@db.example.net/guard"
    assert doc["smtp"]["hostname"] == "guard.localdomain"  # the rest is shown as it is


# --- errors, states, pipes -----------------------------------------------------------


def test_unknown_state_names_the_valid_ones(tmp_path: Path) -> None:
    r = guard(tmp_path, "queue", "list", "--state", "bogus")
    assert r.returncode == 2
    line = one_line(r)
    assert "invalid choice: 'bogus'" in line
    for state in ("queued", "deferred", "delivered", "bounced", "held", "cancelled",
                  "expired", "rejected", "delivering"):
        assert f"'{state}'" in line
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    for args in (["queue"], ["queue", "list", "--limit", "many"], ["no-such-command"]):
        r = guard(tmp_path, *args)
        assert r.returncode == 2, args
        assert one_line(r).startswith("guard"), args


def test_file_errors_are_one_line_and_the_traceback_is_opt_in(tmp_path: Path) -> None:
    r = guard(tmp_path, "policy", "test", "missing.eml", "--policy", str(PASS_ALL))
    assert r.returncode == 1
    assert one_line(r) == "guard: missing.eml: No such file or directory"
    (tmp_path / "users.yaml").mkdir()  # a users file that is a directory
    r = guard(tmp_path, "users", "list")
    assert r.returncode == 1 and "users.yaml" in one_line(r)
    r = guard(tmp_path, "policy", "test", "missing.eml", "--policy", str(PASS_ALL),
              env={"GUARD_DEBUG": "1"})
    assert r.returncode == 1 and "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "guard: missing.eml: No such file or directory"


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _serve(tmp_path, _serve_env(tmp_path, GUARD_SMTP_LISTEN=f"127.0.0.1:{port}",
                                        GUARD_POLICY=str(PASS_ALL)))
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("guard: ") and "address already in use" in last.lower()
    assert "Traceback" not in r.stderr


def _fill_queue(db_url: str, n: int) -> None:
    from guard.store import db, migrate
    from guard.store import queue as q
    from guard.store.writer import BatchWriter

    async def go() -> None:
        engine = db.create_engine(db_url)
        await migrate.upgrade(engine)
        writer = BatchWriter(engine)
        writer.start()
        msgs = [q.NewMessage(id=f"PIPE{i:06d}", state="queued", mail_from="a@example.co.jp",
                             sender="alice", rcpt_tos=["x@example.net"],
                             data=b"Subject: t\r\n\r\nb\r\n", subject=f"message {i}",
                             actor="test") for i in range(n)]

        async def insert_all(conn: Any, now: float) -> None:
            for m in msgs:  # one transaction
                await q.insert_message(conn, now, m)

        try:
            await writer.submit(insert_all)
        finally:
            await writer.close()
            await engine.dispose()

    asyncio.run(go())


@pytest.mark.parametrize("fmt", [[], ["--json"]])
def test_a_closed_pipe_ends_quietly(tmp_path: Path, fmt: list[str]) -> None:
    db_url = f"sqlite:///{tmp_path / 'guard.db'}"
    _fill_queue(db_url, 3000)  # far more than a pipe buffer holds
    err = tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env["GUARD_DATABASE_URL"] = db_url
    cmd = " ".join([sys.executable, "-m", "guard.cli", "queue", "list", "--limit", "5000",
                    *fmt])
    r = subprocess.run(["bash", "-c", f"{cmd} 2>{err} | head -1; echo ${{PIPESTATUS[0]}}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    out = r.stdout.splitlines()
    assert len(out) == 2 and out[0].startswith(("ID", "[")), r.stdout
    assert err.read_text() == "", err.read_text()
    assert out[1] in ("0", "141")  # 0 if the output happened to fit into the pipe


# --- users --------------------------------------------------------------------------


PROMPT = re.compile(rb"password for \S+(?: again)?: ")


def _pty_run(cwd: Path, args: list[str], answers: list[str], env: dict[str, str]
             ) -> tuple[int, str]:
    """Run `guard ARGS` on a pseudo-terminal and type each answer at each prompt."""
    master, slave = os.openpty()
    full = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    full.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "guard.cli", *args], cwd=cwd, env=full,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError as e:  # EIO: the child closed the terminal
                    if e.errno != errno.EIO:
                        raise
                    break
                if not chunk:
                    break
                out += chunk
                # one answer per prompt seen ("password for NAME: ", "… again: ")
                while pending and len(PROMPT.findall(out)) > len(answers) - len(pending):
                    os.write(master, pending.pop(0).encode() + b"\n")
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return rc, out.decode(errors="replace")


def test_users_add_asks_twice_and_validates(tmp_path: Path) -> None:
    env = {"GUARD_USERS_FILE": str(tmp_path / "users.yaml")}
    rc, out = _pty_run(tmp_path, ["users", "add", "carol", "-a", "carol@example.co.jp"],
                       ["a long passphrase", "another passphrase"], env)
    assert rc == 2 and "the two passwords differ" in out, out
    assert not (tmp_path / "users.yaml").exists()
    rc, out = _pty_run(tmp_path, ["users", "add", "carol", "-a", "carol@example.co.jp",
                                  "--alias", "sales@example.co.jp"],
                       ["a long passphrase", "a long passphrase"], env)
    assert rc == 0, out
    assert "password for carol: " in out and "password for carol again: " in out
    assert "a long passphrase" not in out  # not echoed
    users = UserDirectory(tmp_path / "users.yaml")
    carol = users.authenticate(b"carol", b"a long passphrase")
    assert carol is not None and carol.aliases == ("sales@example.co.jp",)

    for bad in (["-a", "carol@@example.co.jp"], ["-a", "carol"], ["--alias", "x@"]):
        r = guard(tmp_path, "users", "add", "dave", *bad, "--password-stdin",
                  input="a long passphrase\n", env=env)
        assert r.returncode == 2, bad
        assert one_line(r).startswith(("guard: address ", "guard: alias ")), bad
    r = guard(tmp_path, "users", "add", "dave eve", "--password-stdin",
              input="a long passphrase\n", env=env)
    assert r.returncode == 2 and "user name" in one_line(r)
    r = guard(tmp_path, "users", "add", "dave", "--password-stdin", input="short\n", env=env)
    assert r.returncode == 2 and "too short" in one_line(r)
    # the sender name of the guard's own mail, which alerts and reports leave out
    r = guard(tmp_path, "users", "add", "guard", "-a", "g@example.co.jp", "--password-stdin",
              input="a long passphrase\n", env=env)
    assert r.returncode == 2 and "reserved" in one_line(r) and "予約" in one_line(r)
    assert set(UserDirectory(tmp_path / "users.yaml")._users) == {"carol"}
    with pytest.raises(ValueError, match="reserved"):  # nor by editing the file
        parse_users({"users": {"guard": {"addresses": ["g@example.co.jp"]}}})


def test_users_list_passwd_remove(tmp_path: Path) -> None:
    env = {"GUARD_USERS_FILE": str(tmp_path / "users.yaml")}
    r = guard(tmp_path, "users", "list", env=env)
    assert r.returncode == 1 and "no users file" in one_line(r)
    assert not (tmp_path / "users.yaml").exists()  # a read command creates nothing
    for name in ("alice", "bob"):
        r = guard(tmp_path, "users", "add", name, "-a", f"{name}@example.co.jp",
                  "--language", "ja", "--password-stdin", input="first passphrase\n", env=env)
        assert r.returncode == 0, r.stderr
    r = guard(tmp_path, "users", "list", env=env)
    assert r.returncode == 0
    assert [line.split()[0] for line in r.stdout.splitlines()] == ["NAME", "alice", "bob"]
    assert "alice@example.co.jp" in r.stdout and "scrypt" not in r.stdout
    listed = json.loads(guard(tmp_path, "users", "list", "--json", env=env).stdout)
    assert listed[0] == {"name": "alice", "addresses": ["alice@example.co.jp"], "aliases": [],
                         "language": "ja", "password_set": True}

    rc, out = _pty_run(tmp_path, ["users", "passwd", "alice"],
                       ["second passphrase", "second passphrase"], env)
    assert rc == 0, out
    users = UserDirectory(tmp_path / "users.yaml")
    assert users.authenticate(b"alice", b"second passphrase") is not None
    assert users.authenticate(b"alice", b"first passphrase") is None
    assert users.authenticate(b"bob", b"first passphrase") is not None

    r = guard(tmp_path, "users", "remove", "bob", env=env)
    assert r.returncode == 0, r.stderr
    assert "bob" not in guard(tmp_path, "users", "list", env=env).stdout
    for cmd in (["remove", "bob"], ["passwd", "nobody", "--password-stdin"]):
        r = guard(tmp_path, "users", *cmd, input="a long passphrase\n", env=env)
        assert r.returncode == 1, cmd
        assert one_line(r).startswith("guard: no user "), cmd


def test_read_commands_leave_no_files_behind(tmp_path: Path) -> None:
    for args in (["queue", "list"], ["queue", "show", "X"], ["policy", "replay", "--policy",
                 str(PASS_ALL)], ["users", "list"], ["config", "show"]):
        guard(tmp_path, *args)
        assert list(tmp_path.iterdir()) == [], args


def test_the_shipped_policy_dir_is_what_dev_uses() -> None:
    from guard.config import shipped_policy

    assert shipped_policy() == ROOT / "policies"


# --- guard dev, as the README has a newcomer run it --------------------------------------


def test_guard_dev_runs_with_smtp_fronts_and_its_own_upstream(tmp_path: Path) -> None:
    """The README's first command: SMTP sessions in a front process (the metrics set up for
    several processes before anything imported prometheus_client), the example policy,
    and the development upstream where the upstream setting points."""
    import smtplib
    import urllib.request

    from tests.conftest import wait_for, wait_port

    smtp, web, up = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env.update({"GUARD_SMTP_LISTEN": f"127.0.0.1:{smtp}", "GUARD_WEB_LISTEN": f"127.0.0.1:{web}",
                "GUARD_UPSTREAM": f"smtp://127.0.0.1:{up}"})
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "guard.cli", "dev"], cwd=tmp_path,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(smtp, 30)
        wait_port(web, 30)
        wait_port(up, 30)
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
            s.sendmail("sato@example.co.jp", ["tanaka@example.co.jp"],
                       "Subject: 社内連絡\r\n\r\nhello\r\n".encode())

        def outbox() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{web}/dev/outbox", timeout=5) as r:
                return r.read().decode()

        wait_for(lambda: "tanaka@example.co.jp" in outbox(), 30, what="the mail in the outbox")
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'guard_smtp_sessions_total{listener="trusted"} 1.0' in metrics
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text(errors="replace")
    assert "SMTP sessions run in this process" not in text
    assert f"delivered mail at http://127.0.0.1:{web}/dev/outbox" in text
    assert f"policy {EXAMPLE_POLICY}" in text
    assert (tmp_path / "guard.db").exists() and (tmp_path / "guard.secret").exists()
