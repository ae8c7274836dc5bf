"""The `guard` command: the parser, main(), and the one-line error handling.

Every error is one line on stderr and a non-zero exit (2: configuration or usage, 1:
anything else); the traceback of an unexpected error only with --debug or GUARD_DEBUG=1.

Each command group is one module with an `add_commands(sub)` and its `cmd_*` functions:
serve.py (serve, dev), users.py, db.py, queue.py (list, show, release, cancel, retry),
policy.py (check, test, replay), lists.py (lists, domains), history.py (history import),
incident.py (incident report, open, update), report.py (report near-misses, rules, incident),
retention.py (purge), audit.py (audit export, lookup),
config.py (config show).
To add a command: put it in its group's module (or a new module for a new group, added
to GROUPS below), import what it needs inside the function (the parser is built before
`guard serve` sets up its metrics), open the database only through common.with_store()
or guard.store.access.open_store(), and raise ConfigError/UsageError for a one-line
refusal.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from guard.cli import (
    audit,
    config,
    db,
    history,
    incident,
    lists,
    policy,
    queue,
    report,
    retention,
    serve,
    users,
)
from guard.cli.common import UsageError
from guard.config import ConfigError

# in the order `guard --help` lists them
GROUPS = (serve, users, db, queue, policy, lists, history, incident, report, retention, audit,
          config)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (its default prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="guard", description="Outbound email guard")
    p.add_argument("--config", "-c", help="config file (TOML); also GUARD_CONFIG")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an unexpected error (also GUARD_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(sub)
    return p


def _error(message: object) -> None:
    print("guard: " + " ".join(str(message).split()), file=sys.stderr)


def _quiet_broken_pipe() -> int:
    # the reader went away (`guard queue list | head`): nothing more to say, and the
    # interpreter's own flush at exit must not complain either
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # as a command killed by SIGPIPE


def _known_error(e: Exception) -> int:
    """The exit code of an error that is one line by design (0: not one of them)."""
    # imported here: `guard serve` must set up the metrics before prometheus_client is
    # imported (guard.store pulls it in)
    from guard.policy import PolicyError
    from guard.store.access import StoreNotReady
    from guard.users import UsersFileError

    if isinstance(e, (ConfigError, StoreNotReady, UsageError)):
        return 2
    if isinstance(e, (UsersFileError, PolicyError)):
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("GUARD_DEBUG", "") not in ("", "0")
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        known = _known_error(e)
        if known:
            _error(e)
            return known
        if debug:
            traceback.print_exc()
        if isinstance(e, OSError):  # a file not there or not readable, a port in use
            _error(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else e)
        else:
            _error(f"unexpected error: {type(e).__name__}: {e} "
                   "(--debug or GUARD_DEBUG=1 shows the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
