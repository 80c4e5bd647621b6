"""Abstract experiments and experiment units; clients (e.g. the daemon client) implement them.

Concurrency model: every experiment owns one event loop while it is entered. With `with`, the
loop runs in a background thread, so `experiment.add(...)` works from plain synchronous code;
with `async with`, it is the caller's running loop. All launching work runs on that loop and is
returned as an `ExperimentFuture`, which can be awaited from any loop or waited for with
`result()`. On exit the experiment waits for everything it started, then reports any failure
nobody awaited.

After exit (or before entering, for a re-attached experiment) units can still be waited for,
as with XManager, whose launch scripts wait after leaving the block: that work runs on the
caller's running loop, or from synchronous code on a private loop that lives only while some
wait is unfinished. Adding units or jobs needs the experiment entered.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from xmanager.xm import job_operators
from xmanager.xm.args import UserArgs
from xmanager.xm.errors import (
    ExperimentUnitError,
    ExperimentUnitFailedError,
    ExperimentUnitNotCompletedError,
    NotFoundError,
)
from xmanager.xm.futures import ExperimentFuture, result_of
from xmanager.xm.job_blocks import AuxiliaryUnitJob, Executable, JobGroup, JobType, Packageable
from xmanager.xm.launched import LaunchedJob
from xmanager.xm.metadata import MetadataContext
from xmanager.xm.roles import AuxiliaryUnitRole, ExperimentUnitRole, WorkUnitRole
from xmanager.xm.status import ExperimentUnitStatus
from xmanager.xm.transient_loop import TransientLoop, run_loop_in_this_thread

__all__ = [
    "AuxiliaryUnit",
    "Experiment",
    "ExperimentUnit",
    "ExperimentUnitError",
    "ExperimentUnitFailedError",
    "ExperimentUnitNotCompletedError",
    "NotFoundError",
    "WorkUnit",
]

T = TypeVar("T")

_WORK_UNIT_ROLE = WorkUnitRole()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _settle(futures: Sequence[concurrent.futures.Future[Any]]) -> None:
    """Waits until the futures are done, without raising their errors.

    The asyncio wrappers' errors are marked retrieved: the concurrent futures keep them for
    whoever reports them, and asyncio does not log them as never retrieved.
    """
    wrappers = [asyncio.wrap_future(future) for future in futures]
    await asyncio.wait(wrappers)
    for wrapper in wrappers:
        if not wrapper.cancelled():
            wrapper.exception()


class ExperimentUnit(abc.ABC):
    """A unit of an experiment (a work unit or an auxiliary unit): a set of jobs run together."""

    def __init__(
        self,
        experiment: Experiment,
        args: Mapping[str, Any] | None,
        role: ExperimentUnitRole,
        identity: str = "",
    ) -> None:
        self._experiment = experiment
        self._args = dict(args or {})
        self._role = role
        self._identity = identity
        self._context = MetadataContext()
        self._launched_jobs: list[LaunchedJob] = []

    @property
    def experiment(self) -> Experiment:
        return self._experiment

    @property
    def experiment_id(self) -> int:
        return self._experiment.experiment_id

    @property
    def args(self) -> dict[str, Any]:
        """The args the unit was added with (its hyperparameters), for display."""
        return dict(self._args)

    @property
    def role(self) -> ExperimentUnitRole:
        return self._role

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def context(self) -> MetadataContext:
        return self._context

    @property
    def launched_jobs(self) -> list[LaunchedJob]:
        """The jobs added to this unit so far, in order (XManager's read-only view)."""
        return list(self._launched_jobs)

    @property
    @abc.abstractmethod
    def experiment_unit_name(self) -> str:
        """A name unique within all experiments, e.g. '42_3' for work unit 3 of experiment 42."""

    def get_full_job_name(self, job_name: str) -> str:
        return f"{self.experiment_unit_name}_{job_name}"

    def add(
        self, job: JobType, args: UserArgs | None = None, *, identity: str = ""
    ) -> ExperimentFuture[None]:
        """Adds a Job, JobGroup or job generator to this unit.

        The job and args are checked at once (errors raise here); the launch itself runs on the
        experiment's event loop. A Job takes {'args': {...}, 'env_vars': {...}}, merged into
        its own; a JobGroup takes such entries nested by job name; a generator is called as
        `generator(self, **args)`.
        """
        self._experiment._require_loop()  # Refused before anything is recorded.
        return self._experiment._spawn(self._add_now(job, args, identity))

    def _add_now(
        self, job: JobType, args: UserArgs | None, identity: str
    ) -> Coroutine[Any, Any, None]:
        """What `add` runs on the experiment's loop (checks happen here, at the call)."""
        prepared = job_operators.prepare(job, args)
        return self._add_prepared(prepared, job_operators.work_unit_args(job, args), identity)

    def _add_prepared(
        self, prepared: job_operators.Prepared, recorded: dict[str, Any], identity: str
    ) -> Coroutine[Any, Any, None]:
        if isinstance(prepared, JobGroup):
            self._launched_jobs.extend(
                LaunchedJob(name) for name in job_operators.flatten_jobs(prepared)
            )
            return _await(self._launch_job_group(prepared, recorded, identity))
        generator, kwargs = prepared
        return _await(generator(self, **kwargs))

    @abc.abstractmethod
    def _launch_job_group(
        self, job_group: JobGroup, args: Mapping[str, Any], identity: str
    ) -> Awaitable[None]:
        """Launches the jobs of a group, on the experiment's event loop.

        Args:
          job_group: a copy with the add's args already applied and every job's `name` equal to
            its key; `xm.flatten_jobs(job_group)` lists the jobs (unique names, at least one).
          args: the args as the launch script passed them, to record (not to apply again).
          identity: the unit's identity; see `Experiment.add`.
        """

    def wait_until_complete(self) -> ExperimentFuture[ExperimentUnit]:
        """Waits until the unit reaches a final state; resolves to the unit.

        Works inside the experiment's block and after it (`await` it, or `result()` from
        synchronous code), as XManager's launch scripts wait after leaving the block.

        Raises (through the future):
          ExperimentUnitFailedError: the unit failed or was lost.
          ExperimentUnitNotCompletedError: the unit was cancelled.
        """

        async def wait() -> ExperimentUnit:
            status = await self._wait_until_complete()
            if status.is_failed:
                raise ExperimentUnitFailedError(self, status)
            if not status.is_completed:
                raise ExperimentUnitNotCompletedError(self, status)
            return self

        return self._experiment._spawn(wait(), track=False)

    @abc.abstractmethod
    def _wait_until_complete(self) -> Awaitable[ExperimentUnitStatus]:
        """Waits for a final state and returns that status.

        Runs on the experiment's event loop while it is entered; otherwise on the waiter's loop
        or a short-lived private one, so implementations must not assume one loop throughout.
        """

    @abc.abstractmethod
    def get_status(self) -> ExperimentUnitStatus:
        """The unit's current status."""

    @abc.abstractmethod
    def stop(
        self,
        *,
        mark_as_failed: bool = False,
        mark_as_completed: bool = False,
        message: str | None = None,
    ) -> None:
        """Stops the unit's jobs; optionally records it as failed or completed with a message."""


class WorkUnit(ExperimentUnit):
    """A work unit: one trial of an experiment, numbered from 1 within it."""

    @property
    @abc.abstractmethod
    def work_unit_id(self) -> int:
        """The unit's number within its experiment."""

    @property
    def experiment_unit_name(self) -> str:
        return f"{self.experiment_id}_{self.work_unit_id}"


class AuxiliaryUnit(ExperimentUnit):
    """An auxiliary unit, serving the experiment (e.g. a TensorBoard)."""

    @property
    def role(self) -> AuxiliaryUnitRole:
        role = self._role
        if not isinstance(role, AuxiliaryUnitRole):
            raise TypeError(f"An AuxiliaryUnit needs an AuxiliaryUnitRole, got {role!r}.")
        return role

    @property
    def auxiliary_unit_id(self) -> int:
        """The unit's number within its experiment (launchers that number them override this)."""
        raise NotImplementedError(f"{type(self).__name__} has no auxiliary_unit_id")

    @property
    def experiment_unit_name(self) -> str:
        return f"{self.experiment_id}_auxiliary"


class _PackagingResult:
    """Packages one packageable in a worker thread on first await; awaitable many times."""

    def __init__(
        self,
        package: Callable[[Sequence[Packageable]], Sequence[Executable]],
        packageable: Packageable,
    ) -> None:
        self._package = package
        self._packageable = packageable
        self._lock = threading.Lock()
        self._future: concurrent.futures.Future[Executable] | None = None

    def _run(self, future: concurrent.futures.Future[Executable]) -> None:
        try:
            executables = self._package([self._packageable])
            if len(executables) != 1:
                raise ValueError(f"package() returned {len(executables)} executables for one.")
            future.set_result(executables[0])
        except BaseException as error:  # Delivered to whoever awaits.
            future.set_exception(error)

    def _start(self) -> concurrent.futures.Future[Executable]:
        with self._lock:
            if self._future is None:
                self._future = concurrent.futures.Future()
                # Packaging blocks (it builds); a thread keeps every event loop responsive.
                threading.Thread(
                    target=self._run, args=(self._future,), name="xm-package", daemon=True
                ).start()
            return self._future

    def __await__(self) -> Generator[Any, None, Executable]:
        return asyncio.wrap_future(self._start()).__await__()


class Experiment(abc.ABC):
    """An experiment: work units (and auxiliary units) launched by a launch script.

    Use it as `with experiment:` or `async with experiment:`; `add` is only allowed inside.
    """

    def __init__(self) -> None:
        self._context = MetadataContext()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._pending: list[ExperimentFuture[Any]] = []
        self._pending_lock = threading.Lock()
        self._exited = False
        # Runs waits that synchronous code starts while the experiment is not entered.
        self._outside_loop = TransientLoop("xm-wait-loop")

    # ----- Hooks for clients -------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def experiment_id(self) -> int:
        """The experiment's id (assigned by the store)."""

    @property
    @abc.abstractmethod
    def work_unit_count(self) -> int:
        """The number of work units added so far."""

    @property
    @abc.abstractmethod
    def work_units(self) -> Mapping[int, WorkUnit]:
        """Work units by id."""

    @abc.abstractmethod
    def _create_experiment_unit(
        self, args: Mapping[str, Any] | None, role: ExperimentUnitRole, identity: str
    ) -> Awaitable[ExperimentUnit]:
        """Creates a unit for `role` (a WorkUnit for WorkUnitRole, an AuxiliaryUnit for an
        AuxiliaryUnitRole), on the experiment's event loop. `args` are for recording."""

    @abc.abstractmethod
    def _wait_for_local_jobs(self, is_exit_abrupt: bool) -> Awaitable[None]:
        """Called on exit, on the experiment's event loop, after every launch finished.

        Args:
          is_exit_abrupt: whether the `with` body raised.
        """

    @classmethod
    @abc.abstractmethod
    def package(cls, packageables: Sequence[Packageable] = ()) -> Sequence[Executable]:
        """Packages (builds or fetches) the given packageables, blocking; one result each."""

    async def _on_enter(self) -> None:  # noqa: B027  # An optional hook.
        """Called on entry, on the experiment's event loop (e.g. to create the record)."""

    # ----- Context management ------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._check_not_entered()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=run_loop_in_this_thread, args=(loop,), name="xm-experiment-loop", daemon=True
        )
        thread.start()
        self._loop, self._loop_thread = loop, thread
        try:
            result_of(asyncio.run_coroutine_threadsafe(self._on_enter(), loop))
        except BaseException:
            self._close_loop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        loop = self._require_loop()
        if self._loop_thread is None:
            raise RuntimeError(
                "This experiment was entered with `async with`; exit it the same way."
            )
        try:
            future = asyncio.run_coroutine_threadsafe(self._exit_async(exc is not None), loop)
            try:
                errors = result_of(future)
            except BaseException:
                # E.g. Ctrl+C while waiting: stop waiting for the jobs, then shut down.
                future.cancel()
                raise
        finally:
            self._close_loop()
        self._report(errors, exc)

    async def __aenter__(self) -> Self:
        self._check_not_entered()
        self._loop = asyncio.get_running_loop()
        try:
            await self._on_enter()
        except BaseException:
            self._loop = None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._require_loop()
        if self._loop_thread is not None:
            raise RuntimeError("This experiment was entered with `with`; exit it the same way.")
        try:
            errors = await self._exit_async(exc is not None)
        finally:
            self._loop = None
            self._exited = True
            with self._pending_lock:
                self._pending.clear()
        self._report(errors, exc)

    def _check_not_entered(self) -> None:
        if self._loop is not None:
            raise RuntimeError("This experiment is already entered; enter it only once.")

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            if self._exited:
                raise RuntimeError(
                    "The experiment is not entered: its `with` block has ended. Add units and "
                    "jobs inside `with experiment:` or `async with experiment:` (enter it again "
                    "to add more); waiting for units, get_status() and stop() work after it."
                )
            raise RuntimeError(
                "The experiment is not entered: use it as `with experiment:` or "
                "`async with experiment:` and add units inside that block."
            )
        return self._loop

    def _close_loop(self) -> None:
        loop, thread = self._loop, self._loop_thread
        self._loop = self._loop_thread = None
        self._exited = True
        with self._pending_lock:
            self._pending.clear()
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()

    async def _exit_async(self, is_exit_abrupt: bool) -> list[BaseException]:
        errors = await self._drain_pending()
        await self._wait_for_local_jobs(is_exit_abrupt)
        # Jobs added while waiting (e.g. by generators) are waited for too.
        errors += await self._drain_pending()
        return errors

    async def _drain_pending(self) -> list[BaseException]:
        """Waits for all tracked work; returns the failures nobody awaited."""
        errors: list[BaseException] = []
        while True:
            with self._pending_lock:
                if not self._pending:
                    return errors
                pending = self._pending.pop(0)
            inner = pending.concurrent_future()
            await _settle([inner])
            if inner.cancelled() or pending.observed:
                continue
            error = inner.exception()
            if error is not None:
                errors.append(error)

    @staticmethod
    def _report(errors: list[BaseException], exc: BaseException | None) -> None:
        if not errors:
            return
        notes = [f"Also failed while launching: {error!r}" for error in errors[1:]]
        if exc is not None:
            # The `with` body's own exception propagates; launch failures ride along as notes.
            for error in errors:
                exc.add_note(f"Also failed while launching: {error!r}")
            return
        first = errors[0]
        for note in notes:
            first.add_note(note)
        raise first

    def _spawn(self, coro: Coroutine[Any, Any, T], *, track: bool = True) -> ExperimentFuture[T]:
        """Runs `coro` on the experiment's event loop (for units and client subclasses).

        With `track`, the experiment waits for it on exit and reports its failure unless
        someone awaited it; tracked work (launching) needs the experiment entered. Untracked
        work (waiting) also runs when it is not: on the caller's running loop, or else on a
        private loop that stops once no such work is left.
        """
        loop = self._loop
        if loop is None and not track:
            return self._spawn_outside(coro)
        try:
            loop = self._require_loop()
        except RuntimeError:
            coro.close()  # Never started; avoids a "never awaited" warning on top of the error.
            raise
        future = ExperimentFuture(asyncio.run_coroutine_threadsafe(coro, loop), loop)
        if track:
            with self._pending_lock:
                self._pending.append(future)
        return future

    def _spawn_outside(self, coro: Coroutine[Any, Any, T]) -> ExperimentFuture[T]:
        """Runs `coro` while the experiment is not entered (see `_spawn`)."""
        running = _running_loop()
        if running is not None:
            # Scheduled, not run here, so that it starts even if the caller only polls done().
            return ExperimentFuture(asyncio.run_coroutine_threadsafe(coro, running), running)
        future, loop = self._outside_loop.submit(coro)
        return ExperimentFuture(future, loop)

    # ----- The launch-script API ---------------------------------------------------------------

    @property
    def context(self) -> MetadataContext:
        """Title, tags and notes: `experiment.context.annotations.add_tags('sweep')`."""
        return self._context

    @overload
    def add(
        self,
        job: AuxiliaryUnitJob,
        args: UserArgs | None = None,
        *,
        role: None = None,
        identity: str = "",
    ) -> ExperimentFuture[AuxiliaryUnit]: ...

    @overload
    def add(
        self,
        job: JobType,
        args: UserArgs | None = None,
        *,
        role: WorkUnitRole | None = None,
        identity: str = "",
    ) -> ExperimentFuture[WorkUnit]: ...

    @overload
    def add(
        self,
        job: JobType,
        args: UserArgs | None = None,
        *,
        role: AuxiliaryUnitRole,
        identity: str = "",
    ) -> ExperimentFuture[AuxiliaryUnit]: ...

    def add(
        self,
        job: JobType | AuxiliaryUnitJob,
        args: UserArgs | None = None,
        *,
        role: ExperimentUnitRole | None = None,
        identity: str = "",
    ) -> ExperimentFuture[Any]:
        """Adds a unit running `job`; resolves to the unit once its jobs are launched.

        Args:
          job: an xm.Job (args: {'args': {...}, 'env_vars': {...}}, merged into the job's
            own), an xm.JobGroup (args nested by
            job name: {'agent': {'args': {...}, 'env_vars': {...}}}), a job generator (an
            `async def` function called as `generator(unit, **args)`), or an
            xm.AuxiliaryUnitJob (which sets the role).
          args: see `job`; also recorded as the unit's hyperparameters.
          role: WorkUnitRole() (default) or an AuxiliaryUnitRole.
          identity: optional idempotency key; a client keeps at most one unit per identity.

        Raises:
          RuntimeError: the experiment is not entered.
          TypeError, ValueError: bad job or args (raised here, before anything runs).
        """
        self._require_loop()
        if isinstance(job, AuxiliaryUnitJob):
            role = job.role
            job = job.job
        role = role if role is not None else _WORK_UNIT_ROLE
        if not isinstance(role, ExperimentUnitRole):
            raise TypeError(
                f"role must be xm.WorkUnitRole() or xm.AuxiliaryUnitRole, got {role!r}."
            )
        if not isinstance(identity, str):
            raise TypeError(f"identity must be a str, got {identity!r}.")
        # Prepared here, so that bad jobs or args fail at the caller's line, not on the loop.
        prepared = job_operators.prepare(job, args)
        recorded = job_operators.work_unit_args(job, args)

        async def launch() -> ExperimentUnit:
            unit = await self._create_experiment_unit(recorded, role, identity)
            try:
                # Directly on this loop: `unit.add` would schedule another task for it.
                await unit._add_prepared(prepared, recorded, identity)
            except Exception as error:
                with contextlib.suppress(Exception):
                    unit.stop(mark_as_failed=True, message=f"Launching the unit failed: {error!r}")
                raise
            return unit

        return self._spawn(launch())

    @classmethod
    def package_async(cls, packageable: Packageable) -> Awaitable[Executable]:
        """Packages `packageable` in the background when first awaited (awaitable many times)."""
        return _PackagingResult(cls.package, packageable)

    def wait_for_completion(self) -> ExperimentFuture[None]:
        """Waits for every launch, then for every work unit to end.

        Raises (through the future) the first unit's ExperimentUnitError, after waiting for all.
        """

        async def wait() -> None:
            while True:
                with self._pending_lock:
                    pending = [future.concurrent_future() for future in self._pending]
                unfinished = [future for future in pending if not future.done()]
                if not unfinished:
                    break
                await _settle(unfinished)
            outcomes = await asyncio.gather(
                *(_await(unit.wait_until_complete()) for unit in self.work_units.values()),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome

        return self._spawn(wait(), track=False)
