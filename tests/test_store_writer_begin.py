"""The SQLite writer's BEGIN IMMEDIATE runs on the event loop when it needs no wait
(guard/store/writer.py, BatchWriter._sqlite_begin_at_once); when another connection
holds the write lock it waits in the writer's thread as before, and the connection's
lock wait (busy_timeout) is what it was afterwards in both cases."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import text

from guard.store.db import create_engine
from guard.store.schema import metadata
from guard.store.writer import BatchWriter

PROBE = text("UPDATE probe SET n = n + 1")


async def _writer(path: Path, deadline: float = 5.0) -> tuple[Any, BatchWriter]:
    engine = create_engine(f"sqlite:///{path}", statement_timeout=deadline)
    async with engine.begin() as c:
        await c.run_sync(metadata.create_all)
        await c.execute(text("CREATE TABLE probe (n INTEGER)"))
        await c.execute(text("INSERT INTO probe VALUES (0)"))
    w = BatchWriter(engine, statement_timeout=deadline)
    w.start()
    return engine, w


def _busy_ms(w: BatchWriter) -> int:
    assert w._sqlite is not None
    raw = w._sqlite.connection.dbapi_connection
    assert raw is not None
    return int(raw.execute("PRAGMA busy_timeout").fetchone()[0])


async def _op(conn: Any, now: float) -> int:
    return int((await conn.execute(PROBE)).rowcount)


async def test_begin_at_once_when_the_lock_is_free(tmp_path: Path) -> None:
    engine, w = await _writer(tmp_path / "g.db")
    try:
        assert await w.submit(_op) == 1  # the first opens the connection in the thread
        threads: list[str] = []
        begin = w._sqlite_begin

        def spy() -> Any:
            threads.append(threading.current_thread().name)
            return begin()
        w._sqlite_begin = spy  # type: ignore[method-assign]
        assert await asyncio.gather(*(w.submit(_op) for _ in range(5))) == [1] * 5
        assert threads and set(threads) == {threading.main_thread().name}
        assert _busy_ms(w) == 5000
    finally:
        await w.close()
        await engine.dispose()


async def test_lock_held_elsewhere_waits_in_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    engine, w = await _writer(path)
    try:
        assert await w.submit(_op) == 1
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        threads: list[str] = []
        begin = w._sqlite_begin

        def spy() -> Any:
            threads.append(threading.current_thread().name)
            return begin()
        w._sqlite_begin = spy  # type: ignore[method-assign]
        pending = asyncio.ensure_future(w.submit(_op))
        await asyncio.sleep(0.3)
        assert not pending.done()  # waiting for the lock, not failed
        other.execute("COMMIT")
        other.close()
        assert await asyncio.wait_for(pending, 10) == 1
        # tried at once on the loop, then waited in the writer's thread
        assert threads[0] == threading.main_thread().name
        assert threads[1].startswith("guard-db-writer")
        assert _busy_ms(w) == 5000
        assert await w.submit(_op) == 1
        assert threads[-1] == threading.main_thread().name  # at once again
    finally:
        await w.close()
        await engine.dispose()


async def test_lock_held_past_the_deadline_fails_as_before(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    engine, w = await _writer(path, deadline=0.5)
    try:
        assert await w.submit(_op) == 1
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            failed = await asyncio.gather(w.submit(_op), return_exceptions=True)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert "locked" in str(failed[0]).lower() or "unavailable" in str(failed[0]).lower()
        assert await w.submit(_op) == 1  # and the next batch works
        assert _busy_ms(w) == 500
    finally:
        await w.close()
        await engine.dispose()
