"""`guard db upgrade`: Alembic migrations, run on our own async engine.

On PostgreSQL an advisory lock serialises instances that start at the same time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_LOCK_KEY = 0x6775617264  # "guard"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return cfg


def _upgrade(sync_conn: Any, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        await conn.run_sync(_upgrade, revision)


def _current(sync_conn: Any) -> tuple[str | None, str | None]:
    ctx = MigrationContext.configure(sync_conn)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return ctx.get_current_revision(), head


async def current_revision(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """(revision in the database, newest revision this code knows)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
