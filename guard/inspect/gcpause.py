"""The cyclic garbage collector paused while a large graph without cycles is built.

The detectors make hits, values and records by the hundred thousand, and unpacking a
worker's tables builds 100k+ row lists: no cycles among them (reference counts free
them), but they set off full collections that walk every object of the process, ~50-100
ms apiece with the GIL held. gc's switch is one per process, and the main process pauses
it from the event loop (small messages inspected inline) and from the extraction pool's
threads (unpacking) at once: each saving and restoring the switch on its own could
leave it off for good (a thread reads "off" while another's pause is on, and restores
"off"). So the pauses are counted: the first saves the switch, the last restores it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def collections_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
