"""`xm.run_in_asyncio_loop`: an `async def` function made synchronous, as XManager's.

For an async launch script's `main` run by `absl.app.run`, and for async test methods. Each call
runs the coroutine to completion in a new event loop and returns its result (or raises its
exception); the loop is closed afterwards. Calling it from inside a running loop is an error,
as with XManager.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def run_in_asyncio_loop(f: Callable[P, Awaitable[R]]) -> Callable[P, R]:
    """Turns an async function into a synchronous one with the same arguments."""

    @functools.wraps(f)
    def decorated(*args: P.args, **kwargs: P.kwargs) -> R:
        if _running_loop() is not None:
            name = getattr(f, "__qualname__", repr(f))
            raise RuntimeError(
                f"{name} is wrapped with xm.run_in_asyncio_loop and was called from inside a "
                "running event loop: await the undecorated coroutine function instead"
            )
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(_as_coroutine(f(*args, **kwargs)))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    return decorated


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _as_coroutine(awaitable: Awaitable[R]) -> R:
    return await awaitable
