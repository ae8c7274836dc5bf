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
import codecs
import contextlib
import gc
import multiprocessing as mp
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from guard.inspect.context import InspectContext
from guard.inspect.extract import Budget, Extracted, ExtractLimits, extract, merge_extracted
from guard.inspect.finding import Finding
from guard.inspect.run import text_findings
from guard.mail.message import Attachment, MessageView, Table, TextChunk, parse_message

MiB = 1024 * 1024

# Attachment content types the worker acts on only when GUARD_TEST_HOOKS=1 is set in
# the worker (the pool passes the parent's setting at construction time).
TEST_SLEEP = "application/x-guard-test-sleep"  # data: seconds to sleep, e.g. b"30"
TEST_CRASH = "application/x-guard-test-crash"  # the worker kills itself with SIGSEGV
TEST_ALLOC = "application/x-guard-test-alloc"  # data: MiB to allocate (hits RLIMIT_AS)
TEST_SPIN = "application/x-guard-test-spin"  # burns CPU until RLIMIT_CPU stops it


# --- moving results between processes ----------------------------------------------------
# The parent unpickles results in an I/O thread, but pickle.loads is one C call that holds
# the GIL, so a large result would freeze the event loop. Measured on a 14 MB CSV: 2.4 s
# for a 400k-row table as lists of str, ~100 ms for decoding its text from UTF-8. So:
# - big texts travel as UTF-8 bytes (unpickled by memcpy) and are decoded in slices;
# - tables travel as one packed string each and are split back into rows by a Python
#   loop. Both loops let the event loop take the GIL every few milliseconds.

_US = "\x1f"  # between cells
_RS = "\x1e"  # between rows
_SLICE = 256 * 1024

Wire = str | bytes


_TABLE_BATCH = 2000  # rows per packed batch


def _to_wire(text: str) -> Wire:
    return text.encode("utf-8", "surrogatepass") if len(text) > _SLICE else text


def _from_wire(data: Wire) -> str:
    """Decode in slices: each C call is short, so the event loop gets the GIL between.
    Texts are at most TEXT_CHUNK_CHARS long (split_text), so the final join is too."""
    if isinstance(data, str):
        return data
    decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")
    view = memoryview(data)
    parts = [decoder.decode(view[i : i + _SLICE]) for i in range(0, len(view), _SLICE)]
    parts.append(decoder.decode(b"", final=True))
    return "".join(parts)


def _pack_rows(rows: list[list[str]]) -> list[Wire]:
    batches: list[Wire] = []
    for b in range(0, len(rows), _TABLE_BATCH):
        out: list[str] = []
        for row in rows[b : b + _TABLE_BATCH]:
            line = _US.join(row)
            if line.count(_US) != len(row) - 1 or _RS in line:  # separators in a cell
                line = _US.join(c.replace(_US, " ").replace(_RS, " ") for c in row)
            out.append(line)
        batches.append(_to_wire(_RS.join(out)))
    return batches


def _unpack_rows(batches: list[Wire]) -> list[list[str]]:
    rows: list[list[str]] = []
    for batch in batches:
        rows.extend(line.split(_US) for line in _from_wire(batch).split(_RS))
    return rows


@dataclass
class _Packed:
    """A MessageView or Extracted with its texts and tables in wire form."""

    shell: Any  # the object with texts (and tables) emptied
    texts: list[tuple[str, Wire]]
    tables: list[tuple[str, list[Wire], int]]  # where, packed rows, more_rows


def _pack(obj: MessageView | Extracted) -> _Packed:
    texts = [(t.where, _to_wire(t.text)) for t in obj.texts]
    tables = [(t.where, _pack_rows(t.rows), t.more_rows) for t in obj.tables]
    obj.texts, obj.tables = [], []
    return _Packed(obj, texts, tables)


def _unpack(packed: _Packed) -> Any:
    obj = packed.shell
    obj.texts = [TextChunk(where, _from_wire(data)) for where, data in packed.texts]
    # Building 100k+ row lists would trigger several full (generation 2) collections,
    # each walking every object in the process with the GIL held (~50-100 ms apiece,
    # measured). The rows only reference str objects, which cannot form cycles.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        obj.tables = [Table(where, _unpack_rows(data), more)
                      for where, data, more in packed.tables]
    finally:
        if was_enabled:
            gc.enable()
    return obj


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


