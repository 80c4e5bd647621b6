"""Event loops in background threads: an experiment's own, and one that lives only while busy.

After an experiment's `with` block ends, its loop is gone, yet synchronous code may still wait
for its units (`unit.wait_until_complete().result()`). That work runs on a `TransientLoop`: a
thread and loop started by the first piece of work and stopped when the last one ends, so
nothing lingers once the wait is over.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_loop_in_this_thread(loop: asyncio.AbstractEventLoop) -> None:
    """Runs `loop` until stopped, then shuts it down as `asyncio.run` does.

    The shutdown happens in this thread so that it works even when the thread that started the
    loop has an event loop of its own running.
    """
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


class TransientLoop:
    """A background event loop that runs only while some submitted work is unfinished."""

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unfinished = 0

    def submit(
        self, coro: Coroutine[Any, Any, T]
    ) -> tuple[concurrent.futures.Future[T], asyncio.AbstractEventLoop]:
        """Runs `coro` on the loop (started if needed); returns its future and the loop."""
        with self._lock:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=run_loop_in_this_thread,
                    args=(loop,),
                    name=self._thread_name,
                    daemon=True,
                ).start()
            self._unfinished += 1
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        future.add_done_callback(lambda _: self._finished(loop))
        return future, loop

    def _finished(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._unfinished -= 1
            if self._unfinished or self._loop is not loop:
                return
            self._loop = None
        # The thread shuts the loop down and ends (this may run on that very thread).
        loop.call_soon_threadsafe(loop.stop)
