"""The declared tables (guard/store/schema.py, holds_schema.py) and the migrations agree,
on SQLite and PostgreSQL: the declaration alone creates a store (each index declared
once), the migrated store has exactly what is declared, and the look-alike cache's
reload reads an index rather than the whole of known_addresses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import guard.store.holds_schema  # noqa: F401  (its tables join the metadata)
import guard.store.incidents as _incidents  # noqa: F401  (its table joins the metadata)
from guard.store import db, knowledge, migrate
from guard.store.schema import known_addresses, metadata


def _run(url: str, go: Any) -> Any:
    async def main() -> Any:
        engine = db.create_engine(url)
        try:
            return await go(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_the_declared_tables_create_a_store(db_url: str) -> None:
    async def go(engine: Any) -> list[str]:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            return sorted(await conn.run_sync(
                lambda c: [i["name"] for i in inspect(c).get_indexes("messages")]))

    names = _run(db_url, go)
    assert names.count("ix_messages_sender_received") == 1, names


def test_the_migrations_build_exactly_the_declared_tables(db_url: str) -> None:
    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": False})
        return list(compare_metadata(ctx, metadata))

    async def go(engine: Any) -> list[Any]:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            return list(await conn.run_sync(diff))

    assert _run(db_url, go) == []


def test_the_known_address_cache_reload_reads_an_index(tmp_path: Path) -> None:
    """40k address rows, most per sender: the org-wide reload is answered from
    ix_known_addresses_scope_last_seen in order (no scan of the table, no sort)."""
    from sqlalchemy import event

    url = f"sqlite:///{tmp_path / 'guard.db'}"

    async def go(engine: Any) -> list[str]:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            now = await db.db_now(conn)
            await conn.execute(known_addresses.insert(), [
                {"address": f"r{i}@x{i % 97}.example", "scope": "" if i % 4 == 0 else
                 f"user{i % 50}", "first_seen": now - i, "last_seen": now - i,
                 "source": "delivered"} for i in range(40_000)])
        seen: list[tuple[str, Any]] = []

        def keep(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _m: Any) -> None:
            if "known_addresses" in statement and not statement.startswith("EXPLAIN"):
                seen.append((statement, params))

        event.listen(engine.sync_engine, "before_cursor_execute", keep)
        async with engine.connect() as conn:
            got = await knowledge.all_known_addresses(conn, limit=5)
            assert got == [f"r{i}@x{i % 97}.example" for i in (0, 4, 8, 12, 16)]
            assert seen, "all_known_addresses ran no query"
            plan: list[str] = []
            for statement, params in list(seen):
                rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
                plan += [str(r[-1]) for r in rows]
        return plan

    plan = _run(url, go)
    assert any("ix_known_addresses_scope_last_seen" in step for step in plan), plan
    assert not any(step.startswith("SCAN known_addresses") for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