def _limit_cpu_for_next_job(seconds: float) -> None:
    """RLIMIT_CPU as a backstop to the parent's wall-clock kill: if the parent is gone
    (a crashed relay) or cannot act, a worker spinning in a C loop that never returns
    to Python still gets SIGXCPU — whose default action needs no GIL — once this job has
    used `seconds` of CPU. (With forkserver the worker's parent is the fork server,
    which lives as long as any worker does, so PR_SET_PDEATHSIG would not help.)"""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _detect(obj: MessageView | Extracted, ctx: InspectContext | None,
            view: MessageView | None = None) -> tuple[_Packed, list[Finding]]:
    """Run the text detectors here, in the worker, when a context is given: the texts
    then stay in this process and only findings (and the non-text parts) go back."""
    if ctx is None:
        return _pack(obj), []
    findings = text_findings(view if view is not None else obj, ctx)  # type: ignore[arg-type]
    obj.texts, obj.tables = [], []
    return _pack(obj), findings


def _run_test_hook(att: Attachment) -> None:
    if att.content_type == TEST_SLEEP:
        time.sleep(float(att.data or b"3600"))
    elif att.content_type == TEST_CRASH:
        os.kill(os.getpid(), signal.SIGSEGV)
    elif att.content_type == TEST_SPIN:
        while True:
            pass
    elif att.content_type == TEST_ALLOC:
        blob = bytearray(int(att.data) * MiB)
        blob[-1] = 1


def _worker_main(conn: Connection, memory_limit_mb: int, test_hooks: bool,
                 limits: ExtractLimits, niceness: int, cpu_seconds_per_job: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    # The parent's setting at pool creation is the worker's setting: a forkserver child
    # would otherwise inherit whatever environment the forkserver started with.
    if test_hooks:
        os.environ["GUARD_TEST_HOOKS"] = "1"
    else:
        os.environ.pop("GUARD_TEST_HOOKS", None)
    # Import the heavy libraries before the memory limit and before the first job, so a
    # job's time is spent on the job.
    import defusedxml.ElementTree  # noqa: F401
    import pypdfium2  # noqa: F401
    import python_calamine  # noqa: F401

    _limit_resources(memory_limit_mb)
    # Extraction is batch work; the SMTP event loop should win the CPU when both want it
    if niceness:
        with contextlib.suppress(OSError):
            os.nice(niceness)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if job[0] == "stop":
            return
        _limit_cpu_for_next_job(cpu_seconds_per_job)
        try:
            if job[0] == "parse":
                _, raw, mail_from, rcpt_tos, ctx = job
                view = parse_message(raw, mail_from, rcpt_tos, limits.parse_limits)
                reply: tuple[str, Any] = ("ok", (*_detect(view, ctx), None))
            elif job[0] == "extract":
                _, att, budget, ctx, rcpt_tos = job
                if os.environ.get("GUARD_TEST_HOOKS") == "1":
                    _run_test_hook(att)
                extracted = extract(att, limits, budget=budget)
                part = MessageView(mail_from="", rcpt_tos=rcpt_tos, texts=extracted.texts,
                                   tables=extracted.tables, inner_names=extracted.inner_names)
                packed, findings = _detect(extracted, ctx, part)
                reply = ("ok", (packed, findings, budget))
            else:
                reply = ("error", f"unknown job {job[0]!r}")
        except MemoryError:
            reply = ("memory", f"memory limit of {memory_limit_mb} MB reached")
        except Exception as e:  # parse_message/extract do not raise; this is a backstop
            reply = ("error", f"{type(e).__name__}: {e}"[:300])
        try:
            try:
                conn.send(reply)
            except MemoryError:  # the result itself did not fit
                del reply
                conn.send(("memory", f"memory limit of {memory_limit_mb} MB reached"))
        except OSError:
            return  # the parent went away (or killed us mid-send)


# --- parent side ---------------------------------------------------------------------------

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
            payload = (_unpack(packed), findings, budget)
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


def _failure(e: Exception) -> tuple[str, str]:
    """(problem code, detail) for a failed job; anything unexpected counts as the worker
    having died, so the message is held rather than the caller getting an exception."""
    if isinstance(e, _JobFailed):
        return e.code, e.detail
    return "worker_died", f"{type(e).__name__}: {e}"[:300]


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
    ) -> None:
        self._size = max(1, workers or os.cpu_count() or 1)
        self.per_attachment_timeout = per_attachment_timeout
        self.per_message_timeout = per_message_timeout
        self._memory_limit_mb = memory_limit_mb
        self._limits = limits or ExtractLimits()
        self._max_jobs = max_jobs_per_worker
        self._niceness = niceness
        self._cpu_per_job = (cpu_seconds_per_job if cpu_seconds_per_job is not None
                             else per_message_timeout + 5)
        # forkserver: workers are forked from a clean single-threaded server process, not
        # from this process with its event loop and threads
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(method)
        self._test_hooks = os.environ.get("GUARD_TEST_HOOKS") == "1"
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
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self._memory_limit_mb, self._test_hooks, self._limits,
                  self._niceness, self._cpu_per_job),
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
