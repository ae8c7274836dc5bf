"""What the detectors know about the world: domains and addresses delivered to, and
suppression lists (as keyed hashes). SQL only; the callers compute domains and digests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    literal_column,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.db import SQLITE_NOW, is_sqlite
from guard.store.lifecycle import RecipientState, State
from guard.store.queue import add_audit
from guard.store.schema import (
    known_addresses,
    known_domains,
    list_entries,
    lists,
    messages,
    recipients,
    store_meta,
)

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
                  [{"address": a, "scope": s, "first_seen": now, "last_seen": now,
                    "source": "delivered"} for a in sorted({a for a, _ in pairs})
                   for s in (ORG, sender)],
                  ("address", "scope"), ("last_seen",))


async def import_domains(conn: AsyncConnection, now: float, domains: Iterable[str],
                         actor: str, source: str) -> int:
    rows = [{"domain": d, "scope": ORG, "first_seen": now, "last_seen": now,
             "source": "import"} for d in sorted(set(domains)) if d]
    if rows:
        await _upsert(conn, known_domains, rows, ("domain", "scope"), ("last_seen",))
    await add_audit(conn, now, "-", actor, "domains_import", detail={
        "source": source, "domains": len(rows)})
    return len(rows)


@dataclass(frozen=True)
class Seen:
    """One domain or address known from an imported history (`guard history import`)."""

    value: str  # registrable domain, or address in comparison form
    scope: str  # ORG, or the sender who wrote to it
    first_seen: float


def _seen_rows(seen: Iterable[Seen], key: str, now: float) -> list[dict[str, Any]]:
    first: dict[tuple[str, str], float] = {}
    for s in seen:
        k = (s.value, s.scope)
        first[k] = min(first.get(k, s.first_seen), s.first_seen)
    # a time ahead of the database clock (a log host's skewed clock) counts as now
    return [{key: v, "scope": sc, "first_seen": min(t, now), "last_seen": min(t, now),
             "source": "import"} for (v, sc), t in sorted(first.items())]


async def _upsert_seen(conn: AsyncConnection, table: Any, key: str,
                       rows: list[dict[str, Any]]) -> None:
    """Insert, or move first_seen back to an older imported time (a row the guard
    learned itself keeps its source and last_seen)."""
    ins = (postgresql.insert(table) if conn.dialect.name == "postgresql"
           else sqlite.insert(table))
    stmt = ins.on_conflict_do_update(
        index_elements=[key, "scope"],
        set_={"first_seen": case((ins.excluded.first_seen < table.c.first_seen,
                                  ins.excluded.first_seen), else_=table.c.first_seen)})
    for i in range(0, len(rows), 5000):
        await conn.execute(stmt, rows[i:i + 5000])


async def import_history(conn: AsyncConnection, now: float, domains: Iterable[Seen],
                         addresses: Iterable[Seen], actor: str, source: str,
                         detail: dict[str, Any]) -> tuple[int, int]:
    """Mark domains and addresses known (source "import", their first-seen times), in
    one transaction with one audit row; (domain rows, address rows) written."""
    drows = _seen_rows(domains, "domain", now)
    arows = _seen_rows(addresses, "address", now)
    await _upsert_seen(conn, known_domains, "domain", drows)
    await _upsert_seen(conn, known_addresses, "address", arows)
    await add_audit(conn, now, "-", actor, "history_import", detail={
        "source": source, "domains": len(drows), "addresses": len(arows), **detail})
    return len(drows), len(arows)


async def all_known_addresses(conn: AsyncConnection, limit: int = 200_000) -> list[str]:
    """Org-wide known addresses, most recent first (the look-alike cache)."""
    rows = await conn.execute(select(known_addresses.c.address)
                              .where(known_addresses.c.scope == ORG)
                              .order_by(known_addresses.c.last_seen.desc()).limit(limit))
    return [r.address for r in rows]


async def known_among(conn: AsyncConnection, addresses: Sequence[str],
                      scope: str) -> set[str]:
    """Which of these addresses (comparison form) are known in this scope: one lookup by
    primary key per message, so every instance answers alike at once."""
    found: set[str] = set()
    wanted = sorted(set(addresses))
    for i in range(0, len(wanted), 500):
        rows = await conn.execute(select(known_addresses.c.address).where(
            known_addresses.c.scope == scope,
            known_addresses.c.address.in_(wanted[i:i + 500])))
        found.update(r.address for r in rows)
    return found


@dataclass(frozen=True)
class Volume:
    """Distinct external recipients of one sender in the last hour and day: those it
    sent to before a moment and a new message's own, counted up to `cap` (a count that
    reached the cap is "at least"; 0 = no cap)."""

    hour: int
    day: int
    cap: int = 0

    def at_least(self, n: int) -> bool:
        return bool(self.cap) and n >= self.cap


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def sender_volume(conn: AsyncConnection, sender: str, these: Sequence[str],
                        internal_domains: Iterable[str], until: float | None = None,
                        cap: int = 0) -> Volume:
    """Count as Exchange Online's outbound recipient limits do: distinct recipients
    (compared without case), of held, queued and delivered mail (rejected mail and
    recipients a person dropped do not count), outside the internal domains (and their
    subdomains), plus `these`: the new message's external recipients, lower-cased.
    `until`: the moment to count back from (default: the database clock now).
    `cap`: stop counting there (0 = count all). The sender's messages are read newest
    first, a page at a time, until the cap is reached or the day is done, so a sender
    with 20,000 recipients a day costs what one with `cap` does (neither database
    stops a DISTINCT early: PostgreSQL sorts all of it first)."""
    mine = sorted(set(these))
    want = cap - len(mine) if cap else 0
    if cap and want <= 0:  # this message alone reaches the cap
        return Volume(len(mine), len(mine), cap)
    # the database clock inside the query (no round trip of its own per message), in a
    # form the planner takes as a constant, so the time range is an index range too
    # (PostgreSQL's clock_timestamp() is volatile: it would filter every row instead)
    moment: Any = until
    if until is None:
        moment = literal_column(SQLITE_NOW if is_sqlite(conn) else
                                "CAST(EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION)")
    addr = func.lower(recipients.c.address)
    counted = [recipients.c.state != RecipientState.DROPPED.value,
               *[not_(or_(addr.like("%@" + _like_escape(d), escape="\\"),
                          addr.like("%." + _like_escape(d), escape="\\")))
                 for d in sorted(set(internal_domains)) if d]]
    if mine:  # |before ∪ these| = |these| + |before \ these|
        counted.append(addr.not_in(mine))
    hour: set[str] = set()
    day: set[str] = set()
    # a page of the sender's messages' recipients, newest first (a message without a
    # counted recipient is a row too: its time moves the page on); the next page starts
    # at the oldest time read (<=: rows sharing it are read again, harmless for a set),
    # or takes all of one instant when a whole page shares it; each page twice the last
    size = max(want, 100) if want else 0
    upper: Any = moment
    bound: Literal["<", "<=", "=="] = "<"
    start_of_day: Any = moment - 86400
    now = until
    while True:
        at = messages.c.received_at
        query = (select(at.label("at"), addr.label("address"), moment.label("now")
                        if now is None else literal(now).label("now"))
                 .select_from(messages.outerjoin(recipients, and_(
                     recipients.c.message_id == messages.c.id, *counted)))
                 .where(messages.c.sender == sender, at >= start_of_day,
                        at < upper if bound == "<" else at <= upper if bound == "<=" else
                        at == upper,
                        messages.c.state != State.REJECTED.value)
                 .order_by(at.desc()))
        if size and bound != "==":
            query = query.limit(size)
        page = query.subquery()
        # each address once per page (the database folds repeats), with its latest
        # time (in the hour or not) and the page's extent
        rows = (await conn.execute(
            select(page.c.address, func.max(page.c.at).label("latest"),
                   func.min(page.c.at).label("oldest"), func.count().label("n"),
                   func.max(page.c.now).label("now"))
            .group_by(page.c.address))).all()
        if not rows:
            break
        now = float(rows[0].now)
        for r in rows:
            if r.address is not None:
                day.add(r.address)
                if r.latest >= now - 3600:
                    hour.add(r.address)
        oldest = min(r.oldest for r in rows)
        if want and len(day) >= want and (len(hour) >= want or oldest < now - 3600):
            break  # enough: the hour's messages all came before the older ones
        start_of_day = now - 86400
        if bound == "==":  # that instant is done: on below it
            bound = "<"
        elif not size or sum(r.n for r in rows) < size:
            break  # the day is done
        elif bound == "<=" and oldest == upper:  # a whole page of one instant
            bound = "=="
        else:
            bound, upper = "<=", oldest
        # the same few recipients again and again: fewer, larger pages (at worst about
        # twice the rows of reading the whole day at once)
        size *= 2
    n_hour, n_day = len(hour), len(day)
    if want:
        n_hour, n_day = min(n_hour, want), min(n_day, want)
    return Volume(len(mine) + n_hour, len(mine) + n_day, cap)


@dataclass
class ListRow:
    """One suppression list as stored (entries are in list_entries)."""

    name: str
    kind: str  # "file" (synced from the file the policy names) | "store" (guard lists import)
    source: str  # the file synced or last imported
    file_sha256: str
    entries: int
    synced_at: float
    key_fingerprint: str  # "" = hashed before fingerprints were recorded
    digest_scheme: int


@dataclass
class ListChange:
    entries: int
    added: int
    removed: int
    rekeyed: bool  # the key or digest scheme changed: every entry was hashed again


def _list_row(r: Any) -> ListRow:
    return ListRow(r.name, r.kind, r.source, r.fingerprint, r.entries, r.imported_at,
                   r.key_fingerprint, r.digest_scheme)


async def list_rows(conn: AsyncConnection) -> list[ListRow]:
    return [_list_row(r) for r in await conn.execute(select(lists).order_by(lists.c.name))]


async def list_row(conn: AsyncConnection, name: str) -> ListRow | None:
    r = (await conn.execute(select(lists).where(lists.c.name == name))).first()
    return None if r is None else _list_row(r)


async def list_digests(conn: AsyncConnection, name: str) -> set[bytes]:
    rows = await conn.execute(select(list_entries.c.digest)
                              .where(list_entries.c.list_name == name))
    return {bytes(r.digest) for r in rows}


async def lists_version(conn: AsyncConnection) -> tuple[int, float]:
    """(number of lists, latest import or sync): changes whenever a list does, read by
    every serving instance every second (one row from a table of a few rows)."""
    row = (await conn.execute(select(func.count(), func.max(lists.c.imported_at)))).one()
    return int(row[0]), float(row[1] or 0.0)


async def _lock_list(conn: AsyncConnection, name: str) -> None:
    """Writers of one list take turns (PostgreSQL: a transaction-scoped advisory lock, so
    two imports, or two instances syncing at start, never mix; the second one then reads
    what the first committed). SQLite writers already take turns (BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(b"guard.list:" + name.encode()).digest()[:8],
                             "big", signed=True)
        await conn.execute(select(func.pg_advisory_xact_lock(key)))


