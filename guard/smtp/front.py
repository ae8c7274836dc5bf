"""SMTP fronts: the SMTP sessions in child processes, the pipeline in the main process.

An SMTP session is mostly Python work per command (aiosmtpd, TLS, AUTH, the DATA reader);
inspection, the commit and delivery are the rest. With `smtp.front_processes` ≥ 1 the
main process binds the listening sockets and hands them to that many children, which run
the sessions and pass each complete message back over a socket pair; the main process
inspects and commits it and sends back the reply, so the client still gets its 250 only
after the commit (the database stays in one process: SQLite has one writer).

Frames both ways: request id (8 bytes), payload length (4 bytes), data length (8 bytes),
payload, data.
  front → main   id ≥ 1: a pickled ReceivedMessage       id 0: b"ready"
                 without its bytes, which follow as the
                 data, or an AuthQuery (failed AUTH per
                 address)
  main → front   id ≥ 1: the pickled outcome for that    id 0: b"stop"
                 id (guard.smtp.outcome), which the
                 front formats (guard.smtp.replies);
                 for an AuthQuery: seconds blocked
The message bytes are written in parts with the event loop free between them: pickled
with the rest, a 30 MB message was two copies and one write that held the front's loop
(and EHLO on every other connection) for tens of milliseconds. One frame at a time goes
on the link (a lock), and a session cancelled mid-frame still finishes its frame.
The link is between two processes of one program, so pickle is safe here. A front dies
with the main process (PR_SET_PDEATHSIG, end of file on the link); a front that dies
alone is started again, and its clients, who never got a 250, send again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing as mp
import pickle
import signal
import socket
import struct
import time
from typing import Any

from guard import multiproc
from guard.config import ConfigError, Settings
from guard.eventloop import run_loop
from guard.smtp.authlimit import AuthLimiter, AuthQuery, answer
from guard.smtp.listenerconfig import ListenerConfig
from guard.smtp.outcome import Accepted, Acceptor, Held, Outcome, Rejected, TryLater
from guard.smtp.received import ReceivedMessage
from guard.smtp.replies import UNAVAILABLE

log = logging.getLogger("guard.smtp")

_FRAME = struct.Struct("!QIQ")
_PART = 256 * 1024  # message bytes written per turn of the event loop
_PR_SET_PDEATHSIG = 1
_START_TIMEOUT = 60.0  # a spawned interpreter imports the package first
_OUTCOMES = (Accepted, Held, Rejected, TryLater)


def _frame(rid: int, payload: bytes) -> bytes:
    return _FRAME.pack(rid, len(payload), 0) + payload


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes] | None:
    """(request id, payload, data)."""
    try:
        rid, n, m = _FRAME.unpack(await reader.readexactly(_FRAME.size))
        payload = await reader.readexactly(n)
        return rid, payload, (await reader.readexactly(m) if m else b"")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _consume(task: asyncio.Future[None]) -> None:
    """A send that outlived its cancelled session: nobody waits for its error."""
    if not task.cancelled():
        task.exception()


# -- the main process's side -------------------------------------------------------------

class SmtpFronts:
    """Starts `count` front processes on the bound listening sockets and answers them."""

    def __init__(self, settings: Settings, listeners: list[tuple[ListenerConfig, socket.socket]],
                 accept: Acceptor, count: int, auth_limiter: AuthLimiter | None = None) -> None:
        self.settings = settings
        self.listeners = listeners
        self.accept = accept
        self.count = count
        self.auth_limiter = auth_limiter  # one window for every front
        self._ctx = mp.get_context("spawn")  # never fork a process with a running loop
        self._procs: dict[int, Any] = {}
        self._links: dict[int, asyncio.StreamWriter] = {}
        self._ready: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._answers: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        for i in range(self.count):
            self._ready[i] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._supervise(i), name=f"guard-front-{i}"))
        # the sockets already queue connections; wait so "started" means answering, and
        # a front that cannot start (say, an unreadable users file) stops the start
        ready = asyncio.ensure_future(asyncio.gather(*(e.wait() for e in self._ready.values())))
        started: list[asyncio.Future[Any]] = [ready, self._failed]
        await asyncio.wait(started, timeout=_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if self._failed.done() or not ready.done():
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            await self.stop(grace=1.0)
        if self._failed.done():
            raise self._failed.exception() or RuntimeError("SMTP front failed")
        if not ready.done() or ready.cancelled():
            raise TimeoutError(f"SMTP fronts not answering after {_START_TIMEOUT:.0f} s")

    async def _supervise(self, i: int) -> None:
        delay = 1.0
        while not self._stopping:
            started = time.monotonic()
            mine, theirs = socket.socketpair()
            proc = self._ctx.Process(target=front_main, name=f"guard-smtp-{i}",
                                     args=(self.settings, self.listeners, theirs))
            proc.start()
            theirs.close()
            self._procs[i] = proc
            reader, writer = await asyncio.open_unix_connection(sock=mine)
            self._links[i] = writer
            await self._serve(i, reader, writer)
            writer.close()
            if self._stopping:
                return
            await asyncio.get_running_loop().run_in_executor(None, proc.join, 5)
            if not self._ready[i].is_set():
                if not self._failed.done():
                    self._failed.set_exception(ConfigError(
                        f"SMTP front {i} exited with {proc.exitcode} before answering "
                        "(its error is in the log above)"))
                return
            log.error("SMTP front %d (pid %d) exited with %s; starting it again in %.0f s",
                      i, proc.pid, proc.exitcode, delay)
            if proc.pid is not None:
                multiproc.process_gone(proc.pid)
            await asyncio.sleep(delay)
            delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 30.0)

    async def _serve(self, i: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        while (frame := await _read_frame(reader)) is not None:
            rid, payload, data = frame
            if rid == 0:
                if payload == b"ready":
                    log.info("SMTP front %d (pid %d) is answering", i, self._procs[i].pid)
                    self._ready[i].set()
                continue
            task = asyncio.create_task(self._answer(writer, rid, payload, data))
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)

    async def _answer(self, writer: asyncio.StreamWriter, rid: int, payload: bytes,
                      data: bytes) -> None:
        result: Outcome | float
        try:
            request = pickle.loads(payload)
            if isinstance(request, ReceivedMessage):
                request.data = data
            if isinstance(request, AuthQuery):
                result = answer(self.auth_limiter, request) if self.auth_limiter else 0.0
            else:
                result = await self.accept(request)
        except Exception:
            # the accept function answers its own errors; this is a broken frame
            log.exception("a message from an SMTP front could not be handled")
            result = UNAVAILABLE
        if not writer.is_closing():
            writer.write(_frame(rid, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)))

    async def stop(self, grace: float = 30.0) -> None:
        """Fronts stop listening, finish the messages they already handed over, exit."""
        self._stopping = True
        for w in self._links.values():
            if not w.is_closing():
                w.write(_frame(0, b"stop"))
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + grace
        for p in list(self._procs.values()):
            await loop.run_in_executor(None, p.join, max(deadline - time.monotonic(), 0.1))
            if p.is_alive():
                log.error("SMTP front pid %d did not stop; killing it", p.pid)
                p.kill()
                await loop.run_in_executor(None, p.join, 5)
            multiproc.process_gone(p.pid)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for _, sock in self.listeners:
            sock.close()


# -- the front process --------------------------------------------------------------------

class RemoteAcceptor:
    """The front's `accept`: the message goes to the main process; its outcome comes back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending: dict[int, asyncio.Future[object]] = {}
        self._next = 1
        self._sending = asyncio.Lock()  # a message's frame is written in parts
        self.stop_requested = asyncio.Event()
        self.idle = asyncio.Event()  # nothing handed over is waiting for its reply
        self.idle.set()

    async def __call__(self, msg: ReceivedMessage) -> Outcome:
        outcome = await self.request(msg)
        if not isinstance(outcome, _OUTCOMES):
            raise TypeError(f"the main process answered {type(outcome).__name__}")
        return outcome

    async def request(self, msg: ReceivedMessage | AuthQuery) -> object:
        if self.stop_requested.is_set() and self._writer.is_closing():
            raise ConnectionError("the main process is gone")
        rid, self._next = self._next, self._next + 1
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.idle.clear()
        try:
            # shielded: a frame cut off by a cancelled session would garble the link
            sending = asyncio.ensure_future(self._send(rid, msg))
            sending.add_done_callback(_consume)
            await asyncio.shield(sending)
            return await fut
        finally:
            self._pending.pop(rid, None)
            if not self._pending:
                self.idle.set()

    async def _send(self, rid: int, msg: ReceivedMessage | AuthQuery) -> None:
        data = b""
        if isinstance(msg, ReceivedMessage):
            data, msg = msg.data, dataclasses.replace(msg, data=b"")
        payload = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        head = _FRAME.pack(rid, len(payload), len(data)) + payload
        async with self._sending:
            view = memoryview(data)
            # the head goes with the first part: a message of one part (most mail) is one
            # send and one wake-up of the main process; a larger one follows part by
            # part, without a copy of the message
            piece: bytes | memoryview = head + view[:_PART]
            at = _PART
            while True:
                if self._writer.is_closing():
                    raise ConnectionError("the main process is gone")
                self._writer.write(piece)
                await self._writer.drain()
                if at >= len(data):
                    return
                await asyncio.sleep(0)  # drain returns at once while below its mark
                piece, at = view[at:at + _PART], at + _PART

    async def run(self) -> None:
        """Reads replies until the main process says stop or goes away."""
        while (frame := await _read_frame(self._reader)) is not None:
            rid, payload, _ = frame
            if rid == 0:
                if payload == b"stop":
                    self.stop_requested.set()
                continue
            fut = self._pending.get(rid)
            if fut is not None and not fut.done():
                try:
                    fut.set_result(pickle.loads(payload))
                except Exception as e:  # a broken frame: that session answers 451
                    fut.set_exception(e)
        # end of file: nobody can commit for us any more; unanswered messages get a 451
        self.stop_requested.set()
        self._writer.close()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the main process is gone"))

    def send_ready(self) -> None:
        self._writer.write(_frame(0, b"ready"))


