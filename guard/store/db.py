"""Engine creation, durability checks, the database clock."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

log = logging.getLogger("guard.store")


class DurabilityError(Exception):
    """The database is configured so that a committed message could be lost."""


def async_url(url: str) -> str:
    """Plain URLs (sqlite:///guard.db, postgresql://…) → their async driver form."""
    u = make_url(url)
    if u.drivername == "sqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def is_sqlite(engine: AsyncEngine | AsyncConnection) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_hooks(sync_engine: Engine) -> None:
    @event.listens_for(sync_engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _rec: Any) -> None:
        # WAL + FULL: a committed transaction survives a power loss (SQLite docs:
        # WAL with NORMAL "might roll back following a power loss").
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()
        # Let SQLAlchemy's "begin" event below emit BEGIN itself (SQLAlchemy's
        # documented recipe for pysqlite/aiosqlite).
        dbapi_conn.isolation_level = None

    @event.listens_for(sync_engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and
        # then writes can fail with SQLITE_BUSY_SNAPSHOT when another process (the
        # CLI, a second instance) wrote in between, and busy_timeout does not help.
        if conn.get_execution_options().get("guard_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def create_engine(url: str, **kw: Any) -> AsyncEngine:
    aurl = async_url(url)
    if aurl.startswith("sqlite"):
        engine = create_async_engine(aurl, connect_args={"timeout": 30}, **kw)
        _sqlite_hooks(engine.sync_engine)
        return engine
    return create_async_engine(aurl, pool_size=10, max_overflow=10, pool_pre_ping=True, **kw)


def create_sqlite_writer_engine(url: str) -> Engine:
    """A plain (sync) engine on the same SQLite file, for the single writer: its
    statements take microseconds and run inline; only BEGIN and COMMIT, which wait for
    locks and fsync, are sent to the writer's thread (see store/writer.py)."""
    u = make_url(url).set(drivername="sqlite+pysqlite")
    engine = sa_create_engine(u, poolclass=StaticPool,
                              connect_args={"timeout": 30, "check_same_thread": False})
    _sqlite_hooks(engine)
    return engine


async def check_durability(engine: AsyncEngine) -> None:
    """Refuse to run on settings that could lose a message answered 250."""
    async with engine.connect() as conn:
        if is_sqlite(conn):
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            sync = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
            if str(mode).lower() != "wal" or int(sync) < 2:
                raise DurabilityError(
                    f"SQLite journal_mode={mode} synchronous={sync}: need WAL and FULL (2) "
                    "or EXTRA (3); a crash could lose accepted mail")
        else:
            sc = (await conn.execute(text("SHOW synchronous_commit"))).scalar_one()
            if sc == "off":
                raise DurabilityError(
                    "PostgreSQL synchronous_commit=off: a commit can be lost after a crash")
            fsync = (await conn.execute(text("SHOW fsync"))).scalar_one()
            if fsync == "off":
                raise DurabilityError("PostgreSQL fsync=off: committed mail can be lost")


SQLITE_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def now_sql(conn: AsyncConnection) -> str:
    if is_sqlite(conn):
        return SQLITE_NOW
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


async def db_now(conn: AsyncConnection) -> float:
    """The database clock, seconds since the epoch."""
    return float((await conn.execute(text("SELECT " + now_sql(conn)))).scalar_one())
