"""Keep the suppression lists in the store in step with the CSV files the policy names.

A list is re-imported when its file's content changes (sha256 fingerprint), as one
transaction: a file with any bad row is refused whole (the old entries stay) and the
errors are reported with their line numbers. Addresses are stored as HMAC-SHA256
digests under the instance secret, never in clear.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from guard.lists import RowError, address_digest, parse_address_csv
from guard.store import knowledge
from guard.store.writer import BatchWriter

log = logging.getLogger("guard.lists")


@dataclass
class ImportResult:
    name: str
    source: str
    entries: int = 0
    changed: bool = False
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


async def import_list(engine: AsyncEngine, writer: BatchWriter, secret: bytes, name: str,
                      path: str | Path, actor: str, force: bool = False) -> ImportResult:
    p = Path(path)
    result = ImportResult(name, str(p))
    try:
        data = await asyncio.to_thread(p.read_bytes)
    except OSError as e:
        result.errors.append(RowError(0, "", f"cannot read {p}: {e.strerror}"))
        return result
    fingerprint = hashlib.sha256(data).hexdigest()
    if not force:
        async with engine.connect() as conn:
            if await knowledge.list_fingerprint(conn, name) == fingerprint:
                return result
    parsed = await asyncio.to_thread(parse_address_csv, data)  # 100k rows: seconds
    if not parsed.ok:
        result.errors = list(parsed.errors)
        return result
    digests = await asyncio.to_thread(lambda: [address_digest(secret, a) for a in parsed.addresses])
    result.entries = await writer.submit(lambda conn, now: knowledge.replace_list(
        conn, now, name, str(p), fingerprint, digests, actor))
    result.changed = True
    return result


async def sync_lists(engine: AsyncEngine, writer: BatchWriter, secret: bytes,
                     lists: dict[str, Path], actor: str) -> list[ImportResult]:
    results = []
    for name, path in sorted(lists.items()):
        r = await import_list(engine, writer, secret, name, path, actor)
        if r.errors:
            log.error("list %s (%s) not imported; the previous entries stay: %s", name, path,
                      "; ".join(f"line {e.line}: {e.reason}" for e in r.errors[:10]))
        elif r.changed:
            log.info("list %s imported from %s: %d entries", name, path, r.entries)
        results.append(r)
    return results
