"""Writing policy files in tests, and reading the errors a load gives."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from guard.policy import PolicyError, load_policy


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return [str(i) for i in info.value.issues if not i.warning]
