"""Hot reload: poll the policy files, reload on change, keep the last good policy.

Polling mtimes (not inotify) works the same on every platform, inside containers and on
network file systems, and a policy changes rarely: a stat of a handful of files every
two seconds costs nothing. An invalid edit never replaces a working policy: the error is
logged, `on_error` is called (the caller counts it in a metric) and the old policy stays.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from guard.policy.compiled import Policy
from guard.policy.issues import PolicyError
from guard.policy.loader import load_policy

log = logging.getLogger("guard.policy")

OnChange = Callable[[Policy], Awaitable[None] | None]
OnError = Callable[[Exception], Awaitable[None] | None]
# Run on a loaded policy before it is taken (syncing its suppression lists): raising
# refuses the policy like a load error.
Prepare = Callable[[Policy], Awaitable[None]]
_Signature = tuple[tuple[str, int, int, int], ...]


def _signature(files: Iterable[Path]) -> _Signature:
    out = []
    for file in sorted(set(files)):
        try:
            st = file.stat()
            out.append((str(file), st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((str(file), -1, -1, -1))  # missing now: its return is a change
    return tuple(out)


class PolicyWatcher:
    """Keeps `current` up to date with the policy files on disk.

    `start()` loads the policy once (raising PolicyError if it is invalid: there is no
    last good policy to fall back on) and starts polling every `interval` seconds.

    A policy refused by `prepare` (its files are fine, but something outside them is
    not, e.g. a list it names a file for is managed in the store) is tried again every
    `retry_interval` seconds, since the fix may be a command rather than an edit; the
    same refusal is logged and reported once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_change: OnChange | None = None,
        on_error: OnError | None = None,
        interval: float = 2.0,
        *,
        settle: float = 0.05,
        prepare: Prepare | None = None,
        retry_interval: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self.on_error = on_error
        self.prepare = prepare
        self.interval = interval
        self.retry_interval = retry_interval if retry_interval is not None else 15 * interval
        self._retry_at: float | None = None  # monotonic time to try a refused policy again
        self._refusal = ""  # the last refusal by `prepare`, reported once
        # wait this long after seeing a change, so a file still being written is not
        # read half-way (which would report a spurious error)
        self.settle = settle
        self._current: Policy | None = None
        self._watched: tuple[Path, ...] = ()
        self._seen: _Signature = ()
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> Policy:
        if self._current is None:
            raise RuntimeError("PolicyWatcher.start() has not loaded a policy yet")
        return self._current

    async def start(self) -> Policy:
        policy = await asyncio.to_thread(load_policy, self.path)
        if self.prepare is not None:
            await self.prepare(policy)
        self._accept(policy)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="policy-watcher")
        return policy

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def __aenter__(self) -> PolicyWatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def check(self) -> bool:
        """Poll once; reload if a watched file changed. True if a new policy was taken.

        Also usable directly, e.g. on SIGHUP or from an admin command.
        """
        if _signature(self._watched) == self._seen:
            if self._retry_at is not None and time.monotonic() >= self._retry_at:
                return await self.reload(retry=True)
            return False
        while True:  # wait until the files stop changing
            before = _signature(self._watched)
            await asyncio.sleep(self.settle)
            if _signature(self._watched) == before:
                break
        return await self.reload()

    async def reload(self, *, retry: bool = False) -> bool:
        """Load now, whether or not anything changed. True if a new policy was taken."""
        self._retry_at = None
        try:
            policy = await asyncio.to_thread(load_policy, self.path)
        except Exception as exc:  # a bad edit (PolicyError) or anything unexpected
            files = exc.files if isinstance(exc, PolicyError) else ()
            # Watch the files of the failed attempt too: creating a missing include
            # is the fix, and it must trigger the next attempt.
            self._watched = tuple(dict.fromkeys((*self._watched, *files)))
            self._seen = _signature(self._watched)
            log.error("policy reload failed, keeping the last good policy:\n%s", exc)
            await self._call(self.on_error, exc)
            return False
        if self.prepare is not None:
            try:
                await self.prepare(policy)
            except Exception as exc:
                self._watched = tuple(dict.fromkeys((*self._watched, *policy.watched_files)))
                self._seen = _signature(self._watched)
                self._retry_at = time.monotonic() + self.retry_interval
                if not (retry and str(exc) == self._refusal):
                    log.error("policy reload refused, keeping the last good policy: %s", exc)
                    await self._call(self.on_error, exc)
                self._refusal = str(exc)
                return False
        self._refusal = ""
        self._accept(policy)
        log.info("policy reloaded from %s (%s)", policy.source, policy.digest[:12])
        await self._call(self.on_change, policy)
        return True

    def _accept(self, policy: Policy) -> None:
        self._current = policy
        self._watched = policy.watched_files or (self.path,)
        self._seen = _signature(self._watched)
        for warning in policy.warnings:
            log.warning("policy: %s", warning)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must outlive any surprise
                log.exception("policy watcher: unexpected error")

    @staticmethod
    async def _call(callback: Callable[..., object] | None, arg: object) -> None:
        if callback is None:
            return
        try:
            result = callback(arg)
            if inspect.isawaitable(result):
                await result
        except Exception:  # a failing callback must not stop the watcher
            log.exception("policy watcher: callback %r failed", callback)