async def store_list(conn: AsyncConnection, now: float, *, name: str, kind: str, source: str,
                     file_sha256: str, digests: Iterable[bytes], key_fingerprint: str,
                     digest_scheme: int, actor: str, action: str,
                     only_if_changed: bool = False) -> ListChange | None:
    """Make a list hold exactly `digests`, in one transaction (never half-imported), and
    write one audit row saying how many entries were added and removed.

    `only_if_changed` (a policy sync): None, and nothing written, when the store already
    holds this file's content under this key (another instance synced it first)."""
    await _lock_list(conn, name)
    new = set(digests)
    old_row = await list_row(conn, name)
    if only_if_changed and old_row is not None and (
            old_row.kind, old_row.source, old_row.file_sha256, old_row.key_fingerprint,
            old_row.digest_scheme) == (kind, source, file_sha256, key_fingerprint,
                                       digest_scheme):
        return None
    old = await list_digests(conn, name) if old_row is not None else set()
    rekeyed = old_row is not None and (old_row.key_fingerprint, old_row.digest_scheme) != (
        key_fingerprint, digest_scheme)
    if rekeyed:  # digests under another key mean nothing here: replace them all
        added, removed = sorted(new), sorted(old)
    else:
        added, removed = sorted(new - old), sorted(old - new)
    values = {"source": source, "fingerprint": file_sha256, "entries": len(new),
              "imported_at": now, "kind": kind, "key_fingerprint": key_fingerprint,
              "digest_scheme": digest_scheme}
    if old_row is None:
        await conn.execute(insert(lists).values(name=name, **values))
    else:
        await conn.execute(update(lists).where(lists.c.name == name).values(**values))
    if rekeyed:
        await conn.execute(delete(list_entries).where(list_entries.c.list_name == name))
    else:
        for i in range(0, len(removed), 1000):
            await conn.execute(delete(list_entries).where(
                list_entries.c.list_name == name,
                list_entries.c.digest.in_(removed[i:i + 1000])))
    for i in range(0, len(added), 5000):
        await conn.execute(insert(list_entries),
                           [{"list_name": name, "digest": d} for d in added[i:i + 5000]])
    await add_audit(conn, now, "-", actor, action, detail={
        "list": name, "kind": kind, "source": source, "entries": len(new),
        "added": len(added), "removed": len(removed), "rekeyed": rekeyed,
        "key_fingerprint": key_fingerprint, "digest_scheme": digest_scheme,
        "file_sha256": file_sha256})
    return ListChange(len(new), len(added), len(removed), rekeyed)


