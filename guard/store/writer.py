"""One writer task per process: write operations are committed together (group commit).

SMTP sessions, the delivery worker, the web and the timers submit operations; the writer
runs as many as are waiting in ONE transaction, so a slow fsync or a PostgreSQL round
trip costs once per batch instead of once per message, and never blocks the event loop.
Each operation stays atomic: if a batch fails because of one operation, its operations
are retried one by one, so a bad operation fails alone and the others still commit.

When the database fails (disk full, read-only, stopped, not answering):
- every failed transaction is rolled back or its connection thrown away, so the next
  batch starts clean once the database is back (a failed COMMIT used to leave the
  SQLite connection inside a dead transaction until a restart);
- a batch that failed because the database is unavailable fails whole, at once: trying
  its operations one by one would only wait N times;
- every database call has a deadline (PostgreSQL: connect and statement timeouts on the
  writer's connection; SQLite: the write-lock wait), and a submitter may give up
  earlier (`submit(give_up_after=…)`);
- a write that may have committed although its submitter was told it did not (it gave
  up waiting, or the COMMIT's outcome is unknown) is settled: its `undo` operation runs
  once the database answers again, before anything else is written. On PostgreSQL the
  old connection's server process is ended first, so its COMMIT has either happened or
  never will;
- the write path's state (`health`, shown by /healthz) turns to failing at a failed
  transaction and back at the first commit that wrote rows (a transaction that only
  reads, like a timer's empty claim, commits even on a full disk and proves nothing),
  or once transactions have committed for `RECOVERY_SECONDS` without a failure.

Longer than 400 lines for one job, the single write path and what it does when the
database fails: the SQLite and PostgreSQL halves of a transaction share the state that
makes failure handling correct (the writes to undo, the server process whose COMMIT is
in doubt, whether the last commit wrote rows, the health /healthz reports), and each
rule above is only true if both halves keep it. Split, that state would be read and
written across modules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Insert, TextClause, Transaction, Update, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from guard import metrics
from guard.store.db import SQLITE_NOW, create_sqlite_writer_engine, db_now
from guard.store.faults import (
    StoreUnavailable,
    WriteHealth,
    WriteTimeout,
    describe,
    is_unavailable,
    log_failure,
)
from guard.store.queue import DIRECT, Later
from guard.store.schema import metadata

log = logging.getLogger("guard.store")

T = TypeVar("T")
# writes failed, then transactions commit (without writing rows) for this long: the
# write path counts as working again
RECOVERY_SECONDS = 30.0
# PostgreSQL: the database clock is read at most this long ago, and advanced by this
# host's monotonic clock in between (see BatchWriter._pg_now)
CLOCK_READ_SECONDS = 5.0
# an operation may return a queue.Later (PostgreSQL): its submitter gets the Later's value
Operation = Callable[[AsyncConnection, float], Awaitable[T]]


class WriterClosed(Exception):
    pass


class _InlineConnection:
    """The part of AsyncConnection that operations use (`execute`, `dialect`), over a
    plain SQLite connection: a statement takes microseconds, so it runs inline instead
    of being handed to aiosqlite's thread (3-4 hand-offs per statement, ~90% of the
    writer's cost, measured with py-spy in tests/bench)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect
        self._pending: dict[Any, list[dict[str, Any]]] = {}

    def defer_write(self, statement: Insert | Update,
                    rows: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Collect an INSERT or UPDATE nobody reads back; sent as one executemany per
        statement before the next statement or the commit (a batch of 20 messages:
        4 statements, not 80)."""
        self._pending.setdefault(statement, []).extend(
            rows if isinstance(rows, list) else [rows])

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, {}
            seen = self._observed()
            for stmt in sorted(pending, key=_table_rank):  # parents before children
                rows = pending[stmt]
                plan = None if seen else _write_plan(stmt, rows, self.dialect)
                if plan is None:
                    self._conn.execute(stmt, rows)
                else:
                    self._executemany(plan, rows)

    def _observed(self) -> bool:
        """Statement events are listened to (instrumentation, tests): then SQLAlchemy's
        own execution, which fires them."""
        d = self._conn.dispatch
        return bool(d.before_execute or d.after_execute or d.before_cursor_execute
                    or d.after_cursor_execute)

    def _executemany(self, plan: _WritePlan, rows: list[dict[str, Any]]) -> int:
        """The plan's statement through the DBAPI (executemany, or execute for one row),
        on the connection's open transaction → the rows it changed; an error raised as
        SQLAlchemy raises it (guard.store.faults reads it the same way)."""
        params = plan.parameters(rows)
        raw = self._conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            if len(params) == 1:
                cursor.execute(plan.sql, params[0])
            else:
                cursor.executemany(plan.sql, params)
            return int(cursor.rowcount)
        except self.dialect.loaded_dbapi.Error as e:
            raise sa_exc.DBAPIError.instance(
                plan.sql, params[0] if len(params) == 1 else params, e,
                self.dialect.loaded_dbapi.Error, dialect=self.dialect,
                ismulti=len(params) != 1) from e
        finally:
            cursor.close()

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        self.flush()  # whatever runs next sees every row written before it
        if isinstance(statement, Update) and isinstance(parameters, dict) \
                and not self._observed():
            # a compare-and-set (queue.transition): only its count of rows is read
            plan = _write_plan(statement, [parameters], self.dialect)
            if plan is not None:
                return _Changed(self._executemany(plan, [parameters]))
        return self._conn.execute(statement, parameters)


class _Changed:
    """What an UPDATE without RETURNING gives back: how many rows it changed."""

    __slots__ = ("rowcount",)

    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount


class _WritePlan:
    """A plain INSERT or UPDATE compiled once for one set of keys, as SQLAlchemy compiles
    it for an executemany: its SQL, the bind names in order, the Python-side column
    defaults and the types' bind processors. Sent by the writer straight to the DBAPI's
    executemany: SQLAlchemy's per-execution work (execution context, construct_params
    per row) was about half of a small message's insert (tests: the rows written are the
    same)."""

    __slots__ = ("_columns", "keys", "sql")

    def __init__(self, keys: tuple[str, ...], sql: str,
                 columns: list[tuple[str, Any, Callable[[Any], Any] | None]]) -> None:
        self.keys = keys
        self.sql = sql
        # per bind position: (key in the row or "", default value, bind processor)
        self._columns = columns

    def parameters(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        cols = self._columns
        out = []
        for row in rows:
            values = []
            for key, default, proc in cols:
                v = row[key] if key else default
                values.append(proc(v) if proc is not None and v is not None else v)
            out.append(tuple(values))
        return out


_PLANS: OrderedDict[tuple[Any, tuple[str, ...]], _WritePlan | None] = OrderedDict()


def _write_plan(stmt: Any, rows: list[dict[str, Any]], dialect: Any) -> _WritePlan | None:
    """The plan for these rows (all with the same keys), or None: SQLAlchemy's own
    execution for anything but a plain INSERT or UPDATE whose defaults are constants,
    built once and marked so (DIRECT: plans are kept per statement object)."""
    if not isinstance(stmt, Insert | Update) or not rows \
            or not stmt.get_execution_options().get(DIRECT):
        return None
    keys = tuple(rows[0])
    if any(tuple(r) != keys for r in rows):
        return None
    cache_key = (stmt, keys)
    try:
        plan = _PLANS[cache_key]
    except KeyError:
        plan = _PLANS[cache_key] = _compile_plan(stmt, keys, dialect)
        if len(_PLANS) > 256:  # the least recently used goes (a statement built per call)
            _PLANS.popitem(last=False)
    else:
        _PLANS.move_to_end(cache_key)
    return plan


def _compile_plan(stmt: Insert | Update, keys: tuple[str, ...], dialect: Any
                  ) -> _WritePlan | None:
    compiled: Any = stmt.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
    if (not (compiled.isinsert or compiled.isupdate) or compiled.effective_returning
            or compiled.escaped_bind_names or not compiled.positional or compiled.postfetch
            or compiled.update_prefetch or compiled.literal_execute_params
            or compiled.post_compile_params):
        return None
    defaults: dict[str, Any] = {}
    for col in compiled.insert_prefetch:
        if col.default is None or not col.default.is_scalar or col.key in keys:
            return None
        defaults[col.key] = col.default.arg
    processors = compiled._bind_processors
    columns: list[tuple[str, Any, Callable[[Any], Any] | None]] = []
    for name in compiled.positiontup:
        if name in keys:
            columns.append((name, None, processors.get(name)))
        elif name in defaults:
            columns.append(("", defaults[name], processors.get(name)))
        else:
            return None
    return _WritePlan(keys, compiled.string, columns)


class _PgConnection:
    """The same for PostgreSQL, over the writer's AsyncConnection: writes nobody reads
    back are sent as one executemany per statement (asyncpg pipelines it: one round trip)
    before the next statement or the commit, instead of one round trip per row; the
    statements whose results an operation reads (compare-and-set UPDATEs, claims) still
    run at once, in order."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.dialect = conn.dialect
        self._pending: dict[Any, list[dict[str, Any]]] = {}
        self._cas: dict[Any, list[tuple[dict[str, Any], list[tuple[Any, list[dict[str, Any]]]],
                                        Any, Later[Any]]]] = {}
        self.sent = 0  # statements that went through

    def defer_write(self, statement: Insert | Update | TextClause,
                    rows: dict[str, Any] | list[dict[str, Any]]) -> None:
        self._pending.setdefault(statement, []).extend(
            rows if isinstance(rows, list) else [rows])

    async def defer_cas(self, statement: TextClause, row: dict[str, Any],
                        then: list[tuple[Any, list[dict[str, Any]]]], result: Any
                        ) -> Later[Any]:
        """A compare-and-set whose outcome the operation does not read itself (the end
        of a delivery attempt, queue.transition_later): the rows of one `statement`
        (arrays, one element per row; RETURNING the ids that matched) go as one
        statement at the flush; `then` is written for the rows that matched, and each
        Later gets `result` or None. The same id twice: the first is sent before."""
        if any(c[0]["id"] == row["id"] for c in self._cas.get(statement, ())):
            await self.flush()
        later: Later[Any] = Later(None)
        self._cas.setdefault(statement, []).append((row, then, result, later))
        return later

    async def flush(self) -> None:
        await self._flush_writes()
        if self._cas:
            cas, self._cas = self._cas, {}
            for stmt, entries in cas.items():
                rows = [e[0] for e in entries]
                matched = {r[0] for r in await self._conn.execute(
                    stmt, {k: [r[k] for r in rows] for k in rows[0]})}
                self.sent += 1
                for row, then, result, later in entries:
                    if row["id"] in matched:
                        later.value = result
                        for then_stmt, then_rows in then:
                            self.defer_write(then_stmt, then_rows)
            await self._flush_writes()

    async def _flush_writes(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, {}
            for stmt in sorted(pending, key=_table_rank):  # parents before children
                await self._conn.execute(stmt, pending[stmt])
                self.sent += 1

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        await self.flush()  # whatever runs next sees every row written before it
        result = await self._conn.execute(statement, parameters)
        self.sent += 1
        return result


def _table_rank(statement: Any) -> int:
    # parents before children; deferred writes of one table keep their order (stable);
    # a statement of no one table (PostgreSQL: a whole new message in one) goes first
    table = getattr(statement, "table", None)
    return -1 if table is None else _TABLE_ORDER[table.name]


_TABLE_ORDER = {t.name: i for i, t in enumerate(metadata.sorted_tables)}


@dataclass(eq=False)
class _Entry:
    op: Operation[Any]
    fut: asyncio.Future[Any]
    undo: Operation[Any] | None = None
    submitted: float = field(default_factory=time.monotonic)
    started: bool = False  # taken into a transaction
    abandoned: bool = False  # the submitter stopped waiting


class _TxFailed(Exception):
    """A transaction failed in `phase` (connect, begin, ops, commit)."""

    def __init__(self, phase: str, error: BaseException, in_doubt: bool = False,
                 stale: bool = False) -> None:
        super().__init__(f"{phase}: {describe(error)}")
        self.phase = phase
        self.error = error
        self.in_doubt = in_doubt  # the COMMIT was sent, its outcome is unknown
        self.stale = stale  # a kept connection failed before any statement went through


class BatchWriter:
    def __init__(self, engine: AsyncEngine, batch_max: int = 64, *,
                 statement_timeout: float | None = None) -> None:
        self.engine = engine
        self.batch_max = batch_max
        self.statement_timeout = statement_timeout
        self.health = WriteHealth()
        # SQLite: one plain connection, BEGIN IMMEDIATE and COMMIT (lock waits, fsync)
        # in this thread, statements inline. PostgreSQL: one connection of the async
        # engine (asyncpg) kept by the writer.
        self._sqlite: Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        if engine.dialect.name == "sqlite":
            self._sync_engine = create_sqlite_writer_engine(
                engine.url.render_as_string(hide_password=False),
                busy_timeout=statement_timeout)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="guard-db-writer")
        self._pg: AsyncConnection | None = None
        self._pg_backend: tuple[int, Any] | None = None  # (pid, backend_start)
        self._pg_clock: tuple[float, float] | None = None  # (database clock, monotonic)
        self._pg_last_now = 0.0
        self._fence: tuple[int, Any] | None = None  # a server process whose COMMIT is in doubt
        self._undo: list[Operation[Any]] = []  # settle these before anything else
        self._wrote = False  # the last committed transaction changed rows
        self._changes = 0  # SQLite: total_changes before the transaction
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._waiting: set[_Entry] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="guard-db-writer")

    async def close(self) -> None:
        self._closed = True
        if self._task:
            await self._queue.put(_Entry(_STOP, asyncio.get_running_loop().create_future()))
            await self._task
        if self._undo:
            log.error("stopping with %d in-doubt writes not settled; the messages they "
                      "stored may be delivered although their clients were told 451",
                      len(self._undo))
        if self._pg is not None:
            conn, self._pg = self._pg, None
            try:
                await asyncio.wait_for(conn.close(), self.statement_timeout or 30.0)
            except Exception:  # a server that does not answer: cut the connection
                await self._pg_discard(conn, rollback=False)
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._dispose)
            self._thread.shutdown(wait=False)

    def _dispose(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        self._sync_engine.dispose()

    async def submit(self, op: Operation[T | Later[T]], *, give_up_after: float | None = None,
                     undo: Operation[Any] | None = None) -> T:
        """Run op(conn, db_now) in a write transaction; returns once it is committed.

        `give_up_after`: seconds; then WriteTimeout (not a cancellation: the writer
        skips the operation if it has not started, and undoes it if it commits). `undo`: an
        operation that reverses `op`, run if `op` may have committed without this caller
        knowing (it gave up waiting, or the COMMIT's outcome is unknown)."""
        if self._closed:
            raise WriterClosed("the database writer is stopped")
        entry = _Entry(op, asyncio.get_running_loop().create_future(), undo)
        self._waiting.add(entry)
        await self._queue.put(entry)
        try:
            result: T = await asyncio.wait_for(asyncio.shield(entry.fut), give_up_after)
            return result
        except TimeoutError:
            if entry.fut.done():
                return entry.fut.result()  # type: ignore[no-any-return]
            entry.abandoned = True  # not started: never will be; started: undone if it commits
            if entry.started:
                raise WriteTimeout(f"no commit within {give_up_after:g} s (if it still commits, "
                                   "it is undone)", in_doubt=True) from None
            raise WriteTimeout(f"the database did not take the write within {give_up_after:g} s"
                               ) from None
        except asyncio.CancelledError:
            # the client went away: a write that can be undone is, if it commits (it is
            # not started if not started yet); others still commit, as before
            if undo is not None:
                entry.abandoned = True
            raise
        finally:
            self._waiting.discard(entry)
            if not entry.fut.done():
                entry.fut.add_done_callback(_consume)

    def waiting_seconds(self) -> float:
        """How long the oldest unfinished write has waited (0: none waiting)."""
        if not self._waiting:
            return 0.0
        return time.monotonic() - min(e.submitted for e in self._waiting)

    # -- the writer task ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = any(e.op is _STOP for e in batch)
            batch = [e for e in batch if e.op is not _STOP and not e.abandoned]
            if batch:
                await self._commit(batch)
            if stop:
                if self._undo or self._fence:
                    await self._settle()  # a last try before stopping
                return

    async def _commit(self, batch: list[_Entry]) -> None:
        if (self._undo or self._fence) and not await self._settle():
            for e in batch:
                _settle(e.fut, exc=StoreUnavailable(
                    "earlier writes of unknown outcome are not settled yet"))
            return
        for e in batch:
            e.started = True
        started = time.perf_counter()
        try:
            try:
                results = await self._transaction([e.op for e in batch])
            except _TxFailed as f:
                if not f.stale:
                    raise
                # a kept connection that went away while idle: once more, on a new one
                results = await self._transaction([e.op for e in batch])
        except _TxFailed as f:
            metrics.DB_ERRORS.inc()
            if f.in_doubt:
                self._undo.extend(e.undo for e in batch if e.undo is not None)
            if len(batch) > 1 and f.phase in ("ops", "commit") and not is_unavailable(f.error):
                # one operation's fault (a constraint, say): the others still commit
                log.warning("batch of %d failed (%s); retrying one by one", len(batch),
                            describe(f.error))
                await self._one_by_one(batch)
            else:
                self._failed(batch, f)
            return
        self._committed(batch, results, started)

    def _committed(self, batch: list[_Entry], results: list[Any], started: float) -> None:
        metrics.DB_BATCH_SIZE.observe(len(batch))
        log.debug("committed %d ops in %.1f ms", len(batch), (time.perf_counter() - started) * 1e3)
        self._recovered()
        for e, res in zip(batch, results, strict=True):
            if e.abandoned and e.undo is not None:
                self._undo.append(e.undo)  # committed after its client was told 451
            _settle(e.fut, result=res)

    def _recovered(self) -> None:
        h = self.health
        if h.failing and not self._wrote and h.last_error is not None \
                and time.time() - h.last_error.at < RECOVERY_SECONDS:
            return  # a commit that wrote nothing does not show that writes work
        was_failing_for = h.succeeded()
        if was_failing_for is not None:
            log.warning("database writes work again (they failed for %.0f s)", was_failing_for)

    def _failed(self, batch: list[_Entry], f: _TxFailed) -> None:
        exc: BaseException = f.error
        if is_unavailable(f.error):
            if self.health.failed(f.error):
                log.error("database writes are failing (at %s): %s", f.phase,
                          describe(f.error))
            # the refused messages are logged where they are answered (one line each)
            log_failure(log, f"write transaction failed at {f.phase}", f.error, line=False)
            exc = StoreUnavailable(f"database unavailable: {describe(f.error)}",
                                   in_doubt=f.in_doubt)
            exc.__cause__ = f.error
        else:
            log_failure(log, f"write failed at {f.phase}", f.error)
        for e in batch:
            _settle(e.fut, exc=exc)

    async def _one_by_one(self, batch: list[_Entry]) -> None:
        for i, e in enumerate(batch):
            if e.abandoned:
                continue
            try:
                (res,) = await self._transaction([e.op])
            except _TxFailed as f:
                metrics.DB_ERRORS.inc()
                if f.in_doubt and e.undo is not None:
                    self._undo.append(e.undo)
                if is_unavailable(f.error):  # the database went away meanwhile: all fail
                    self._failed(batch[i:], f)
                    return
                self._failed([e], f)
            else:
                self._committed([e], [res], time.perf_counter())

    async def _settle(self) -> bool:
        """Undo writes that committed (or may have) behind their submitters' backs,
        before anything else is written. False: not yet (the database still fails)."""
        undo = list(self._undo)
        try:
            await self._transaction(undo, fence=True)
        except _TxFailed as f:
            if is_unavailable(f.error):
                self.health.failed(f.error)
                log_failure(log, "settling in-doubt writes failed", f.error, line=False)
                return False
            # an undo operation that fails by itself would block every write: drop them
            log.error("undoing %d in-doubt writes failed; they are dropped: %s", len(undo),
                      describe(f.error))
            del self._undo[:len(undo)]
            return True
        del self._undo[:len(undo)]
        if undo:
            log.warning("settled %d writes of unknown outcome (what committed after its "
                        "client was answered is undone)", len(undo))
        self._recovered()
        return True

    # -- transactions -----------------------------------------------------------------------

    async def _transaction(self, ops: list[Operation[Any]], fence: bool = False) -> list[Any]:
        if self._thread is not None:
            return await self._sqlite_transaction(ops)
        return await self._pg_transaction(ops, fence)

    def _sqlite_begin(self) -> tuple[Transaction, float]:
        if self._sqlite is None:
            self._sqlite = self._sync_engine.connect().execution_options(guard_write=True)
        self._changes = self._sqlite_changes()
        tx = self._sqlite.begin()  # BEGIN IMMEDIATE: waits here for another process's lock
        now = float(self._sqlite.execute(text("SELECT " + SQLITE_NOW)).scalar_one())
        return tx, now

    def _sqlite_changes(self) -> int:
        assert self._sqlite is not None
        raw = self._sqlite.connection.dbapi_connection
        return int(raw.total_changes) if raw is not None else 0

    def _sqlite_reset(self) -> None:
        """After a failure: no transaction may stay open on the connection (a failed
        COMMIT leaves SQLAlchemy's transaction in place). If rolling back fails too, the
        connection is closed and the next batch opens a new one."""
        conn = self._sqlite
        if conn is None:
            return
        try:
            # after a failed COMMIT the transaction is inactive but still attached
            # (in_transaction() says False, yet begin() refuses): roll it back anyway
            tx = conn.get_transaction()
            if tx is not None:
                tx.rollback()
            if conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
                conn.connection.dbapi_connection.rollback()  # type: ignore[union-attr]
        except Exception as e:
            log.warning("discarding the writer's SQLite connection: %s", describe(e))
            try:
                conn.invalidate()
                conn.close()
            except Exception as e2:  # closing a broken connection: nothing more to do
                log.debug("closing the discarded connection: %s", describe(e2))
            self._sqlite = None

    async def _sqlite_transaction(self, ops: list[Operation[Any]]) -> list[Any]:
        loop = asyncio.get_running_loop()
        assert self._thread is not None
        phase = "begin"
        try:
            tx, now = await loop.run_in_executor(self._thread, self._sqlite_begin)
            assert self._sqlite is not None
            conn = _InlineConnection(self._sqlite)
            phase = "ops"
            results = [await op(conn, now) for op in ops]  # type: ignore[arg-type]
            conn.flush()
            phase = "commit"
            began = time.perf_counter()
            await loop.run_in_executor(self._thread, tx.commit)  # fsync: off the event loop
            metrics.DB_COMMIT_SECONDS.observe(time.perf_counter() - began)
            self._wrote = self._sqlite_changes() > self._changes
            return results
        except BaseException as e:
            # the thread finishes what it started before this runs (one worker thread)
            await loop.run_in_executor(self._thread, self._sqlite_reset)
            if not isinstance(e, Exception):
                raise
            # SQLite's COMMIT is atomic: an error from it means nothing was committed
            raise _TxFailed(phase, e) from e

    async def _pg_connect(self) -> AsyncConnection:
        conn = await self.engine.connect()
        try:
            await conn.execution_options(guard_write=True)
            row = (await conn.execute(text(
                "SELECT pid, backend_start FROM pg_stat_activity "
                "WHERE pid = pg_backend_pid()"))).one()
            await conn.commit()
        except BaseException:
            await self._pg_discard(conn, rollback=False)
            raise
        self._pg_backend = (int(row[0]), row[1])
        return conn

    async def _pg_discard(self, conn: AsyncConnection, rollback: bool) -> None:
        """Roll back and keep the connection, or (if that fails, or the connection is
        suspect) cut it without waiting for the server."""
        if conn is self._pg:
            self._pg = None
        if rollback:
            try:
                await conn.rollback()
                self._pg = conn
                return
            except Exception as e:
                log.debug("rollback failed, discarding the connection: %s", describe(e))
        try:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            if driver is not None and not driver.is_closed():
                driver.terminate()  # no goodbye to a server that may not answer
            await conn.invalidate()
            await conn.close()
        except Exception as e:
            log.debug("closing the discarded connection: %s", describe(e))

    async def _pg_fence(self, conn: AsyncConnection) -> None:
        """End the server process of a connection whose COMMIT is in doubt and wait until
        it is gone: from then on its transaction has committed or never will."""
        assert self._fence is not None
        pid, started = self._fence
        deadline = time.monotonic() + (self.statement_timeout or 30.0)
        while True:
            await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            alive = (await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid = :p AND backend_start = :s"), {"p": pid, "s": started})).first()
            await conn.commit()
            if alive is None:
                self._fence = None
                return
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"the server process {pid} of an in-doubt commit "
                                       "does not end")
            await asyncio.sleep(0.05)

    async def _pg_now(self, conn: AsyncConnection) -> float:
        """The database clock, without a round trip in every transaction: read at most
        CLOCK_READ_SECONDS ago on this connection (then the read is the transaction's
        first statement) and advanced by the monotonic clock since. The estimate trails
        the database by at most the read's round trip plus the two clocks' drift over
        those seconds (NTP keeps it under 0.5 ms a second): milliseconds against leases
        and delays of seconds, and late rather than early, so a lease is never taken
        before the database clock says it ran out by more than that. Never goes back
        on one connection."""
        mono = time.monotonic()
        if self._pg_clock is None or mono - self._pg_clock[1] >= CLOCK_READ_SECONDS:
            db = await db_now(conn)
            self._pg_clock = (db, time.monotonic())
            now = db
        else:
            now = self._pg_clock[0] + (mono - self._pg_clock[1])
        now = max(now, self._pg_last_now)
        self._pg_last_now = now
        return now

    async def _pg_transaction(self, ops: list[Operation[Any]], fence: bool = False
                              ) -> list[Any]:
        phase = "connect"
        kept = self._pg is not None
        conn: AsyncConnection | None = self._pg
        deferring: _PgConnection | None = None
        try:
            if conn is None:
                conn = self._pg = await self._pg_connect()
                # another server process, perhaps another server: its clock, read anew
                self._pg_clock, self._pg_last_now = None, 0.0
            phase = "begin"
            if fence and self._fence is not None:
                await self._pg_fence(conn)
            await conn.begin()
            now = await self._pg_now(conn)
            phase = "ops"
            deferring = _PgConnection(conn)
            results = [await op(deferring, now) for op in ops]  # type: ignore[arg-type]
            await deferring.flush()
            results = [r.value if isinstance(r, Later) else r for r in results]
            phase = "commit"
            began = time.perf_counter()
            await conn.commit()
            metrics.DB_COMMIT_SECONDS.observe(time.perf_counter() - began)
            self._wrote = True  # (PostgreSQL: not counted; a commit there is a round trip)
            return results
        except BaseException as e:
            in_doubt = phase == "commit" and (not isinstance(e, Exception)
                                              or is_unavailable(e))
            if in_doubt:
                self._fence = self._pg_backend
            if conn is not None:
                await self._pg_discard(conn, rollback=isinstance(e, Exception)
                                       and not is_unavailable(e))
            if not isinstance(e, Exception):
                raise
            # the database clock is not read in every transaction, so a connection that
            # died while kept shows at the first statement of the operations (asyncpg sends
            # BEGIN with it): stale as well if no statement had gone through
            first = phase == "begin" or (phase == "ops" and deferring is not None
                                         and deferring.sent == 0)
            raise _TxFailed(phase, e, in_doubt=in_doubt,
                            stale=kept and first and is_unavailable(e)) from e


async def _stop_op(conn: AsyncConnection, now: float) -> None:  # pragma: no cover - marker
    return None


_STOP: Operation[None] = _stop_op


def _consume(fut: asyncio.Future[Any]) -> None:
    # nobody awaits this result any more: fetch the exception so asyncio does not log it
    if not fut.cancelled():
        fut.exception()


def _settle(fut: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    # The submitter may have gone away (client disconnected, or it gave up waiting):
    # nobody awaits the result. An accept that committed after its client was told
    # 451 is undone by its `undo` operation (see BatchWriter._committed).
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
