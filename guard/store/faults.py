"""When the database fails: which errors mean "the database is unavailable", the write
path's state for /healthz, and logging that does not flood during an outage.

An outage (disk full, a read-only file, PostgreSQL stopped or not answering) fails every
message and every timer tick the same way. While it lasts the log gets one line per
refused message and at most one traceback per minute (`log_failure`), and the writer
records the error that /healthz reports (`WriteHealth`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc


class StoreUnavailable(ConnectionError):
    """The database did not take a write (or a read the caller needs).

    A ConnectionError, so that code which treats connection errors as "the database is
    away, try again later" treats this one alike (the original error is its __cause__).
    `in_doubt`: the COMMIT was sent and its outcome is not known: the write may have
    been committed. The writer settles such writes once the database answers again."""

    def __init__(self, message: str, in_doubt: bool = False) -> None:
        super().__init__(message)
        self.in_doubt = in_doubt


class WriteTimeout(StoreUnavailable, TimeoutError):
    """The write did not commit within the caller's deadline."""


# SQLSTATE classes that say the server cannot do any work right now: connection
# exceptions (08), insufficient resources such as disk full (53), operator intervention
# such as a shutdown (57), system errors such as an I/O error (58); and 25006, a
# read-only transaction (a standby, default_transaction_read_only).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57", "58")


def is_unavailable(error: BaseException) -> bool:
    """True when `error` (or what caused it) says the database cannot be used at the
    moment, as opposed to a fault of one statement (a constraint, a bug)."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, StoreUnavailable | sa_exc.OperationalError | sa_exc.InterfaceError
                      | sa_exc.DisconnectionError | sa_exc.TimeoutError
                      | sa_exc.PendingRollbackError | TimeoutError | OSError):
            return True
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        state = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(state, str) and (state[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
                                       or state == "25006"):
            return True
        if type(e).__module__.startswith("asyncpg") and type(e).__name__ in (
                "ConnectionDoesNotExistError", "InterfaceError", "ConnectionFailureError"):
            return True
        e = getattr(e, "orig", None) or e.__cause__ or e.__context__
    return False


def describe(error: BaseException) -> str:
    """One line: the exception type and the first line of its message, without
    SQLAlchemy's statement and background-link lines."""
    e: BaseException = error
    orig = getattr(e, "orig", None)
    if isinstance(e, sa_exc.DBAPIError) and orig is not None:
        e = orig
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if not text and isinstance(e, TimeoutError):
        text = "no answer within the deadline"
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


class _TracebackThrottle:
    """One traceback per `every` seconds for database outages, for the whole process."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._last = float("-inf")
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last >= self.every:
                self._last = now
                return True
            return False


TRACEBACKS = _TracebackThrottle()


def log_failure(logger: logging.Logger, what: str, error: BaseException, *,
                line: bool = True) -> None:
    """Log a failure. A database outage gets one line (or none if `line` is false: a
    loop that would say the same thing every second) and a traceback at most once a
    minute; any other error is logged with its traceback as before."""
    if not is_unavailable(error):
        logger.error("%s", what, exc_info=error)
    elif TRACEBACKS.due():
        logger.error("%s: %s (database unavailable; tracebacks of this kind at most once "
                     "a minute)", what, describe(error), exc_info=error)
    elif line:
        logger.warning("%s: %s", what, describe(error))


@dataclass
class WriteError:
    error: str  # describe(): type and first line
    at: float  # time.time()


class WriteHealth:
    """The write path as the writer saw it: failing since when, the last error."""

    def __init__(self) -> None:
        self.last_error: WriteError | None = None
        self.failing_since: float | None = None  # time.time() of the first failure in a row
        self.failures = 0  # failed transactions in a row
        self.last_ok: float | None = None

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def failed(self, error: BaseException) -> bool:
        """Record a failed transaction; True if writes were working until now."""
        now = time.time()
        self.last_error = WriteError(describe(error), now)
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = now
            return True
        return False

    def succeeded(self) -> float | None:
        """Record a commit; returns how long writes had been failing (None: they were not)."""
        now = time.time()
        self.last_ok = now
        since, self.failing_since, self.failures = self.failing_since, None, 0
        return None if since is None else now - since