async def remove_list(conn: AsyncConnection, now: float, name: str, actor: str,
                      why: str) -> int | None:
    """Drop a list and its entries (audited); None if there is no such list."""
    await _lock_list(conn, name)
    row = await list_row(conn, name)
    if row is None:
        return None
    await conn.execute(delete(list_entries).where(list_entries.c.list_name == name))
    await conn.execute(delete(lists).where(lists.c.name == name))
    await add_audit(conn, now, "-", actor, "list_remove", detail={
        "list": name, "kind": row.kind, "source": row.source, "removed": row.entries,
        "why": why})
    return row.entries


async def set_list_kind(conn: AsyncConnection, now: float, name: str, kind: str,
                        actor: str) -> None:
    """A list changes hands (the policy now says the store manages it): entries stay."""
    await _lock_list(conn, name)
    row = await list_row(conn, name)
    if row is None or row.kind == kind:
        return
    await conn.execute(update(lists).where(lists.c.name == name).values(kind=kind))
    await add_audit(conn, now, "-", actor, "list_source", detail={
        "list": name, "from": row.kind, "to": kind, "source": row.source,
        "entries": row.entries})


async def get_meta(conn: AsyncConnection, name: str) -> str | None:
    return (await conn.execute(select(store_meta.c.value).where(store_meta.c.name == name))
            ).scalar_one_or_none()


