"""The extraction worker: the loop a child process of ExtractionPool runs.

One job at a time from the pipe: "parse" (a raw message into a MessageView) or
"extract" (one attachment), each answered with ("ok", result) or a failure. Limits that
the parent cannot enforce from outside are set here: the address-space limit (a
parser that allocates without end gets MemoryError, not the machine's memory), no core
files, a lower scheduling priority, and a CPU-time backstop per job.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from guard.inspect.context import InspectContext
from guard.inspect.extract import Extracted, ExtractLimits, extract
from guard.inspect.finding import Finding
from guard.inspect.isolate.wire import Packed, pack
from guard.inspect.readers.extraction import Reader
from guard.inspect.run import text_findings
from guard.mail.message import MessageView, parse_message

MiB = 1024 * 1024


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker is started with (pickled to the child process)."""

    memory_limit_mb: int
    limits: ExtractLimits
    niceness: int
    cpu_seconds_per_job: float
    # the reader for each kind of attachment; None: guard.inspect.extract.READERS
    readers: Mapping[str, Reader] | None = None


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
            view: MessageView | None = None) -> tuple[Packed, list[Finding]]:
    """Run the text detectors here, in the worker, when a context is given: the texts
    then stay in this process and only findings (and the non-text parts) go back."""
    if ctx is None:
        return pack(obj), []
    findings = text_findings(view if view is not None else obj, ctx)  # type: ignore[arg-type]
    obj.texts, obj.tables = [], []
    return pack(obj), findings


def worker_main(conn: Connection, settings: WorkerSettings) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    # Import the heavy libraries before the memory limit and before the first job, so a
    # job's time is spent on the job.
    import defusedxml.ElementTree  # noqa: F401
    import pypdfium2  # noqa: F401
    import python_calamine  # noqa: F401

    memory_limit_mb = settings.memory_limit_mb
    limits = settings.limits
    _limit_resources(memory_limit_mb)
    # Extraction is batch work; the SMTP event loop should win the CPU when both want it
    if settings.niceness:
        with contextlib.suppress(OSError):
            os.nice(settings.niceness)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if job[0] == "stop":
            return
        _limit_cpu_for_next_job(settings.cpu_seconds_per_job)
        try:
            if job[0] == "parse":
                _, raw, mail_from, rcpt_tos, ctx = job
                view = parse_message(raw, mail_from, rcpt_tos, limits.parse_limits)
                reply: tuple[str, Any] = ("ok", (*_detect(view, ctx), None))
            elif job[0] == "extract":
                _, att, budget, ctx, rcpt_tos = job
                extracted = extract(att, limits, budget=budget, readers=settings.readers)
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
