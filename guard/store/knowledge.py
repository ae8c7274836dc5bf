"""What the detectors know about the world: domains and addresses delivered to, and
suppression lists (as keyed hashes). SQL only; the callers compute domains and digests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.queue import add_audit
from guard.store.schema import known_addresses, known_domains, list_entries, lists

ORG = ""  # the org-wide scope of known_domains


def _upsert(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]],
            keys: Sequence[str], update: Sequence[str]) -> Any:
    ins = (postgresql.insert(table) if conn.dialect.name == "postgresql"
           else sqlite.insert(table))
    stmt = ins.on_conflict_do_update(
        index_elements=list(keys), set_={c: getattr(ins.excluded, c) for c in update})
    return conn.execute(stmt, rows)


async def learn_delivered(conn: AsyncConnection, now: float, sender: str,
                          delivered: Iterable[tuple[str, str]]) -> None:
    """Record (address, registrable domain) pairs that were just delivered to."""
    pairs = sorted(set(delivered))
    if not pairs:
        return
    domains = sorted({d for _, d in pairs if d})
    rows = [{"domain": d, "scope": s, "first_seen": now, "last_seen": now,
             "source": "delivered"} for d in domains for s in (ORG, sender)]
    # first_seen and source stay as they were; last_seen moves
    await _upsert(conn, known_domains, rows, ("domain", "scope"), ("last_seen",))
    await _upsert(conn, known_addresses,
                  [{"address": a, "first_seen": now, "last_seen": now} for a, _ in pairs],
                  ("address",), ("last_seen",))


async def import_domains(conn: AsyncConnection, now: float, domains: Iterable[str],
                         actor: str, source: str) -> int:
    rows = [{"domain": d, "scope": ORG, "first_seen": now, "last_seen": now,
             "source": "import"} for d in sorted(set(domains)) if d]
    if rows:
        await _upsert(conn, known_domains, rows, ("domain", "scope"), ("last_seen",))
    await add_audit(conn, now, "-", actor, "domains_import", detail={
        "source": source, "domains": len(rows)})
    return len(rows)


async def all_known_addresses(conn: AsyncConnection, limit: int = 200_000) -> list[str]:
    rows = await conn.execute(select(known_addresses.c.address)
                              .order_by(known_addresses.c.last_seen.desc()).limit(limit))
    return [r.address for r in rows]


async def replace_list(conn: AsyncConnection, now: float, name: str, source: str,
                       fingerprint: str, digests: Iterable[bytes], actor: str) -> int:
    """Swap a list's entries for new ones in one transaction: never half-imported."""
    ds = sorted(set(digests))
    await conn.execute(delete(list_entries).where(list_entries.c.list_name == name))
    await conn.execute(delete(lists).where(lists.c.name == name))
    await conn.execute(insert(lists).values(name=name, source=source, fingerprint=fingerprint,
                                            entries=len(ds), imported_at=now))
    for i in range(0, len(ds), 5000):
        await conn.execute(insert(list_entries),
                           [{"list_name": name, "digest": d} for d in ds[i:i + 5000]])
    await add_audit(conn, now, "-", actor, "list_import", detail={
        "list": name, "source": source, "entries": len(ds), "fingerprint": fingerprint})
    return len(ds)


async def list_info(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(select(lists).order_by(lists.c.name))
    return [dict(r._mapping) for r in rows]


async def list_fingerprint(conn: AsyncConnection, name: str) -> str | None:
    return (await conn.execute(select(lists.c.fingerprint).where(lists.c.name == name))
            ).scalar_one_or_none()


async def all_known_domains(conn: AsyncConnection) -> list[tuple[str, str]]:
    """Every (domain, scope) pair: the in-memory cache of the inspector is built from it."""
    rows = await conn.execute(select(known_domains.c.domain, known_domains.c.scope))
    return [(r.domain, r.scope) for r in rows]


async def all_list_entries(conn: AsyncConnection) -> list[tuple[str, bytes]]:
    rows = await conn.execute(select(list_entries.c.list_name, list_entries.c.digest))
    return [(r.list_name, bytes(r.digest)) for r in rows]
