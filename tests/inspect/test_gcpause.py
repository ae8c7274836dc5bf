"""The collector's pause is counted across threads: the main process pauses it from the
event loop and from the extraction pool's threads at once, and it must come back on."""

from __future__ import annotations

import gc
import sys
import threading

import pytest

from guard.inspect.gcpause import collections_paused


def test_pauses_from_several_threads_leave_the_collector_on() -> None:
    assert gc.isenabled()
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to hit the race
    stop = threading.Event()

    def pause_again_and_again() -> None:
        while not stop.is_set():
            with collections_paused():
                assert not gc.isenabled()

    threads = [threading.Thread(target=pause_again_and_again) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        stop.wait(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        sys.setswitchinterval(old)
    assert gc.isenabled()


def test_nested_and_error_paths_restore_what_the_caller_had() -> None:
    with pytest.raises(RuntimeError), collections_paused():
        with collections_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
        raise RuntimeError("detector failed")
    assert gc.isenabled()
    gc.disable()  # a caller that had it off keeps it off
    try:
        with collections_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
