"""The layers inside hold/ (pyproject.toml, contract "hold-inside"): the service and the
timers drive the lifecycle, the lifecycle sends notices, and notify/ sits below them.
Checked on a copy of the package with one back-up arrow put in, so a contract that
stopped checking fails here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT = str(Path(sys.executable).parent / "lint-imports")


def _tree(tmp_path: Path) -> Path:
    dst = tmp_path / "tree"
    shutil.copytree(ROOT / "guard", dst / "guard",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy, not the installed package
    return subprocess.run([LINT, "--no-cache", "--contract", "hold-inside"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("module", "line"), [
    ("guard/hold/notify/notices.py", "import guard.hold.lifecycle  # noqa"),
    ("guard/hold/lifecycle.py", "import guard.hold.timers  # noqa"),
    ("guard/hold/model.py", "import guard.hold.notify.texts  # noqa"),
])
def test_a_back_up_arrow_inside_hold_breaks_the_contract(tmp_path: Path, module: str,
                                                         line: str) -> None:
    tree = _tree(tmp_path)
    clean = _lint(tree)
    assert clean.returncode == 0, clean.stdout[-3000:]
    path = tree / module
    text = path.read_text(encoding="utf-8")
    head, sep, rest = text.partition("from __future__ import annotations\n")
    assert sep, module
    path.write_text(head + sep + line + "\n" + rest, encoding="utf-8")
    broken = _lint(tree)
    assert broken.returncode != 0
    assert "BROKEN" in broken.stdout and module[:-3].replace("/", ".") in broken.stdout, \
        broken.stdout[-3000:]
