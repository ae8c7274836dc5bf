"""`guard db upgrade`: create the database or bring it to this code's schema, and make
the secret beside it (the store's list keys are hashed with it from the start)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from guard.cli.common import settings_of, with_store

if TYPE_CHECKING:
    from guard.store.access import Store


def add_commands(sub: Any) -> None:
    dbp = sub.add_parser("db", help="database").add_subparsers(dest="db_cmd", required=True)
    dbp.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from guard.store import migrate

    settings = settings_of(args)

    async def revision(store: Store) -> tuple[str | None, str | None]:
        return await migrate.current_revision(store.engine)

    cur, head = with_store(settings, revision, upgrade=True)
    print(f"database at revision {cur} (head {head})")
    from guard.secret import NoSecretHome, load_or_create_secret, secret_home

    try:  # the store's secret lives beside it from the start (guard/secret.py)
        load_or_create_secret(settings)
        print(f"secret: {secret_home(settings).describe()}")
    except NoSecretHome as e:
        print(f"secret: not set ({e})")
    return 0
