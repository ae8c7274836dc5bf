"""Parse and extraction in worker processes, off the event loop, under time and memory
limits (docs: pii-and-extraction.md §6 "Time", reliability.md §1.6).

Why our own small pool instead of ProcessPoolExecutor: a hung C extension (pdfium,
calamine) cannot be interrupted, and an executor cannot kill one task; a worker that dies
breaks the whole executor. Here each worker is a multiprocessing.Process with a pipe. The
parent sends one job at a time and waits in a thread; on timeout the worker is killed
(SIGKILL) and replaced, and the caller gets a MessageView with a "timeout" or
"worker_died" problem — never an exception, never a lost message.

Jobs: one "parse" job per message (raw bytes -> MessageView without attachment texts),
then one "extract" job per attachment, each with its own deadline inside the message
deadline. The per-message decompression/text budget travels with the jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from guard.inspect.extract import Budget, Extracted, ExtractLimits, extract, merge_extracted
from guard.message import Attachment, MessageView, parse_message

MiB = 1024 * 1024

# Attachment content types the worker acts on only when GUARD_TEST_HOOKS=1 is set in
# the worker (the pool passes the parent's setting at construction time).
TEST_SLEEP = "application/x-guard-test-sleep"  # data: seconds to sleep, e.g. b"30"
TEST_CRASH = "application/x-guard-test-crash"  # the worker kills itself with SIGSEGV
TEST_ALLOC = "application/x-guard-test-alloc"  # data: MiB to allocate (hits RLIMIT_AS)


# --- worker side ---------------------------------------------------------------------------

def _limit_resources(memory_limit_mb: int) -> None:
    import resource

    limit = memory_limit_mb * MiB
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # a crashing parser should not write a core file of an attachment full of PII
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run_test_hook(att: Attachment) -> None:
    if att.content_type == TEST_SLEEP:
        time.sleep(float(att.data or b"3600"))
    elif att.content_type == TEST_CRASH:
        os.kill(os.getpid(), signal.SIGSEGV)
    elif att.content_type == TEST_ALLOC:
        blob = bytearray(int(att.data) * MiB)
        blob[-1] = 1


def _worker_main(conn: Connection, memory_limit_mb: int, test_hooks: bool,
                 limits: ExtractLimits) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    if test_hooks:
        os.environ["GUARD_TEST_HOOKS"] = "1"
    # Import the heavy libraries before the memory limit and before the first job, so a
    # job's time is spent on the job.
    import defusedxml.ElementTree  # noqa: F401
    import pypdfium2  # noqa: F401
    import python_calamine  # noqa: F401

    _limit_resources(memory_limit_mb)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if job[0] == "stop":
            return
        try:
            if job[0] == "parse":
                _, raw, mail_from, rcpt_tos = job
                reply: tuple[str, Any] = (
                    "ok", parse_message(raw, mail_from, rcpt_tos, limits.parse_limits))
            elif job[0] == "extract":
                _, att, budget = job
                if os.environ.get("GUARD_TEST_HOOKS") == "1":
                    _run_test_hook(att)
                reply = ("ok", (extract(att, limits, budget=budget), budget))
            else:
                reply = ("error", f"unknown job {job[0]!r}")
        except MemoryError:
            reply = ("memory", f"memory limit of {memory_limit_mb} MB reached")
        except Exception as e:  # parse_message/extract do not raise; this is a backstop
            reply = ("error", f"{type(e).__name__}: {e}"[:300])
        try:
            conn.send(reply)
        except MemoryError:  # the result itself did not fit
            del reply
            conn.send(("memory", f"memory limit of {memory_limit_mb} MB reached"))


# --- parent side ---------------------------------------------------------------------------

@dataclass
class _Worker:
    proc: Any  # multiprocessing.Process from a context
    conn: Connection
    jobs: int = 0

    def roundtrip(self, job: tuple[Any, ...]) -> tuple[str, Any]:
        """Runs in a thread: blocking pipe I/O (and pickling) stays off the event loop."""
        self.conn.send(job)
        result: tuple[str, Any] = self.conn.recv()
        return result

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
    """

    def __init__(
        self,
        workers: int | None = None,
        per_attachment_timeout: float = 20.0,
        per_message_timeout: float = 60.0,
        memory_limit_mb: int = 1536,
        limits: ExtractLimits | None = None,
        max_jobs_per_worker: int = 1000,  # recycle to bound leaks in C libraries
    ) -> None:
        self._size = max(1, workers or os.cpu_count() or 1)
        self.per_attachment_timeout = per_attachment_timeout
        self.per_message_timeout = per_message_timeout
        self._memory_limit_mb = memory_limit_mb
        self._limits = limits or ExtractLimits()
        self._max_jobs = max_jobs_per_worker
        # forkserver: workers are forked from a clean single-threaded server process, not
        # from this process with its event loop and threads
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(method)
        self._test_hooks = os.environ.get("GUARD_TEST_HOOKS") == "1"
        self._threads = ThreadPoolExecutor(max_workers=2 * self._size + 2,
                                           thread_name_prefix="guard-extract")
        self._idle: asyncio.Queue[_Worker] | None = None
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._closed = False

    # -- worker management --

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self._memory_limit_mb, self._test_hooks, self._limits),
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
            raise
        return worker

    async def _acquire(self) -> _Worker:
        loop = asyncio.get_running_loop()
        if self._idle is None:
            self._idle = asyncio.Queue()
        while True:
            if self._closed:
                raise RuntimeError("pool closed")
            if not self._idle.empty():
                worker = self._idle.get_nowait()
            elif len(self._workers) + self._starting < self._size:
                self._starting += 1
                try:
                    worker = await loop.run_in_executor(self._threads, self._spawn)
                finally:
                    self._starting -= 1
                self._workers.add(worker)
            else:
                worker = await self._idle.get()
            if worker.proc.is_alive():
                return worker
            await self._retire(worker, kill=False)  # died while idle; get another

    def _release(self, worker: _Worker) -> None:
        assert self._idle is not None
        if self._closed or worker.jobs >= self._max_jobs:
            self._workers.discard(worker)
            self._threads.submit(worker.stop)
        else:
            self._idle.put_nowait(worker)

    async def _retire(self, worker: _Worker, kill: bool) -> None:
        """Take a worker out of the pool: kill it (busy, a roundtrip thread may still be
        reading its pipe) or stop it (no thread is using its pipe)."""
        self._workers.discard(worker)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, worker.kill if kill else worker.stop)

    async def _call(self, job: tuple[Any, ...], seconds: float) -> Any:
        """Run one job within `seconds`; return its result or raise _JobFailed."""
        if seconds <= 0:
            raise _JobFailed("timeout", "message deadline reached before this step")
        try:
            worker = await self._acquire()
        except RuntimeError as e:
            raise _JobFailed("worker_died", f"no worker: {e}") from e
        except Exception as e:  # cannot fork, out of memory, ...
            raise _JobFailed("worker_died", f"could not start a worker: {e}") from e
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._threads, worker.roundtrip, job)
        try:
            status, payload = await asyncio.wait_for(asyncio.shield(fut), seconds)
        except TimeoutError:
            # the worker may be stuck inside a C extension: kill it, do not wait for it
            await self._retire(worker, kill=True)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(fut, 5)  # the blocked recv ends with EOF
            worker.close_pipe()
            raise _JobFailed("timeout", f"no result within {seconds:.1f} s") from None
        except asyncio.CancelledError:
            # the result is abandoned; the worker is busy with it, so it goes
            await asyncio.shield(self._retire(worker, kill=True))
            worker.close_pipe()
            raise
        except (EOFError, OSError) as e:
            await self._retire(worker, kill=True)  # reaps it, so the exit code is known
            worker.close_pipe()
            raise _JobFailed("worker_died", _exit_detail(worker.proc)) from e
        worker.jobs += 1
        if status == "ok":
            self._release(worker)
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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.per_message_timeout
        try:
            view: MessageView = await self._call(("parse", raw, mail_from, list(rcpt_tos)),
                                                 deadline - loop.time())
        except _JobFailed as e:
            return MessageView(mail_from=mail_from, rcpt_tos=list(rcpt_tos),
                               problems=[(e.code, "message", f"parse: {e.detail}")])
        budget = Budget.for_message(self._limits)
        for att in view.attachments:
            timeout = min(self.per_attachment_timeout, deadline - loop.time())
            try:
                extracted, budget = await self._call(("extract", att, budget), timeout)
            except _JobFailed as e:
                extracted = Extracted(problems=[(e.code, att.where, e.detail)])
            merge_extracted(view, extracted)
        return view

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and metrics)."""
        return [w.proc.pid for w in self._workers if w.proc.is_alive()]

    async def close(self) -> None:
        self._closed = True
        loop = asyncio.get_running_loop()
        idle: list[_Worker] = []
        if self._idle is not None:
            while not self._idle.empty():
                idle.append(self._idle.get_nowait())
        busy = [w for w in self._workers if w not in idle]
        self._workers.clear()
        stops = [loop.run_in_executor(self._threads, w.stop) for w in idle]
        # busy workers: killing them ends their roundtrip with EOF; _call closes the pipe
        stops += [loop.run_in_executor(self._threads, w.kill) for w in busy]
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)
        self._threads.shutdown(wait=False)
