"""ExtractionPool: the main process side of the extraction workers.

At most `workers` jobs run at once; a job takes an idle worker or starts one. The
parent sends the job and waits for the answer in a thread (blocking pipe I/O and
unpickling stay off the event loop), within the job's deadline by the event loop's
clock: past it, the worker is killed, its slot freed, and the caller gets a problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import Any

from guard.inspect.context import InspectContext
from guard.inspect.extract import Budget, Extracted, ExtractLimits, merge_extracted
from guard.inspect.finding import Finding
from guard.inspect.isolate.wire import unpack
from guard.inspect.isolate.worker import WorkerSettings, worker_main
from guard.inspect.readers.extraction import Reader
from guard.mail.message import MessageView


@dataclass(eq=False)  # identity semantics: workers live in a set
class _Worker:
    proc: Any  # multiprocessing.Process from a context
    conn: Connection
    jobs: int = 0

    def roundtrip(self, job: tuple[Any, ...]) -> tuple[str, Any]:
        """Runs in a thread: blocking pipe I/O (and pickling) stays off the event loop."""
        self.conn.send(job)
        status, payload = self.conn.recv()
        if status == "ok":  # (packed view or extraction, findings, budget or None)
            packed, findings, budget = payload
            payload = (unpack(packed), findings, budget)
        return status, payload

    def kill(self) -> None:
        """SIGKILL and reap. The pipe is closed separately (close_pipe), after any thread
        blocked in roundtrip() has seen EOF: closing an fd another thread is reading is
        a race with fd reuse."""
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.join(5)

    def close_pipe(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def stop(self) -> None:
        """Ask an idle worker to exit, then make sure it did."""
        with contextlib.suppress(Exception):
            self.conn.send(("stop",))
        with contextlib.suppress(Exception):
            self.proc.join(2)
        self.kill()
        self.close_pipe()


class _JobFailed(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code  # "timeout" | "worker_died" | "too_large" | "parse_error"
        self.detail = detail


def _exit_detail(proc: Any) -> str:
    code = proc.exitcode
    if code is None:
        return "worker exited"
    if code < 0:
        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code}"


class ExtractionPool:
    """A small pool of worker processes for parse + extraction.

    workers: number of processes (default os.cpu_count()), started on first use.
    per_attachment_timeout / per_message_timeout: wall-clock seconds.
    memory_limit_mb: RLIMIT_AS of each worker.
    niceness: added to the workers' nice value, so that under CPU pressure the event loop
    (SMTP sessions) is scheduled first; 0 to disable.
    cpu_seconds_per_job: RLIMIT_CPU allowance per job, a backstop for when the parent
    cannot kill a runaway worker (default: the message deadline plus 5 s).
    readers: the reader for each kind of attachment, in the workers (default
    guard.inspect.extract.READERS); module-level functions, since they are pickled.
    """

    def __init__(
        self,
        workers: int | None = None,
        per_attachment_timeout: float = 20.0,
        per_message_timeout: float = 60.0,
        memory_limit_mb: int = 1536,
        limits: ExtractLimits | None = None,
        max_jobs_per_worker: int = 1000,  # recycle to bound leaks in C libraries
        niceness: int = 5,
        cpu_seconds_per_job: float | None = None,
        readers: Mapping[str, Reader] | None = None,
    ) -> None:
        self._size = max(1, workers or os.cpu_count() or 1)
        self.per_attachment_timeout = per_attachment_timeout
        self.per_message_timeout = per_message_timeout
        self._limits = limits or ExtractLimits()
        self._max_jobs = max_jobs_per_worker
        self._settings = WorkerSettings(
            memory_limit_mb=memory_limit_mb,
            limits=self._limits,
            niceness=niceness,
            cpu_seconds_per_job=(cpu_seconds_per_job if cpu_seconds_per_job is not None
                                 else per_message_timeout + 5),
            readers=readers)
        # forkserver: workers are forked from a clean single-threaded server process, not
        # from this process with its event loop and threads
        self._ctx: ForkServerContext | SpawnContext = (
            mp.get_context("forkserver") if "forkserver" in mp.get_all_start_methods()
            else mp.get_context("spawn"))
        self._threads = ThreadPoolExecutor(max_workers=2 * self._size + 2,
                                           thread_name_prefix="guard-extract")
        # at most `size` jobs run at once; a job takes an idle worker or starts one, so a
        # worker that is killed or dies simply leaves a free slot behind
        self._slots = asyncio.Semaphore(self._size)
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()  # idle and busy
        self._closed = False

    # -- worker management --

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=worker_main, args=(child_conn, self._settings),
                                 name="guard-extract", daemon=True)
        proc.start()
        child_conn.close()  # so the parent sees EOF when the worker dies
        worker = _Worker(proc, parent_conn)
        try:
            if not parent_conn.poll(60):
                raise RuntimeError("worker did not start within 60 s")
            parent_conn.recv()  # ("ready", pid)
        except Exception:
            worker.kill()
            worker.close_pipe()
            raise
        return worker

    async def _take_worker(self) -> _Worker:
        """An idle live worker, or a new one. Call only while holding a slot."""
        while self._idle:
            worker = self._idle.pop()  # LIFO: the most recently used is warmest
            if worker.proc.is_alive():
                return worker
            await self._retire(worker, kill=False)  # died while idle
        if self._closed:
            raise RuntimeError("pool closed")
        loop = asyncio.get_running_loop()
        worker = await loop.run_in_executor(self._threads, self._spawn)
        self._workers.add(worker)
        return worker

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._threads, fn, *args)
        except RuntimeError:  # the executor is shut down (close() ran): do it here
            return fn(*args)

    async def _give_back(self, worker: _Worker) -> None:
        if self._closed or worker.jobs >= self._max_jobs:
            await self._retire(worker, kill=False)
        else:
            self._idle.append(worker)

    async def _retire(self, worker: _Worker, kill: bool) -> None:
        """Take a worker out of the pool: kill it (busy, a roundtrip thread may still be
        reading its pipe) or stop it (no thread is using its pipe)."""
        self._workers.discard(worker)
        await self._in_thread(worker.kill if kill else worker.stop)

    async def _discard_busy(self, worker: _Worker, fut: asyncio.Future[Any]) -> None:
        """Kill a worker in the middle of a job, let the thread blocked on its pipe see
        EOF, then close the pipe."""
        await self._retire(worker, kill=True)
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(fut, 5)
        finally:
            worker.close_pipe()

    async def _call(self, job: tuple[Any, ...], seconds: float) -> Any:
        """Run one job within `seconds`; return its result or raise _JobFailed."""
        if seconds <= 0:
            raise _JobFailed("timeout", "message deadline reached before this step")
        async with self._slots:
            try:
                worker = await self._take_worker()
            except RuntimeError as e:
                raise _JobFailed("worker_died", f"no worker: {e}") from e
            except Exception as e:  # cannot fork, out of memory, ...
                raise _JobFailed("worker_died", f"could not start a worker: {e}") from e
            return await self._run_on(worker, job, seconds)

    async def _run_on(self, worker: _Worker, job: tuple[Any, ...], seconds: float) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._threads, worker.roundtrip, job)
        try:
            status, payload = await asyncio.wait_for(asyncio.shield(fut), seconds)
        except TimeoutError:
            # the worker may be stuck inside a C extension: kill it, do not wait for it
            await self._discard_busy(worker, fut)
            raise _JobFailed("timeout", f"no result within {seconds:.1f} s") from None
        except asyncio.CancelledError:
            # the result is abandoned; the worker is busy with it, so it goes
            await asyncio.shield(self._discard_busy(worker, fut))
            raise
        except (EOFError, OSError) as e:
            await self._retire(worker, kill=True)  # reaps it, so the exit code is known
            worker.close_pipe()
            raise _JobFailed("worker_died", _exit_detail(worker.proc)) from e
        worker.jobs += 1
        if status == "ok":
            await self._give_back(worker)
            return payload
        # "memory" or "error": the worker survived but may be in a bad state
        await self._retire(worker, kill=False)
        code = "too_large" if status == "memory" else "parse_error"
        raise _JobFailed(code, str(payload))

    # -- the public API --

    async def inspect_message(self, raw: bytes, mail_from: str,
                              rcpt_tos: list[str]) -> MessageView:
        """Parse the message and extract every attachment in workers. Never raises
        (except CancelledError): failures become problems in the returned view."""
        view, _ = await self._inspect(raw, mail_from, rcpt_tos, None)
        return view

    async def inspect_and_detect(self, raw: bytes, mail_from: str, rcpt_tos: list[str],
                                 ctx: InspectContext) -> tuple[MessageView, list[Finding]]:
        """Like inspect_message, and the text detectors (personal data, keywords,
        customer names) run in the workers too: the view comes back without its texts
        and tables, with the findings. Never raises (except CancelledError)."""
        return await self._inspect(raw, mail_from, rcpt_tos, ctx)

    async def _inspect(self, raw: bytes, mail_from: str, rcpt_tos: list[str],
                       ctx: InspectContext | None) -> tuple[MessageView, list[Finding]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.per_message_timeout
        try:
            view, findings, _ = await self._call(
                ("parse", raw, mail_from, list(rcpt_tos), ctx), deadline - loop.time())
        except _JobFailed as e:
            return MessageView(mail_from=mail_from, rcpt_tos=list(rcpt_tos),
                               problems=[(e.code, "message", f"parse: {e.detail}")]), []
        budget = Budget.for_message(self._limits)
        for att in view.attachments:
            timeout = min(self.per_attachment_timeout, deadline - loop.time())
            try:
                extracted, more, budget = await self._call(
                    ("extract", att, budget, ctx, list(rcpt_tos)), timeout)
                findings.extend(more)
            except _JobFailed as e:
                extracted = Extracted(problems=[(e.code, att.where, e.detail)])
            merge_extracted(view, extracted)
        return view, findings

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and metrics)."""
        return [w.proc.pid for w in self._workers if w.proc.is_alive()]

    async def close(self) -> None:
        self._closed = True
        loop = asyncio.get_running_loop()
        idle, self._idle = self._idle, []
        busy = [w for w in self._workers if w not in idle]
        self._workers.clear()
        stops = [loop.run_in_executor(self._threads, w.stop) for w in idle]
        # busy workers: killing them ends their roundtrip with EOF; _run_on closes the pipe
        stops += [loop.run_in_executor(self._threads, w.kill) for w in busy]
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)
        self._threads.shutdown(wait=False)
