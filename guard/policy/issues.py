"""A problem in a policy, as an admin reads it: file:line:col, where, what was expected.

    policies/policy.yaml:42:7: rules[3].action: expected one of pass, tag, bcc, drop, delay,
    confirm, approve, reject; got 'hold'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PolicyIssue:
    """One problem in a policy, ready to print."""

    file: str
    line: int | None
    column: int | None
    where: str  # "rules[3].action", or "" for the file as a whole
    message: str
    warning: bool = False

    def __str__(self) -> str:
        pos = self.file
        if self.line is not None:
            pos += f":{self.line}:{self.column}"
        prefix = "warning: " if self.warning else ""
        return (
            f"{pos}: {prefix}{self.where}: {self.message}"
            if self.where
            else (f"{pos}: {prefix}{self.message}")
        )


class PolicyError(Exception):
    """The policy is invalid. `issues` lists every problem found, in file order."""

    def __init__(self, issues: Iterable[PolicyIssue], files: Iterable[Path] = ()) -> None:
        self.issues = tuple(issues)
        # files read before the error, and files named but missing: a watcher polls
        # these too, so that creating a missing include triggers a new attempt
        self.files = tuple(files)
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid policy")
