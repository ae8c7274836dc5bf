"""The checks that keep the house: the import contracts and the type checker fail the
build on a violation. Each is run here on a copy of the package with one violation put in,
so a check that silently stopped checking would fail this test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _copy(tmp_path: Path) -> Path:
    """The package and its configuration, without caches."""
    dst = tmp_path / "tree"
    shutil.copytree(ROOT / "guard", dst / "guard",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def _run(tree: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy, not the installed package
    return subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=600)


def _add_line(path: Path, line: str) -> None:
    text = path.read_text(encoding="utf-8")
    head, sep, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + line + "\n" + rest if sep else line + "\n" + text,
                    encoding="utf-8")


@pytest.mark.parametrize(("module", "line", "contract"), [
    # a back-up arrow: the hold lifecycle reaching up into the web pages
    ("guard/hold/model.py", "import guard.web.review  # noqa", "Rooms are layered"),
    # SQL outside the store
    ("guard/relay/dsn.py", "import sqlalchemy  # noqa", "Only the store speaks SQL"),
    # the policy learning about SMTP
    ("guard/policy/schema.py", "import aiosmtpd  # noqa",
     "Policy, inspection and the mail model know no SMTP, SQL or web"),
    # the store's SMTP neighbour wording replies from the policy's rooms
    ("guard/smtp/replies.py", "import guard.policy  # noqa", "Only smtp/ builds SMTP replies"),
    # a cycle: the address forms reaching up into the policy that uses them
    ("guard/mail/addresses.py", "import guard.policy  # noqa", "No import cycles"),
    # inside hold/: notices below the lifecycle, the lifecycle below the timers
    ("guard/hold/notify/notices.py", "import guard.hold.lifecycle  # noqa", "Inside hold/"),
    ("guard/hold/lifecycle.py", "import guard.hold.timers  # noqa", "Inside hold/"),
    ("guard/hold/model.py", "import guard.hold.notify.texts  # noqa", "Inside hold/"),
])
def test_import_contracts_fail_on_a_violation(tmp_path: Path, module: str, line: str,
                                              contract: str) -> None:
    tree = _copy(tmp_path)
    clean = _run(tree, str(BIN / "lint-imports"), "--no-cache")
    assert clean.returncode == 0, clean.stdout[-3000:]
    assert any(line.startswith(contract) and line.rstrip().endswith("KEPT")
               for line in clean.stdout.splitlines()), clean.stdout[-3000:]
    _add_line(tree / module, line)
    broken = _run(tree, str(BIN / "lint-imports"), "--no-cache")
    assert broken.returncode != 0
    verdicts = [line for line in broken.stdout.splitlines() if line.startswith(contract)]
    assert verdicts and verdicts[0].rstrip().endswith("BROKEN"), broken.stdout[-3000:]


def test_type_checker_fails_on_a_type_error(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    target = tree / "guard" / "ids.py"
    clean = _run(tree, sys.executable, "-m", "mypy", "--no-incremental", str(target))
    assert clean.returncode == 0, clean.stdout
    target.write_text(target.read_text(encoding="utf-8")
                      + "\n\ndef _broken() -> int:\n    return 'not an int'\n",
                      encoding="utf-8")
    broken = _run(tree, sys.executable, "-m", "mypy", "--no-incremental", str(target))
    assert broken.returncode != 0
    assert "Incompatible return value type" in broken.stdout