async def set_meta(conn: AsyncConnection, now: float, name: str, value: str) -> None:
    await _upsert(conn, store_meta, [{"name": name, "value": value, "updated_at": now}],
                  ("name",), ("value", "updated_at"))


async def all_known_domains(conn: AsyncConnection) -> list[tuple[str, str]]:
    """Every (domain, scope) pair: the in-memory cache of the inspector is built from it."""
    rows = await conn.execute(select(known_domains.c.domain, known_domains.c.scope))
    return [(r.domain, r.scope) for r in rows]


async def all_list_entries(conn: AsyncConnection) -> list[tuple[str, bytes]]:
    rows = await conn.execute(select(list_entries.c.list_name, list_entries.c.digest))
    return [(r.list_name, bytes(r.digest)) for r in rows]


async def domain_history(conn: AsyncConnection) -> list[tuple[str, str, float]]:
    """Every (domain, scope, first_seen): `guard policy replay` rebuilds the history as
    it was when each message arrived."""
    rows = await conn.execute(select(known_domains.c.domain, known_domains.c.scope,
                                     known_domains.c.first_seen))
    return [(r.domain, r.scope, r.first_seen) for r in rows]


async def address_history(conn: AsyncConnection) -> list[tuple[str, str, float]]:
    """Every (address, scope, first_seen), like domain_history."""
    rows = await conn.execute(select(known_addresses.c.address, known_addresses.c.scope,
                                     known_addresses.c.first_seen))
    return [(r.address, r.scope, r.first_seen) for r in rows]
