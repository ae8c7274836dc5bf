"""What the command groups share: the settings a command runs with, its store, who runs
it, and its one-line failures.

Nothing here imports the store, the policy or the app at import time: `guard serve`
must set up the metrics for several processes before prometheus_client is imported,
and the parser is built before any command runs."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from guard.config import ConfigError, Settings, load_settings, shipped_policy

if TYPE_CHECKING:
    from guard.policy import Policy
    from guard.store.access import Store

T = TypeVar("T")

def language(args: argparse.Namespace, env: dict[str, str] | None = None) -> str:
    """--lang, else the locale (LC_ALL, then LC_MESSAGES, then LANG, as POSIX reads them):
    "ja" for a Japanese one, else "en"."""
    if getattr(args, "lang", None):
        return str(args.lang)
    env = dict(os.environ) if env is None else env
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(name):
            return "ja" if env[name].lower().startswith("ja") else "en"
    return "en"


def add_lang(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", choices=("en", "ja"),
                        help="language of errors (default: from LC_ALL, LC_MESSAGES, "
                        "LANG)")


DEV_DEFAULTS = {
    "GUARD_SMTP_LISTEN": "127.0.0.1:2525",
    "GUARD_SMTP_MODE": "trusted",
    "GUARD_TRUSTED_NETWORKS": "127.0.0.0/8,::1/128",
    "GUARD_UPSTREAM": "smtp://127.0.0.1:2526",
    "GUARD_WEB_LISTEN": "127.0.0.1:8025",
    "GUARD_DATABASE_URL": "sqlite:///guard.db",
    "GUARD_HOSTNAME": "guard.localhost",
    # quick retries, so a newcomer sees deferral and retry without waiting 5 minutes
    "GUARD_DELIVERY__MIN_BACKOFF": "10",
    "GUARD_DELIVERY__MAX_BACKOFF": "60",
}


class UsageError(Exception):
    """A command was given something it cannot use (one line, exit 2)."""


def settings_of(args: argparse.Namespace, dev: bool = False) -> Settings:
    """The settings: --config (or GUARD_CONFIG), then GUARD_* variables; with dev, the
    `guard dev` defaults under them and the shipped example policy if none is set."""
    env = dict(os.environ)
    if dev:
        env = {**DEV_DEFAULTS, **env}
    settings = load_settings(getattr(args, "config", None), env)
    if dev and not settings.policy.path:
        example = shipped_policy()
        if example is None:
            raise ConfigError("the shipped example policy is not installed: set policy.path "
                              "(GUARD_POLICY)")
        settings.policy.path = str(example)
    return settings


def with_store(settings: Settings, fn: Callable[[Store], Awaitable[T]], *,
               write: bool = False, upgrade: bool = False) -> T:
    """fn(store) on the configured database, opened by the one way every command opens
    it (guard/store/access.py): a read command never creates a database, a write
    command gets the writer, and the engine is closed on every path."""
    from guard.store.access import open_store

    async def go() -> T:
        async with open_store(settings.database.url, write=write, upgrade=upgrade) as store:
            return await fn(store)

    return asyncio.run(go())


def os_user() -> str:
    """The account a command runs under (the one behind sudo), for the audit trail."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def fail(message: str, code: int = 2) -> int:
    """One line on stderr; the exit code."""
    print(f"guard: {message}", file=sys.stderr)
    return code


def policy_path(args: argparse.Namespace, settings: Settings) -> Path:
    """--policy, else the configured policy; never the shipped example by surprise."""
    from guard.app import require_policy

    if getattr(args, "policy", None):
        return Path(args.policy)
    try:
        return require_policy(settings)
    except ConfigError as e:
        raise ConfigError(f"{e}; or name the policy on the command line") from e


def load_policy_at(path: Path | None) -> Policy:
    """The policy at `path`; None: the policy that lets everything pass."""
    from guard.policy import default_policy as pass_all
    from guard.policy import load_policy

    return pass_all() if path is None else load_policy(path)
