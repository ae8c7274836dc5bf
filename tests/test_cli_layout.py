"""The command groups (guard/cli/: one module each) and what building the parser may
import: `guard serve` sets up the metrics for several processes before
prometheus_client is imported, so the parser and the groups import only settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys
from guard.cli.main import build_parser
build_parser().parse_args(["queue", "list"])
loaded = sorted(m for m in ("prometheus_client", "guard.app", "guard.hold", "guard.web",
                            "guard.policy", "guard.store.access", "guard.store.writer",
                            "uvicorn", "starlette") if m in sys.modules)
print(",".join(loaded))
"""


def test_the_parser_imports_no_metrics_web_or_store_machinery() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_every_group_has_its_module() -> None:
    from guard.cli import main

    names = [g.__name__.rsplit(".", 1)[1] for g in main.GROUPS]
    assert names == ["serve", "users", "db", "queue", "policy", "lists", "history",
                     "incident", "report", "retention", "audit", "config"]
    commands = main.build_parser()._subparsers._group_actions[0].choices
    assert list(commands) == ["serve", "dev", "health", "users", "db", "queue", "policy", "lists",
                              "domains", "history", "incident", "report", "purge", "audit",
                              "lookup", "config"]


@pytest.mark.parametrize("command", [["queue", "retry", "--all"], ["queue", "retry", "X"]])
def test_retry_on_an_unreachable_database_is_one_line(tmp_path: Path,
                                                      command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env["GUARD_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/none"
    r = subprocess.run([sys.executable, "-m", "guard.cli", *command], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.startswith("guard: the database could not be updated: ")
    assert r.stderr.count("\n") == 1 and "127.0.0.1" in r.stderr and "Traceback" not in r.stderr
