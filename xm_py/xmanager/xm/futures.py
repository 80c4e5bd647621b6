"""`ExperimentFuture`: the result of work scheduled on an experiment's event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# How often a thread blocked on a future wakes up. Python runs a signal's handler (Ctrl+C's
# KeyboardInterrupt) in the main thread, and a signal the kernel hands to another thread does
# not interrupt the main thread's wait: without waking up, Ctrl+C could go unnoticed until the
# jobs waited for end.
_WAKE_SECONDS = 0.25


def wait_done(future: concurrent.futures.Future[Any], timeout: float | None = None) -> bool:
    """Waits until `future` is done or `timeout` passed, responsive to Ctrl+C all along."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not future.done():
        remaining = _WAKE_SECONDS
        if deadline is not None:
            remaining = min(remaining, deadline - time.monotonic())
            if remaining <= 0:
                return False
        concurrent.futures.wait([future], timeout=remaining)
    return True


def result_of(future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
    """`future.result(timeout)`, responsive to Ctrl+C while it waits."""
    if not wait_done(future, timeout):
        raise TimeoutError(f"not done after {timeout} s")
    return future.result(0)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class ExperimentFuture(Generic[T]):
    """Work running on an experiment's event loop.

    It can be awaited from any event loop (`await experiment.add(job)` inside `async with`, or
    inside a job generator), or waited for from synchronous code with `result()`.
    """

    def __init__(
        self, future: concurrent.futures.Future[T], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._future = future
        self._loop = loop
        # Whether someone took delivery of the outcome; the experiment reports failures nobody
        # looked at when it exits, and only those.
        self._observed = False

    @property
    def observed(self) -> bool:
        return self._observed

    def __await__(self) -> Generator[Any, None, T]:
        self._observed = True
        # Wrapping binds to the awaiting coroutine's own loop, whichever that is.
        return asyncio.wrap_future(self._future).__await__()

    def result(self, timeout: float | None = None) -> T:
        """Blocks until the work is done and returns its result or raises its exception.

        Raises:
          RuntimeError: when called on the experiment's own event loop, where blocking would
            deadlock; use `await` there.
          TimeoutError: the work did not finish within `timeout` seconds.
        """
        if not self._future.done() and _running_loop() is self._loop:
            raise RuntimeError(
                "ExperimentFuture.result() would block the experiment's event loop, which runs "
                "the work it waits for; use `await` instead."
            )
        try:
            return result_of(self._future, timeout)
        finally:
            # A timeout delivers nothing; only an outcome counts as observed.
            self._observed = self._observed or self._future.done()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self._future.done() and _running_loop() is self._loop:
            raise RuntimeError("ExperimentFuture.exception() would block; use `await` instead.")
        try:
            if not wait_done(self._future, timeout):
                raise TimeoutError(f"not done after {timeout} s")
            return self._future.exception(0)
        finally:
            self._observed = self._observed or self._future.done()

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> bool:
        return self._future.cancel()

    def concurrent_future(self) -> concurrent.futures.Future[T]:
        """The underlying thread-safe future, without marking the outcome as observed."""
        return self._future

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "pending"
        return f"<xm.ExperimentFuture {state}>"
