"""What a deployment sets: the external base URL `guard serve` requires, and secrets given
as files (GUARD_<NAME>_FILE: Docker and Kubernetes secrets, systemd credentials)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guard.config import ConfigError, load_settings
from tests.conftest import (
    PASS_ALL,
    GuardProcess,
    Sink,
    TlsFiles,
    free_port,
    query_rows,
    require_postgres,
    reset_postgres,
    simple_message,
    submit,
)


def guard(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=60)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"GUARD_SMTP_LISTEN": f"127.0.0.1:{free_port()}", "GUARD_SMTP_MODE": "trusted",
            "GUARD_WEB_LISTEN": f"127.0.0.1:{free_port()}",
            "GUARD_UPSTREAM": f"smtp://127.0.0.1:{free_port()}", "GUARD_POLICY": str(PASS_ALL),
            "GUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'guard.db'}", **extra}


def secret_file(tmp_path: Path, name: str, value: str) -> str:
    p = tmp_path / name
    p.write_text(value + "\n")  # as `echo` and most secret stores write it
    p.chmod(0o600)
    return str(p)


# --- the external base URL --------------------------------------------------------------


def test_serve_refuses_to_start_without_a_base_url(tmp_path: Path) -> None:
    r = guard(tmp_path, "serve", env=serve_env(tmp_path))
    assert r.returncode == 2
    line = one_line(r)
    assert line.startswith("guard: web.base_url (GUARD_BASE_URL) is not set"), line
    assert "https://" in line
    assert not (tmp_path / "guard.db").exists()  # refused before anything started


@pytest.mark.parametrize("url", [
    "http://0.0.0.0:8025", "https://[::]/", "guard.example.co.jp", "ftp://guard.example.co.jp",
    "https://guard.example.co.jp/?x=1", "https://user@guard.example.co.jp",
    "https://guard.example.co.jp:port"])
def test_a_base_url_people_cannot_open_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(env={"GUARD_BASE_URL": url})
    assert str(e.value).startswith("invalid configuration: web.base_url: ")
    with pytest.raises(ConfigError) as e:
        load_settings(env={"GUARD_REVIEW__BASE_URL": url})
    assert "review.base_url" in str(e.value)


def test_a_base_url_is_kept_without_its_trailing_slash() -> None:
    s = load_settings(env={"GUARD_BASE_URL": "https://mail.example.co.jp/guard/"})
    assert s.web.base_url == "https://mail.example.co.jp/guard"  # links append /review/…
    assert load_settings(env={"GUARD_BASE_URL": "http://127.0.0.1:8025"}).web.base_url == \
        "http://127.0.0.1:8025"


def test_a_bad_base_url_is_one_line_from_the_cli(tmp_path: Path) -> None:
    r = guard(tmp_path, "serve", env=serve_env(tmp_path, GUARD_BASE_URL="http://0.0.0.0:8025"))
    assert r.returncode == 2
    line = one_line(r)
    assert "web.base_url" in line and "0.0.0.0 is where a server listens" in line


# --- secrets from files -----------------------------------------------------------------


def test_every_secret_setting_can_be_a_file_and_config_show_masks_it(tmp_path: Path) -> None:
    env = {
        "GUARD_UPSTREAM_FILE": secret_file(
            tmp_path, "up-url", "smtps://relay:url-pass-123@mx.example.net:465"),
        "GUARD_UPSTREAM_PASSWORD_FILE": secret_file(tmp_path, "up-pw", "upstream-pass-456"),
        "GUARD_DATABASE_URL_FILE": secret_file(
            tmp_path, "db-url", "postgresql://guard@db.example.net:5433/guard"),
        "GUARD_DATABASE_PASSWORD_FILE": secret_file(tmp_path, "db-pw", "db pass/zq9"),
    }
    r = guard(tmp_path, "config", "show", env=env)
    assert r.returncode == 0, r.stderr
    for needle in ("url-pass-123", "upstream-pass-456", "db pass", "db%20pass", "zq9"):
        assert needle not in r.stdout
    doc = json.loads(r.stdout)
    assert doc["upstream"]["url"] == "smtps://relay:********@mx.example.net:465"
    assert doc["upstream"]["password"] == "********"
    assert doc["database"]["url"] == "postgresql://guard:********@db.example.net:5433/guard"
    assert doc["database"]["password"] == "********"
    # the values themselves, newline dropped, the password quoted into the URL
    s = load_settings(env=env)
    assert s.upstream.password == "upstream-pass-456"
    assert s.database.url == "postgresql://guard:db%20pass%2Fzq9@db.example.net:5433/guard"
    # the HMAC secret and the generic GUARD_<SECTION>__<KEY>_FILE form
    s = load_settings(env={"GUARD_SECRET_FILE": "/dev/null",  # the older `secret_file` key
                           "GUARD_UPSTREAM__PASSWORD_FILE": env["GUARD_UPSTREAM_PASSWORD_FILE"]})
    assert s.secret_file == "/dev/null" and s.secret == ""
    assert s.upstream.password == "upstream-pass-456"


@pytest.mark.parametrize("case", ["both", "missing", "directory", "empty", "unreadable"])
def test_a_secret_file_that_cannot_be_used_is_one_line(tmp_path: Path, case: str) -> None:
    pw = secret_file(tmp_path, "pw", "upstream-pass-456")
    env = {"GUARD_UPSTREAM_PASSWORD_FILE": pw}
    if case == "both":
        env["GUARD_UPSTREAM_PASSWORD"] = "another"
        want = ("guard: GUARD_UPSTREAM_PASSWORD and GUARD_UPSTREAM_PASSWORD_FILE are both "
                "set: keep one")
    elif case == "missing":
        env["GUARD_UPSTREAM_PASSWORD_FILE"] = str(tmp_path / "nope")
        want = (f"guard: GUARD_UPSTREAM_PASSWORD_FILE: cannot read {tmp_path / 'nope'}: "
                "No such file or directory")
    elif case == "directory":
        env["GUARD_UPSTREAM_PASSWORD_FILE"] = str(tmp_path)
        want = f"guard: GUARD_UPSTREAM_PASSWORD_FILE: cannot read {tmp_path}: Is a directory"
    elif case == "empty":
        Path(pw).write_text("\n")
        want = f"guard: GUARD_UPSTREAM_PASSWORD_FILE: {pw} is empty"
    else:
        if os.geteuid() == 0:  # root reads any file: run the command as nobody
            os.chmod(tmp_path, 0o755)
        Path(pw).chmod(0o000)
        want = f"guard: GUARD_UPSTREAM_PASSWORD_FILE: cannot read {pw}: Permission denied"
    cmd = ["config", "show"]
    if case == "unreadable" and os.geteuid() == 0:
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            sys.executable, "-m", "guard.cli", *cmd], cwd="/",
                           env={"PATH": os.environ["PATH"], **env,
                                "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                           capture_output=True, text=True, timeout=60)
    else:
        r = guard(tmp_path, *cmd, env=env)
    assert r.returncode == 2, r.stdout
    assert one_line(r) == want
    assert "upstream-pass-456" not in r.stdout + r.stderr


def test_a_database_password_needs_a_postgresql_url_without_one() -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(env={"GUARD_DATABASE_PASSWORD": "x"})  # the SQLite default
    assert "needs a user in a PostgreSQL database.url" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_settings(env={"GUARD_DATABASE_URL": "postgresql://g:pw@db/g",
                           "GUARD_DATABASE_PASSWORD": "other"})
    assert "keep one" in str(e.value) and "pw@" not in str(e.value)


def test_serve_takes_its_database_from_files(tmp_path: Path, sink: Sink, tls: TlsFiles,
                                             guard_factory) -> None:
    """`guard serve` on the PostgreSQL named by a file, with its password from another (the
    test cluster trusts loopback: the password travels and is ignored), and a secret file
    mounted read-only beside it, as the Kubernetes manifests do."""
    url = require_postgres()  # postgresql://postgres@127.0.0.1:5432/<db>: no password
    reset_postgres()
    g = guard_factory(sink.url, start=False)
    env = dict(g.env)
    del env["GUARD_DATABASE_URL"]
    env["GUARD_DATABASE_URL_FILE"] = secret_file(tmp_path, "db-url", url)
    env["GUARD_DATABASE_PASSWORD_FILE"] = secret_file(tmp_path, "db-pw", "s3cret/pw")
    env["GUARD_SECRET_FILE"] = secret_file(tmp_path, "guard-secret", "ab" * 32)
    g = GuardProcess(tmp_path, env).start()
    try:
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
               simple_message("from a file-configured guard"))
        sink.wait_count(1)
        from sqlalchemy import text

        rows = query_rows(url, text("SELECT count(*) FROM messages"))
        assert rows[0][0] == 1
        assert "s3cret" not in g.logs()
        r = g.cli("health")
        assert (r.returncode, r.stdout) == (0, "ok\n"), r.stdout + r.stderr
    finally:
        g.stop()
