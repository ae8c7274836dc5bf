"""Suppression lists keep their word.

Each list has one declared source (a file the policy names, or the store), the secret
that hashes them has one home, and `guard policy test` uses the lists `guard serve`
uses. Everything through the real interfaces: the guard as a process, SMTP in, the CLI
as a user types it, run from different directories.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from guard.store import db
from guard.store.schema import audit
from tests.conftest import (
    EXAMPLE_POLICY,
    Sink,
    TlsFiles,
    require_postgres,
    reset_postgres,
    submit,
    wait_for,
)
from tests.test_policy_e2e import _rows, plain_mail

WITHDRAWN = "ito.hanako@example.com"  # on policies/lists/withdrawn.csv
KEY_A = "first secret of this guard, 32+ chars"
KEY_B = "another secret altogether, 32+ chars"


def key_fingerprint(key: bytes) -> str:
    """The documented fingerprint: HMAC-SHA256(key, "guard list key fingerprint v1"),
    the first 16 hex characters."""
    return hmac.new(key, b"guard list key fingerprint v1", hashlib.sha256).hexdigest()[:16]


def guard_cli(cwd: Path, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    """`guard …` as a user types it, in `cwd`, with only the GUARD_* settings given."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICY, d, ignore=shutil.ignore_patterns("samples"))
    return d


def store_managed(policy_dir: Path, name: str = "withdrawn") -> None:
    """Declare a list as managed in the store (`name: {source: store}`)."""
    policy = policy_dir / "policy.yaml"
    text, n = re.subn(rf"(?m)^    {name}: .*$", f"    {name}: {{source: store}}",
                      policy.read_text())
    assert n == 1
    policy.write_text(text)


def write_csv(path: Path, *addresses: str) -> Path:
    path.write_text("email\n" + "".join(f"{a}\n" for a in addresses))
    return path


def message_to(tmp_path: Path, rcpt: str) -> Path:
    eml = tmp_path / f"to-{rcpt}.eml"
    eml.write_bytes(plain_mail(rcpt, "キャンペーンのお知らせです。"))
    return eml


def list_audit(url: str) -> list[dict]:
    async def go() -> list[dict]:
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            rows = (await conn.execute(select(audit).where(audit.c.message_id == "-")
                                       .order_by(audit.c.id))).all()
        await engine.dispose()
        return [{"action": r.action, "actor": r.actor, **json.loads(r.detail)} for r in rows]

    return asyncio.run(go())


def suppressed_lists(row: dict) -> set[str]:
    return {r["evidence"]["list"] for r in row["verdict"]["reasons"]
            if r["symbol"] == "suppressed"}


# --- one home for the secret, a fingerprint on every list ------------------------


