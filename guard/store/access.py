"""How the command-line tools open the store: one context manager, one set of errors.

A read command (`guard queue list`, `guard lists show`, `guard policy test`) must never
create a database: run in the wrong directory, it would leave an empty `guard.db` behind
and answer from it as if nothing had ever been sent. A write command opens the store
with its single writer. Either way the engine is disposed of on every path, a failed
migration included, and a missing or outdated schema is one sentence saying what to run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from guard.config import describe_database as describe
from guard.config import sqlite_path
from guard.store import db, migrate
from guard.store.writer import BatchWriter


class StoreNotReady(Exception):
    """The database is missing, unreachable or not at this code's schema (one line)."""


@dataclass
class Store:
    engine: AsyncEngine
    writer: BatchWriter | None  # set when opened with write=True


@contextlib.asynccontextmanager
async def open_store(url: str, *, write: bool = False, upgrade: bool = False
                     ) -> AsyncIterator[Store]:
    """Open the database at `url` for a command.

    write: start a BatchWriter (closed on exit). upgrade: create the database and apply
    migrations first (`guard db upgrade`, imports); otherwise the schema must already
    be current and a SQLite file must already exist."""
    path = sqlite_path(url)
    if path is not None and not upgrade and not path.exists():
        raise StoreNotReady(f"no database at {path.resolve()}: run `guard db upgrade` first "
                            "(or check GUARD_DATABASE_URL / the directory you run in)")
    engine = db.create_engine(url)
    writer: BatchWriter | None = None
    try:
        try:
            if upgrade:
                await migrate.upgrade(engine)
            current, head = await migrate.current_revision(engine)
        except OSError as e:
            raise StoreNotReady(f"database {describe(url)}: {e.strerror or e}") from e
        except Exception as e:  # driver errors: unreachable, refused, permissions
            raise StoreNotReady(f"database {describe(url)}: {_first_line(e)}") from e
        if current is None:
            raise StoreNotReady(f"database {describe(url)} has no guard tables: "
                                "run `guard db upgrade` first")
        if current != head:
            raise StoreNotReady(f"database schema at {current}, this guard needs {head}: "
                                "run `guard db upgrade`")
        if write:
            writer = BatchWriter(engine)
            writer.start()
        yield Store(engine, writer)
    finally:
        if writer is not None:
            await writer.close()
        await engine.dispose()


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
