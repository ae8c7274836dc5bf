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


def _sqlite_hooks(sync_engine: Engine, busy_timeout: float | None = None) -> None:
    busy_ms = int((30.0 if busy_timeout is None else busy_timeout) * 1000)

    @event.listens_for(sync_engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _rec: Any) -> None:
        # WAL + FULL: a committed transaction survives a power loss (SQLite docs:
        # WAL with NORMAL "might roll back following a power loss").
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        # how long a statement waits for another connection's lock before failing with
        # "database is locked": the deadline on a database that does not answer
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
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


def create_engine(url: str, *, connect_timeout: float | None = None,
                  statement_timeout: float | None = None, **kw: Any) -> AsyncEngine:
    """The async engine. With deadlines (`guard serve`), no database call waits longer
    than them: connecting and taking a pooled connection (`connect_timeout`), each
    statement including COMMIT and the pool's ping (`statement_timeout`; on SQLite the
    wait for another connection's lock). Without (commands such as a long list import),
    only SQLite's 30 s lock wait applies."""
    aurl = async_url(url)
    if aurl.startswith("sqlite"):
        engine = create_async_engine(
            aurl, connect_args={"timeout": statement_timeout or 30}, **kw)
        _sqlite_hooks(engine.sync_engine, statement_timeout)
        return engine
    connect_args: dict[str, Any] = {}
    if connect_timeout is not None:
        connect_args["timeout"] = connect_timeout
        kw.setdefault("pool_timeout", connect_timeout)
    if statement_timeout is not None:
        connect_args["command_timeout"] = statement_timeout  # asyncpg: every query
    return create_async_engine(aurl, pool_size=10, max_overflow=10, pool_pre_ping=True,
                               connect_args=connect_args, **kw)


def create_sqlite_writer_engine(url: str, busy_timeout: float | None = None) -> Engine:
    """A plain (sync) engine on the same SQLite file, for the single writer: its
    statements take microseconds and run inline; only BEGIN and COMMIT, which wait for
    locks and fsync, are sent to the writer's thread (see store/writer.py)."""
    u = make_url(url).set(drivername="sqlite+pysqlite")
    engine = sa_create_engine(u, poolclass=StaticPool, connect_args={
        "timeout": busy_timeout or 30, "check_same_thread": False})
    _sqlite_hooks(engine, busy_timeout)
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


# A write that changes nothing but takes the whole write path (lock, page write, commit,
# fsync): at start, and by the writer while writes are failing.
PROBE_WRITE = text("UPDATE alembic_version SET version_num = version_num")


async def check_writable(engine: AsyncEngine) -> None:
    """One real write: a read-only file or filesystem (or a read-only PostgreSQL) fails
    here, at start, instead of at the first message."""
    async with engine.connect() as conn:
        await conn.execution_options(guard_write=True)  # SQLite: BEGIN IMMEDIATE
        async with conn.begin():
            await conn.execute(PROBE_WRITE)


SQLITE_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def now_sql(conn: AsyncConnection) -> str:
    if is_sqlite(conn):
        return SQLITE_NOW
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


async def db_now(conn: AsyncConnection) -> float:
    """The database clock, seconds since the epoch."""
    return float((await conn.execute(text("SELECT " + now_sql(conn)))).scalar_one())