def test_lists_match_whatever_directory_the_commands_run_in(tmp_path: Path, policy_dir: Path):
    data, here, there = tmp_path / "data", tmp_path / "here", tmp_path / "there"
    for d in (data, here, there):
        d.mkdir()
    env = {"GUARD_DATABASE_URL": f"sqlite:///{data / 'guard.db'}",
           "GUARD_POLICY": str(policy_dir)}
    r = guard_cli(here, "lists", "import", "newsletter",
                  str(write_csv(here / "n.csv", "reader@example.com")), env=env)
    assert r.returncode == 0, r.stderr
    r = guard_cli(there, "policy", "test", str(message_to(there, "reader@example.com")),
                  "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["action"] == "approve"
    assert [x["evidence"]["list"] for x in doc["reasons"] if x["symbol"] == "suppressed"] == [
        "newsletter"]
    # one secret, beside the database; none where the commands ran
    assert (data / "guard.secret").exists()
    assert not (here / "guard.secret").exists() and not (there / "guard.secret").exists()
    shown = json.loads(guard_cli(there, "config", "show", env=env).stdout)
    assert shown["secret_location"] == str(data / "guard.secret")


def test_a_relative_secret_file_is_taken_from_the_config_files_directory(tmp_path: Path):
    conf, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    conf.mkdir()
    elsewhere.mkdir()
    (conf / "guard.toml").write_text(
        f'secret_file = "keys/guard.secret"\n[database]\nurl = "sqlite:///{tmp_path}/g.db"\n')
    r = guard_cli(elsewhere, "--config", str(conf / "guard.toml"), "db", "upgrade")
    assert r.returncode == 0, r.stderr
    assert f"secret: {conf / 'keys' / 'guard.secret'}" in r.stdout
    assert (conf / "keys" / "guard.secret").exists()
    assert list(elsewhere.iterdir()) == []


def test_a_store_list_hashed_with_another_key_is_an_error_never_a_silent_miss(
        tmp_path: Path, policy_dir: Path, guard_factory, sink: Sink, tls: TlsFiles):
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    env = {"GUARD_DATABASE_URL": url, "GUARD_POLICY": str(policy_dir)}
    csv = write_csv(tmp_path / "n.csv", "reader@example.com")
    r = guard_cli(tmp_path, "lists", "import", "newsletter", str(csv),
                  env={**env, "GUARD_SECRET": KEY_A})
    assert r.returncode == 0, r.stderr
    fp_a, fp_b = key_fingerprint(KEY_A.encode()), key_fingerprint(KEY_B.encode())
    assert f"key {fp_a}" in r.stdout

    # policy test with another key: an error naming the list and both keys
    r = guard_cli(tmp_path, "policy", "test", str(message_to(tmp_path, "reader@example.com")),
                  env={**env, "GUARD_SECRET": KEY_B})
    assert r.returncode == 2
    line = one_line(r)
    assert "list newsletter" in line and fp_a in line and fp_b in line
    assert "guard lists import newsletter" in line

    # the guard with the key the list was imported with serves, and records that key
    g = guard_factory(sink.url, url, policy=str(policy_dir), secret=KEY_A)
    g.stop()
    # a command run with another secret cannot import a list nobody would match
    r = guard_cli(tmp_path, "lists", "import", "newsletter", str(csv),
                  env={**env, "GUARD_SECRET": KEY_B})
    assert r.returncode == 2
    line = one_line(r)
    assert fp_a in line and fp_b in line and "--new-key" in line

    # a guard started with another secret refuses, in one line, and writes nothing: the
    # file lists stay hashed with the serving guard's key
    g = guard_factory(sink.url, url, start=False, policy=str(policy_dir), secret=KEY_B)
    with pytest.raises(RuntimeError):
        g.start()
    assert g.proc is None or g.proc.poll() is not None
    refusal = [ln for ln in g.logs().splitlines() if ln.startswith("guard: ")]
    assert len(refusal) == 1, g.logs()
    assert "list newsletter" in refusal[0] and fp_a in refusal[0] and fp_b in refusal[0]
    assert "Traceback" not in g.logs()
    g.stop()
    shown = {d["name"]: d for d in json.loads(
        guard_cli(tmp_path, "lists", "show", "--json", env=env).stdout)}
    assert shown["opt_out"]["key_fingerprint"] == fp_a

    # the secret was changed on purpose: the list is imported again with the new one,
    # the guard starts, hashes its file lists again and matches the list
    r = guard_cli(tmp_path, "lists", "import", "newsletter", str(csv), "--new-key",
                  env={**env, "GUARD_SECRET": KEY_B})
    assert r.returncode == 0, r.stderr
    g = guard_factory(sink.url, url, policy=str(policy_dir), secret=KEY_B)
    submit(g.smtp_port, tls, "alice@example.co.jp", ["reader@example.com"],
           plain_mail("reader@example.com", "ご案内"))
    (held,) = wait_for(lambda: [x for x in _rows(url) if x["state"] == "held"], what="held")
    assert suppressed_lists(held) == {"newsletter"}
    shown = {d["name"]: d for d in json.loads(g.cli("lists", "show", "--json").stdout)}
    assert shown["opt_out"]["key_fingerprint"] == fp_b


@pytest.mark.postgres
def test_postgres_needs_a_configured_secret(tmp_path: Path, guard_factory, sink: Sink):
    pg = require_postgres()
    reset_postgres(pg)
    g = guard_factory(sink.url, pg, start=False, secret_file="")
    with pytest.raises(RuntimeError):
        g.start()
    refusal = [ln for ln in g.logs().splitlines() if ln.startswith("guard: ")]
    assert len(refusal) == 1, g.logs()
    assert "GUARD_SECRET" in refusal[0] and "GUARD_SECRET_FILE" in refusal[0]
    assert "Traceback" not in g.logs()
    g.stop()
    r = guard_cli(tmp_path, "lists", "import", "newsletter",
                  str(write_csv(tmp_path / "n.csv", "reader@example.com")),
                  env={"GUARD_DATABASE_URL": pg, "GUARD_POLICY": str(EXAMPLE_POLICY)})
    assert r.returncode == 2
    assert "GUARD_SECRET or GUARD_SECRET_FILE" in one_line(r)
    assert not (tmp_path / "guard.secret").exists()


# --- one declared source per list ----------------------------------------------


@pytest.fixture
def guarded(guard_factory, sink: Sink, policy_dir: Path, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    g = guard_factory(sink.url, url, policy=str(policy_dir), policy__reload_interval="0.3")
    return g, url


def test_importing_a_list_the_policy_syncs_from_a_file_is_refused(guarded, tmp_path: Path,
                                                                  policy_dir: Path):
    g, _ = guarded
    r = g.cli("lists", "import", "opt_out", str(write_csv(tmp_path / "new.csv", "x@example.com")))
    assert r.returncode == 2
    line = one_line(r)
    assert f"list opt_out is synced from {policy_dir.resolve() / 'lists' / 'opt_out.csv'}" in line
    assert "edit that file" in line
    shown = {d["name"]: d for d in json.loads(g.cli("lists", "show", "--json").stdout)}
    assert shown["opt_out"]["members"] == 3  # the file's entries, untouched


def test_a_replaced_store_list_stays_replaced_after_reload_and_restart(
        guard_factory, sink: Sink, tls: TlsFiles, tmp_path: Path, policy_dir: Path):
    store_managed(policy_dir)
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    g = guard_factory(sink.url, url, policy=str(policy_dir), policy__reload_interval="0.3")
    old = write_csv(tmp_path / "old.csv", WITHDRAWN, "nakamura@example.net")
    assert g.cli("lists", "import", "withdrawn", str(old)).returncode == 0
    new = write_csv(tmp_path / "new.csv", "nakamura@example.net", "late.leaver@example.com")
    r = g.cli("lists", "import", "withdrawn", str(new))
    assert r.returncode == 0, r.stderr
    assert "2 addresses imported" in r.stdout and "1 added, 1 removed" in r.stdout
    # a policy reload, then a restart: nothing brings the old list back
    policy = policy_dir / "policy.yaml"
    policy.write_text(policy.read_text() + "\n# edited\n")
    wait_for(lambda: 'guard_policy_reloads_total{result="ok"} 2.0' in g.http("/metrics")[1],
             what="reload")
    g.stop()
    g.start()
    submit(g.smtp_port, tls, "alice@example.co.jp", [WITHDRAWN], plain_mail(WITHDRAWN, "ご案内"))
    submit(g.smtp_port, tls, "alice@example.co.jp", ["late.leaver@example.com"],
           plain_mail("late.leaver@example.com", "ご案内"))
    rows = wait_for(lambda: (lambda rs: rs if len(rs) == 2 else None)(
        [x for x in _rows(url) if x["state"] == "held"]), what="two held")
    by_rcpt = {x["recipients"][0]: x for x in rows}
    assert suppressed_lists(by_rcpt["late.leaver@example.com"]) == {"withdrawn"}
    assert suppressed_lists(by_rcpt[WITHDRAWN]) == set()  # withdrawn from the list
    assert by_rcpt[WITHDRAWN]["verdict"]["action"] == "delay"  # only a first-time domain
    shown = {d["name"]: d for d in json.loads(g.cli("lists", "show", "--json").stdout)}
    assert shown["withdrawn"]["source"] == "store"
    assert shown["withdrawn"]["last_import"] == str(new)
    assert shown["withdrawn"]["members"] == 2


def test_a_policy_naming_a_file_for_a_store_list_is_refused_naming_both(
        guard_factory, sink: Sink, tls: TlsFiles, tmp_path: Path, policy_dir: Path):
    store_managed(policy_dir)
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    g = guard_factory(sink.url, url, policy=str(policy_dir), policy__reload_interval="0.3")
    assert g.cli("lists", "import", "withdrawn",
                 str(write_csv(tmp_path / "w.csv", "only.me@example.com"))).returncode == 0
    policy = policy_dir / "policy.yaml"
    policy.write_text(policy.read_text().replace(
        "    withdrawn: {source: store}", "    withdrawn: lists/withdrawn.csv"))
    wait_for(lambda: 'guard_policy_reloads_total{result="error"} 1.0' in g.http("/metrics")[1],
             what="reload refused")
    csv_path = policy_dir.resolve() / "lists" / "withdrawn.csv"
    refused = [ln for ln in g.logs().splitlines() if "policy reload refused" in ln]
    assert len(refused) == 1
    assert f"the policy names the file {csv_path}" in refused[0]
    assert "the store manages this list" in refused[0]
    # the last good policy and the store's list stay: the file's member is not suppressed
    submit(g.smtp_port, tls, "alice@example.co.jp", ["only.me@example.com"],
           plain_mail("only.me@example.com", "ご案内"))
    submit(g.smtp_port, tls, "alice@example.co.jp", [WITHDRAWN], plain_mail(WITHDRAWN, "ご案内"))
    rows = wait_for(lambda: (lambda rs: rs if len(rs) == 2 else None)(
        [x for x in _rows(url) if x["state"] == "held"]), what="two held")
    by_rcpt = {x["recipients"][0]: x for x in rows}
    assert suppressed_lists(by_rcpt["only.me@example.com"]) == {"withdrawn"}
    assert suppressed_lists(by_rcpt[WITHDRAWN]) == set()

    # a restart with that policy does not start, in one line
    g.stop()
    with pytest.raises(RuntimeError):
        g.start()
    assert [ln for ln in g.logs().splitlines() if ln.startswith("guard: list withdrawn: the "
                                                                "policy names the file")]
    g.stop()

    # the admin lets the file take over: removed from the store, the policy is taken
    r = g.cli("lists", "remove", "withdrawn")
    assert r.returncode == 0 and "(1 entries)" in r.stdout, r.stderr
    g.start()
    shown = {d["name"]: d for d in json.loads(g.cli("lists", "show", "--json").stdout)}
    assert shown["withdrawn"]["source"] == str(csv_path) and shown["withdrawn"]["members"] == 2
    removed = [a for a in list_audit(url) if a["action"] == "list_remove"]
    assert removed and removed[-1]["list"] == "withdrawn" and removed[-1]["removed"] == 1


def test_a_refused_policy_is_taken_once_the_store_list_is_removed(
        guard_factory, sink: Sink, tmp_path: Path, policy_dir: Path):
    store_managed(policy_dir)
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    g = guard_factory(sink.url, url, policy=str(policy_dir), policy__reload_interval="0.2")
    assert g.cli("lists", "import", "withdrawn",
                 str(write_csv(tmp_path / "w.csv", "only.me@example.com"))).returncode == 0
    policy = policy_dir / "policy.yaml"
    policy.write_text(policy.read_text().replace(
        "    withdrawn: {source: store}", "    withdrawn: lists/withdrawn.csv"))
    wait_for(lambda: 'guard_policy_reloads_total{result="error"} 1.0' in g.http("/metrics")[1],
             what="reload refused")
    assert g.cli("lists", "remove", "withdrawn").returncode == 0
    # retried without another edit (the fix was a command); the refusal was logged once
    wait_for(lambda: 'guard_policy_reloads_total{result="ok"} 2.0' in g.http("/metrics")[1],
             timeout=20, what="policy taken after the fix")
    assert len([ln for ln in g.logs().splitlines() if "policy reload refused" in ln]) == 1
    shown = {d["name"]: d for d in json.loads(g.cli("lists", "show", "--json").stdout)}
    assert shown["withdrawn"]["members"] == 2


def test_lists_show_and_the_audit_of_a_sync(guarded, policy_dir: Path):
    g, url = guarded
    lst = policy_dir / "lists" / "opt_out.csv"
    rows = lst.read_text().splitlines()
    # one member out (kobayashi), one in
    lst.write_text("\n".join([rows[0], rows[1], rows[3],
                              "new.optout@example.org,2026-12-01,web form"]) + "\n")
    wait_for(lambda: [a for a in list_audit(url) if a["action"] == "list_sync"
                      and a["list"] == "opt_out" and a["added"] == 1], what="sync audited")
    syncs = [a for a in list_audit(url) if a["action"] == "list_sync" and a["list"] == "opt_out"]
    assert (syncs[0]["added"], syncs[0]["removed"], syncs[0]["entries"]) == (3, 0, 3)
    assert (syncs[-1]["added"], syncs[-1]["removed"], syncs[-1]["entries"]) == (1, 1, 3)
    assert syncs[-1]["source"] == str(lst.resolve())
    assert syncs[-1]["actor"].startswith("policy:")

    secret = (Path(g.env["GUARD_SECRET_FILE"])).read_text().strip()
    fp = key_fingerprint(bytes.fromhex(secret))
    r = g.cli("lists", "show")
    assert r.returncode == 0, r.stderr
    zone = time.strftime("%Z")
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("opt_out "))
    assert re.search(rf"\b3\s+\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d {zone}\s+{fp}\s+"
                     rf"{re.escape(str(lst.resolve()))}$", line), line
    assert "key: this guard's key" in r.stdout
    shown = {d["name"]: d for d in json.loads(g.cli("lists", "show", "--json").stdout)}
    assert shown["withdrawn"]["key_fingerprint"] == fp
    # from a shell with another secret: the lists are shown as not matching it
    r = guard_cli(g.workdir, "lists", "show", env={**g.env, "GUARD_SECRET": KEY_B})
    assert f"NOT this guard's key {key_fingerprint(KEY_B.encode())}" in r.stdout


# --- `guard policy test` uses the lists the policy names ------------------------


def test_policy_test_on_a_fresh_store_uses_the_policys_lists(tmp_path: Path, policy_dir: Path):
    env = {"GUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'guard.db'}",
           "GUARD_POLICY": str(policy_dir)}
    assert guard_cli(tmp_path, "db", "upgrade", env=env).returncode == 0
    eml = message_to(tmp_path, WITHDRAWN)
    r = guard_cli(tmp_path, "policy", "test", str(eml), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("action: approve")
    assert "[suppressed-recipient] suppressed" in r.stdout
    lists_dir = policy_dir.resolve() / "lists"
    assert (f"lists:  opt_out ({lists_dir / 'opt_out.csv'}, 3 members), "
            f"withdrawn ({lists_dir / 'withdrawn.csv'}, 2 members)") in r.stdout
    doc = json.loads(guard_cli(tmp_path, "policy", "test", str(eml), "--json", env=env).stdout)
    assert doc["action"] == "approve"
    assert doc["lists"] == [
        {"name": "opt_out", "source": str(lists_dir / "opt_out.csv"), "members": 3},
        {"name": "withdrawn", "source": str(lists_dir / "withdrawn.csv"), "members": 2}]
    # nothing was written: the store still holds no list
    assert "(no lists)" in guard_cli(tmp_path, "lists", "show", env=env).stdout


def test_policy_test_reads_store_lists_and_says_when_one_is_missing(tmp_path: Path,
                                                                    policy_dir: Path):
    store_managed(policy_dir)
    env = {"GUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'guard.db'}",
           "GUARD_POLICY": str(policy_dir)}
    assert guard_cli(tmp_path, "db", "upgrade", env=env).returncode == 0
    eml = message_to(tmp_path, WITHDRAWN)
    r = guard_cli(tmp_path, "policy", "test", str(eml), "--json", env=env)
    assert r.returncode == 0
    assert "warning: list withdrawn is managed in the store but has not been imported" in r.stderr
    doc = json.loads(r.stdout)
    assert {"name": "withdrawn", "source": "store", "members": 0,
            "note": "not imported"} in doc["lists"]
    assert doc["action"] == "delay"
    assert guard_cli(tmp_path, "lists", "import", "withdrawn",
                     str(write_csv(tmp_path / "w.csv", WITHDRAWN)), env=env).returncode == 0
    doc = json.loads(guard_cli(tmp_path, "policy", "test", str(eml), "--json", env=env).stdout)
    assert doc["action"] == "approve"
    assert {"name": "withdrawn", "source": "store", "members": 1} in doc["lists"]


# --- no silent empty history, lists show on a fresh store ----------------------


def test_policy_test_without_the_database_says_so(tmp_path: Path, policy_dir: Path):
    env = {"GUARD_DATABASE_URL": "sqlite:///guard.db", "GUARD_POLICY": str(policy_dir)}
    eml = message_to(tmp_path, WITHDRAWN)
    r = guard_cli(tmp_path, "policy", "test", str(eml), env=env)
    assert r.returncode == 2
    line = one_line(r)
    assert f"no database at {tmp_path / 'guard.db'}" in line
    assert "GUARD_DATABASE_URL" in line and "--no-history" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["policies", eml.name])
    # on purpose: an empty history, the policy's file lists
    r = guard_cli(tmp_path, "policy", "test", str(eml), "--no-history", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("action: approve") and "history: none (--no-history)" in r.stdout
    assert not (tmp_path / "guard.db").exists() and not (tmp_path / "guard.secret").exists()


def test_lists_show_on_a_fresh_store_says_to_upgrade(tmp_path: Path):
    (tmp_path / "guard.db").touch()  # a file, but no guard tables in it
    r = guard_cli(tmp_path, "lists", "show", env={"GUARD_DATABASE_URL": "sqlite:///guard.db"})
    assert r.returncode == 2
    assert "has no guard tables: run `guard db upgrade` first" in one_line(r)