class RemoteAuthGate:
    """A front's AUTH gate: the main process keeps the failure window for all fronts."""

    def __init__(self, remote: RemoteAcceptor) -> None:
        self.remote = remote

    async def blocked_for(self, ip: str) -> float:
        return await self._ask(AuthQuery("check", ip))

    async def failed(self, ip: str) -> float:
        return await self._ask(AuthQuery("failed", ip))

    async def _ask(self, query: AuthQuery) -> float:
        seconds = await self.remote.request(query)
        if not isinstance(seconds, int | float):
            raise ValueError(f"the main process answered {type(seconds).__name__}")
        return float(seconds)


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def front_main(settings: Settings, listeners: list[tuple[ListenerConfig, socket.socket]],
               link: socket.socket) -> None:
    """Entry point of a front process (multiprocessing spawn target)."""
    _die_with_parent()
    # Ctrl-C and SIGTERM to the process group: the main process decides when we stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from guard.logs import setup_logging

    setup_logging(settings.log.level, settings.log.format)
    run_loop(_front(settings, listeners, link))


async def _front(settings: Settings, listeners: list[tuple[ListenerConfig, socket.socket]],
                 link: socket.socket) -> None:
    from guard.smtp.handler import GuardHandler
    from guard.smtp.listeners import serve_listener, server_tls_context
    from guard.users import UserDirectory

    reader, writer = await asyncio.open_unix_connection(sock=link)
    remote = RemoteAcceptor(reader, writer)
    reading = asyncio.create_task(remote.run())
    gate = RemoteAuthGate(remote) if settings.smtp.auth_failures_per_address else None
    handler = GuardHandler(remote, settings.smtp.max_recipients, failure_gate=gate)
    tls = server_tls_context(settings)
    users = UserDirectory(settings.smtp.users_file)
    servers = [await serve_listener(handler, cfg, sock, users, tls) for cfg, sock in listeners]
    remote.send_ready()
    await remote.stop_requested.wait()
    for srv in servers:
        srv.close()
    # messages already handed over get their replies before we go
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(remote.idle.wait(), 30)
    reading.cancel()
    writer.close()
