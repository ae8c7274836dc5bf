"""Suppression lists: one declared source per list, kept in the store as keyed digests.

Every list has exactly one source, so a replaced list never comes back:

- **file**: the policy names a CSV file (`opt_out: lists/opt_out.csv`). The store's copy
  is synced from it on every policy load (when the file's content, the key or the
  digest scheme changed), and `guard lists import` of that name is refused.
- **store**: the policy says `withdrawn: {source: store}`, or does not name the list at
  all. `guard lists import` manages it; no policy load touches its entries.

Rules that never silently replace either source:

- the policy names a file for a list the store manages: that policy is refused (the
  last good one stays; at start the guard does not start), naming both sources;
- the policy says `source: store` for a list synced from a file: the store takes it
  over with its entries as they are (audited);
- a file list the policy no longer names keeps its entries and still applies (the safe
  direction), with a warning, until `guard lists remove` drops it.

Each sync or import is one transaction with one audit row (entries added, removed).
Each list records the fingerprint of the key that hashed it and the digest scheme: a
file list hashed otherwise is synced again, a store list hashed otherwise is an error
(`guard serve` does not start, `guard policy test` exits non-zero), never a list that
silently matches nobody.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from guard.mail.digests import DIGEST_SCHEME, address_digest, key_fingerprint
from guard.policy import Policy
from guard.policy.csvread import RowError
from guard.policy.datafiles import parse_address_csv
from guard.store import AsyncConnection, AsyncEngine, knowledge
from guard.store.knowledge import ListChange, ListRow
from guard.store.writer import BatchWriter

log = logging.getLogger("guard.knowledge.lists")

# store_meta name of the serving guard's key: "<fingerprint>/<scheme>"
LIST_KEY = "list_key"


class ListSourceError(Exception):
    """A list would get a second source (one line naming both)."""


class ListKeyError(Exception):
    """A list was hashed under another key or digest scheme (one line, with the fix)."""


@dataclass(frozen=True)
class ListKey:
    """The key the digests are made with, as far as anyone may know it."""

    key: bytes
    where: str  # where the secret lives, for messages ("/var/lib/guard/guard.secret")

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.key)

    @property
    def stamp(self) -> str:
        return f"{self.fingerprint}/{DIGEST_SCHEME}"

    def matches(self, row: ListRow) -> bool:
        return (row.key_fingerprint, row.digest_scheme) == (self.fingerprint, DIGEST_SCHEME)


@dataclass
class ListFile:
    """A CSV list read and hashed in memory (the sync stores it, `policy test` uses it)."""

    path: Path
    sha256: str = ""
    digests: frozenset[bytes] = frozenset()
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def read_list_file(path: Path, key: bytes) -> ListFile:
    """Parse and hash one list file (seconds for 100k rows: call it in a thread)."""
    result = ListFile(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        result.errors.append(RowError(0, "", f"cannot read {path}: {e.strerror}"))
        return result
    result.sha256 = hashlib.sha256(data).hexdigest()
    parsed = parse_address_csv(data)
    if not parsed.ok:
        result.errors = list(parsed.errors)
        return result
    result.digests = frozenset(address_digest(key, a) for a in parsed.addresses)
    return result


def describe_errors(errors: list[RowError], limit: int = 10) -> str:
    return "; ".join(f"line {e.line}: {e.reason}" if e.line else e.reason
                     for e in errors[:limit])


def source_conflicts(policy: Policy, rows: dict[str, ListRow]) -> str | None:
    """One line if the policy names a file for a list the store manages, else None."""
    clashes = [(name, path, rows[name]) for name, path in sorted(policy.suppression_lists.items())
               if name in rows and rows[name].kind == "store"]
    if not clashes:
        return None
    return "; ".join(
        f"list {name}: the policy names the file {path}, but the store manages this list "
        f"(imported with `guard lists import`, {row.entries} entries): declare it "
        f"`{name}: {{source: store}}`, or run `guard lists remove {name}` to let the file "
        "take over" for name, path, row in clashes)


def key_mismatches(rows: list[ListRow], key: ListKey,
                   store_lists: frozenset[str] = frozenset()) -> str | None:
    """One line naming the store-managed lists (by their row, or because the policy
    says `source: store`) hashed under another key or scheme."""
    bad = [r for r in rows if (r.kind == "store" or r.name in store_lists)
           and not key.matches(r)]
    if not bad:
        return None
    return "; ".join(
        f"list {r.name} (managed in the store) was hashed with key "
        f"{r.key_fingerprint or 'unknown'} (digest scheme {r.digest_scheme}), this guard's "
        f"key is {key.fingerprint} (scheme {DIGEST_SCHEME}, secret: {key.where}): run with "
        "the secret it was imported with, or, if the secret was changed on purpose, import "
        f"it again with this guard's settings (`guard lists import {r.name} FILE --new-key`)"
        for r in bad)


@dataclass
class SyncResult:
    name: str
    source: str
    change: ListChange | None = None  # None: unchanged, or not synced (errors)
    errors: list[RowError] = field(default_factory=list)


async def sync_policy_lists(engine: AsyncEngine, writer: BatchWriter, key: ListKey,
                            policy: Policy, actor: str) -> list[SyncResult]:
    """Bring the store in line with the lists the policy declares (see the module doc).

    Raises ListSourceError, before writing anything, if the policy names a file for a
    list the store manages: the caller keeps the last good policy (or does not start).
    """
    async with engine.connect() as conn:
        rows = {r.name: r for r in await knowledge.list_rows(conn)}
    conflict = source_conflicts(policy, rows)
    if conflict:
        raise ListSourceError(conflict)
    for name in sorted(policy.store_lists):
        row = rows.get(name)
        if row is None:
            log.warning("list %s is managed in the store (policy: source: store) but has not "
                        "been imported: `guard lists import %s FILE`", name, name)
        elif row.kind == "file":
            await writer.submit(_take_over(name, actor))
            log.info("list %s is now managed in the store (was synced from %s); its %d "
                     "entries stay", name, row.source, row.entries)
    declared = set(policy.suppression_lists) | set(policy.store_lists)
    for row in rows.values():
        if row.kind == "file" and row.name not in declared:
            log.warning("list %s (synced from %s) is no longer named by the policy; its %d "
                        "entries still apply: `guard lists remove %s` drops them",
                        row.name, row.source, row.entries, row.name)
    results = []
    for name, path in sorted(policy.suppression_lists.items()):
        results.append(await _sync_file(writer, key, name, path, rows.get(name), actor))
    return results


def _take_over(name: str, actor: str) -> Callable[[AsyncConnection, float], Awaitable[None]]:
    async def op(conn: AsyncConnection, now: float) -> None:
        await knowledge.set_list_kind(conn, now, name, "store", actor)
    return op


async def _sync_file(writer: BatchWriter, key: ListKey, name: str, path: Path,
                     row: ListRow | None, actor: str) -> SyncResult:
    result = SyncResult(name, str(path))
    listed = await asyncio.to_thread(read_list_file, path, key.key)
    if not listed.ok:
        result.errors = listed.errors
        log.error("list %s (%s) not imported; the previous entries stay: %s", name, path,
                  describe_errors(listed.errors))
        return result
    if (row is not None and row.source == str(path) and row.file_sha256 == listed.sha256
            and key.matches(row)):
        return result  # up to date
    # (another instance starting at the same time may sync it first: then nothing is
    # written here)
    result.change = c = await writer.submit(lambda conn, now: knowledge.store_list(
        conn, now, name=name, kind="file", source=str(path), file_sha256=listed.sha256,
        digests=listed.digests, key_fingerprint=key.fingerprint, digest_scheme=DIGEST_SCHEME,
        actor=actor, action="list_sync", only_if_changed=True))
    if c is None:
        return result
    log.info("list %s synced from %s: %d entries (%d added, %d removed%s)", name, path,
             c.entries, c.added, c.removed, "; hashed again with this key" if c.rekeyed else "")
    return result


async def import_store_list(engine: AsyncEngine, writer: BatchWriter, key: ListKey,
                            policy: Policy, name: str, path: Path, actor: str,
                            new_key: bool = False) -> tuple[ListFile, ListChange | None]:
    """`guard lists import NAME FILE`: the store manages the list from now on.

    Refused (ListSourceError) when the policy names a file for it, and (ListKeyError)
    when this command's key is not the one the serving guard recorded, unless `new_key`
    (the secret was changed on purpose: the guard records it at its next start)."""
    if name in policy.suppression_lists:
        raise ListSourceError(
            f"list {name} is synced from {policy.suppression_lists[name]} (named by the "
            f"policy): edit that file, or declare `{name}: {{source: store}}` in the policy "
            "to manage it with `guard lists import`")
    async with engine.connect() as conn:
        serving = await knowledge.get_meta(conn, LIST_KEY)
    if serving is not None and serving != key.stamp and not new_key:
        fp, _, scheme = serving.partition("/")
        raise ListKeyError(
            f"this command's key {key.fingerprint} (scheme {DIGEST_SCHEME}, secret: "
            f"{key.where}) is not the key of the guard serving this database ({fp}, scheme "
            f"{scheme}): run it with the guard's GUARD_SECRET / GUARD_SECRET_FILE, or the "
            "list would match nobody (--new-key: the guard's secret was changed on purpose)")
    listed = await asyncio.to_thread(read_list_file, path, key.key)
    if not listed.ok:
        return listed, None
    change = await writer.submit(lambda conn, now: knowledge.store_list(
        conn, now, name=name, kind="store", source=str(path.absolute()),
        file_sha256=listed.sha256, digests=listed.digests, key_fingerprint=key.fingerprint,
        digest_scheme=DIGEST_SCHEME, actor=actor, action="list_import"))
    return listed, change


# ---------------------------------------------------------------- lists without a sync


@dataclass
class ListUse:
    """A list as a decision would use it (shown by `guard policy test`)."""

    name: str
    source: str  # the file, or "store"
    members: int | None  # None: not available
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "source": self.source, "members": self.members,
                **({"note": self.note} if self.note else {})}


@dataclass
class ListSet:
    """Suppression digests for decisions made outside `guard serve` (policy test, replay):
    digest → names of the lists that hold it, like the serving guard's cache."""

    index: dict[bytes, set[str]] = field(default_factory=dict)
    used: list[ListUse] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, name: str, source: str, digests: frozenset[bytes] | set[bytes],
            note: str = "") -> None:
        for d in digests:
            self.index.setdefault(d, set()).add(name)
        self.used.append(ListUse(name, source, len(digests), note))


