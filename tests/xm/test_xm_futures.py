"""Waiting on experiment work from synchronous code stays responsive to Ctrl+C."""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time

import pytest

from xmanager.xm import futures


def test_a_wait_notices_ctrl_c_that_the_kernel_gave_another_thread() -> None:
    # Python runs the handler in the main thread; a wait that never woke up missed a SIGINT
    # delivered to another thread until the work ended (here after 5 s).
    pending: concurrent.futures.Future[None] = concurrent.futures.Future()
    asleep = threading.Event()

    def sleeper() -> None:
        asleep.set()
        time.sleep(10)

    other = threading.Thread(target=sleeper, daemon=True)
    other.start()
    asleep.wait()
    assert other.ident is not None
    finisher = threading.Timer(5, pending.set_result, (None,))
    # As on a terminal: a test run started as a background job inherits SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    finisher.start()
    threading.Timer(0.2, signal.pthread_kill, (other.ident, signal.SIGINT)).start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            futures.result_of(pending)
        assert time.monotonic() - started < 3
    finally:
        finisher.cancel()
        signal.signal(signal.SIGINT, previous)


def test_result_of_times_out_and_returns_results_and_errors() -> None:
    pending: concurrent.futures.Future[int] = concurrent.futures.Future()
    with pytest.raises(TimeoutError):
        futures.result_of(pending, timeout=0.05)
    pending.set_result(3)
    assert futures.result_of(pending) == 3
    failed: concurrent.futures.Future[int] = concurrent.futures.Future()
    failed.set_exception(TimeoutError("the work's own"))
    with pytest.raises(TimeoutError, match="the work's own"):
        futures.result_of(failed)
