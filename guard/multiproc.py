"""Metrics shared by the guard's processes (prometheus_client's multiprocess mode).

With SMTP front processes (smtp.front_processes), each process writes its counters and
histograms to small mmap files in one directory and /metrics adds them up; the gauges
the main process knows (guard.metrics.STATE) are yielded beside them. The directory
must be chosen before prometheus_client is first imported, so `guard serve` calls
`enable()` before it imports the application; a child started with `spawn` inherits it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prometheus_client is imported only after enable()
    from prometheus_client.registry import Collector

ENV = "PROMETHEUS_MULTIPROC_DIR"


def enable() -> str:
    """Use the directory the environment names, or a fresh private one removed at exit."""
    path = os.environ.get(ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        return path
    path = tempfile.mkdtemp(prefix="guard-metrics-")
    os.environ[ENV] = path
    owner = os.getpid()

    def cleanup() -> None:
        if os.getpid() == owner:  # not from a child that inherited the handler
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(cleanup)
    return path


def active() -> bool:
    """True when this process's metric values live in the shared directory."""
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def exposition(main_process: Collector) -> bytes:
    """The /metrics text: this process's registry (which holds `main_process`), or every
    process's files added up and `main_process`'s gauges."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    if not active():
        return generate_latest(REGISTRY)
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(main_process)
    return generate_latest(registry)


def process_gone(pid: int) -> None:
    """Forget a dead process's live gauges (its counters keep counting in the sum)."""
    if active():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