async def lists_as_served(policy: Policy, key: ListKey, engine: AsyncEngine | None
                          ) -> ListSet:
    """The lists `guard serve` would use with this policy, without writing anything:
    the files the policy names read and hashed here (as the sync does), the lists the
    store manages read from the store (their key checked).

    Raises ListSourceError if the serving guard would refuse this policy, ListKeyError
    if a store-managed list was hashed under another key."""
    out = ListSet()
    rows: dict[str, ListRow] = {}
    if engine is not None:
        async with engine.connect() as conn:
            rows = {r.name: r for r in await knowledge.list_rows(conn)}
        conflict = source_conflicts(policy, rows)
        if conflict:
            raise ListSourceError(conflict)
        mismatch = key_mismatches(list(rows.values()), key, policy.store_lists)
        if mismatch:
            raise ListKeyError(mismatch)
    for name, path in sorted(policy.suppression_lists.items()):
        listed = await asyncio.to_thread(read_list_file, path, key.key)
        if listed.ok:
            out.add(name, str(path), listed.digests)
            continue
        problem = f"list {name}: {path} has bad rows ({describe_errors(listed.errors, 3)})"
        row = rows.get(name)
        if row is not None and key.matches(row) and engine is not None:
            # the serving guard keeps the entries of the last good sync
            async with engine.connect() as conn:
                kept = await knowledge.list_digests(conn, name)
            out.add(name, str(path), kept, note="the entries of the last good sync")
            out.warnings.append(f"{problem}: the guard keeps the {len(kept)} entries of "
                                "the last good sync")
        else:
            out.used.append(ListUse(name, str(path), None, note="not usable"))
            out.warnings.append(f"{problem}: the guard has no entries for it")
    for name in sorted(policy.store_lists):
        if engine is None:
            out.used.append(ListUse(name, "store", None, note="no store"))
            out.warnings.append(f"list {name} is managed in the store, which this test "
                                "does not read (--no-history)")
        elif name not in rows:
            out.used.append(ListUse(name, "store", 0, note="not imported"))
            out.warnings.append(f"list {name} is managed in the store but has not been "
                                f"imported: `guard lists import {name} FILE`")
    if engine is not None:
        # every list the store holds and the serving guard would still apply
        for row in sorted(rows.values(), key=lambda r: r.name):
            if row.name in policy.suppression_lists:
                continue
            note = ""
            if row.kind == "file" and row.name not in policy.store_lists:
                note = "no longer named by the policy"
                if not key.matches(row):  # never hashed with this key: matches nobody
                    note += f"; hashed with key {row.key_fingerprint or 'unknown'}"
            async with engine.connect() as conn:
                digests = await knowledge.list_digests(conn, row.name)
            out.add(row.name, "store" if row.kind == "store" or row.name in policy.store_lists
                    else row.source, digests, note=note)
    return out
