"""Turns recorded work units into running jobs, and backend observations into recorded statuses.

Two threads do the work:

- the *dispatcher* starts queued work units when enough job slots are free (a work unit's jobs
  start together, so a JobGroup is admitted whole), bounded by `max_running_jobs`;
- the *recorder* is the only writer of job statuses: it drains observations from all backends in
  batches and applies each batch to the store in one transaction (group commit), so thousands of
  status changes per second cost a few transactions, and the order of observations is the order
  of the writes.

When a job of a work unit fails, the recorder cancels the unit's other jobs. On start, `recover`
re-attaches to every job that was not final when the daemon last stopped.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime
import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy.exc

from launcher_server.aggregation import FAILED_STATES, FINAL_STATES
from launcher_server.backends.base import (
    Backend,
    BackendUnavailableError,
    JobKey,
    JobObservation,
    LaunchSpec,
)
from launcher_server.errors import FailedPreconditionError
from launcher_server.store.store import Store
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.state_dir import StateDir

_log = logging.getLogger(__name__)

_MAX_BATCH = 5000
# A batch smaller than this waits a moment for more observations before it is committed.
_LINGER_BELOW = 200
_LINGER_SECONDS = 0.01
_RECORD_RETRY_SECONDS = 60.0

UnitKey = tuple[int, int]


def _is_transient(error: sqlalchemy.exc.DBAPIError) -> bool:
    """A lost connection or a busy database, not a refusal of what was written."""
    return error.connection_invalidated or isinstance(
        error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
    )


def backend_name(job: pb.Job) -> str:
    """Which backend runs a job: its executor, and for local jobs its artifact kind."""
    executor = job.executor.WhichOneof("kind")
    if executor == "local":
        return "local" if job.artifact.WhichOneof("kind") == "local_binary" else "local_container"
    return str(executor)


@dataclasses.dataclass
class _Unit:
    """A work unit the scheduler is responsible for: queued or running."""

    key: UnitKey
    jobs: dict[str, pb.Job]
    # Jobs of the unit not started yet (a recovered unit may have some started already).
    to_start: list[str]
    handles: dict[str, str] = dataclasses.field(default_factory=dict)
    # Jobs started and not known to have ended: each holds one of the running-job slots.
    holding: set[str] = dataclasses.field(default_factory=set)
    final: set[str] = dataclasses.field(default_factory=set)
    cancel_requested: bool = False


@dataclasses.dataclass
class _Flush:
    """A marker in the observation queue: set once everything before it is recorded."""

    done: concurrent.futures.Future[None]


class Scheduler:
    def __init__(
        self,
        store: Store,
        state_dir: StateDir,
        *,
        max_running_jobs: int,
        grace_period: datetime.timedelta,
    ) -> None:
        self._store = store
        self._state_dir = state_dir
        self._max_running = max(1, max_running_jobs)
        self._grace_period = grace_period
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Condition()
        self._queue: collections.deque[UnitKey] = collections.deque()
        self._units: dict[UnitKey, _Unit] = {}
        self._running = 0
        self._observations: queue.SimpleQueue[JobObservation | _Flush | None] = queue.SimpleQueue()
        self._pending_handles: dict[JobKey, str] = {}
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._dispatch_loop, name="dispatcher", daemon=True),
            threading.Thread(target=self._record_loop, name="recorder", daemon=True),
        ]

    # -- life cycle ------------------------------------------------------------------------

    def set_backends(self, backends: Mapping[str, Backend]) -> None:
        self._backends = dict(backends)

    @property
    def backends(self) -> Mapping[str, Backend]:
        return self._backends

    def report(self, observation: JobObservation) -> None:
        """The callback every backend reports through (any thread).

        A job that ended gives its slot back at once, before its status is recorded: the next
        queued work unit need not wait for the recorder.
        """
        if observation.state in FINAL_STATES:
            key = observation.key
            with self._lock:
                unit = self._units.get((key.experiment_id, key.work_unit_id))
                if unit is not None and key.job_name in unit.holding:
                    unit.holding.discard(key.job_name)
                    self._running -= 1
                    self._lock.notify_all()
        self._observations.put(observation)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stops dispatching and recording; running jobs keep running under their supervisors."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._observations.put(None)
        for thread in self._threads:
            thread.join(timeout=10)

    def flush(self, timeout: float = 30) -> None:
        """Waits until every observation reported so far is recorded."""
        marker = _Flush(concurrent.futures.Future())
        self._observations.put(marker)
        marker.done.result(timeout=timeout)

    # -- submission --------------------------------------------------------------------------

    def check_backends(self, jobs: Iterable[pb.Job]) -> None:
        """Raises FailedPreconditionError when a job's backend cannot run jobs here."""
        for i, job in enumerate(jobs):
            name = backend_name(job)
            backend = self._backends.get(name)
            if backend is None:
                raise FailedPreconditionError(
                    f"jobs[{i}]: the {name!r} backend is not available in this version of the "
                    "launcher; use the Local executor"
                )
            available, reason = backend.availability()
            if not available:
                raise FailedPreconditionError(f"jobs[{i}]: the {name!r} backend: {reason}")

    def enqueue(self, work_unit: pb.WorkUnit) -> None:
        """Queues a newly recorded work unit (all jobs PENDING)."""
        key = (work_unit.experiment_id, work_unit.work_unit_id)
        jobs = {job.name: job for job in work_unit.jobs}
        with self._lock:
            if key in self._units:
                return  # an idempotent retry of AddWorkUnit
            self._units[key] = _Unit(key, jobs, to_start=list(jobs))
            self._queue.append(key)
            self._lock.notify_all()

    def recover(self) -> None:
        """Re-attaches to every job that was not final when the daemon last stopped."""
        by_unit: dict[UnitKey, list[tuple[JobKey, pb.Job]]] = collections.defaultdict(list)
        for key, job in self._store.non_final_jobs():
            by_unit[(key.experiment_id, key.work_unit_id)].append((key, job))
        for unit_key, jobs in by_unit.items():
            self._recover_unit(unit_key, jobs)
        self.flush()

    def _recover_unit(self, unit_key: UnitKey, jobs: Sequence[tuple[JobKey, pb.Job]]) -> None:
        unit = self._store.get_work_unit(*unit_key)
        all_jobs = {job.name: job for job in unit.jobs}
        record = _Unit(unit_key, all_jobs, to_start=[])
        record.final = {j.name for j in unit.jobs if j.status.state in FINAL_STATES}
        for key, job in jobs:
            if job.status.state == pb.JOB_STATE_PENDING and not job.backend_handle:
                record.to_start.append(job.name)
                continue
            backend = self._backends.get(backend_name(job))
            job_dir = self._state_dir.job_dir(*unit_key, job.name)
            if backend is None:
                self.report(
                    JobObservation(key, pb.JOB_STATE_LOST, reason="its backend is not available")
                )
                continue
            observation = backend.reattach(key, job.backend_handle or str(job_dir), job_dir)
            record.handles[job.name] = job.backend_handle or str(job_dir)
            self.report(observation)
            if observation.state in FINAL_STATES:
                continue
            with self._lock:
                record.holding.add(job.name)
                self._running += 1
            if job.status.state == pb.JOB_STATE_CANCELLING:
                record.cancel_requested = True
                backend.cancel(key, record.handles[job.name], self._grace_period)
        with self._lock:
            self._units[unit_key] = record
            if record.to_start:
                self._queue.append(unit_key)
                self._lock.notify_all()

    # -- cancellation ------------------------------------------------------------------------

    def cancel(
        self, experiment_id: int, work_unit_id: int, grace: datetime.timedelta | None, reason: str
    ) -> bool:
        """Cancels a work unit's jobs; False when it has none left to cancel."""
        unit_key = (experiment_id, work_unit_id)
        grace = grace or self._grace_period
        with self._lock:
            unit = self._units.get(unit_key)
            if unit is None or unit.cancel_requested:
                return False
            unit.cancel_requested = True
            never_started = list(unit.to_start)
            unit.to_start.clear()
            if unit_key in self._queue:
                self._queue.remove(unit_key)
            started = [
                (name, unit.handles.get(name, ""))
                for name in unit.jobs
                if name not in never_started and name not in unit.final
            ]
        message = reason or "cancelled by request"
        for name in never_started:
            self.report(
                JobObservation(
                    JobKey(*unit_key, name),
                    pb.JOB_STATE_CANCELLED,
                    native_state="not started",
                    reason=f"{message} before it started",
                )
            )
        for name, _ in started:
            self.report(
                JobObservation(JobKey(*unit_key, name), pb.JOB_STATE_CANCELLING, reason=message)
            )
        self.flush()
        for name, handle in started:
            job = unit.jobs[name]
            backend = self._backends.get(backend_name(job))
            if backend is not None:
                backend.cancel(JobKey(*unit_key, name), handle, grace)
        return True

    # -- the dispatcher -------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._stopping or self._admissible() is not None)
                if self._stopping:
                    return
                unit = self._admissible()
                assert unit is not None
                self._queue.popleft()
                names, unit.to_start = unit.to_start, []
                unit.holding.update(names)
                self._running += len(names)
            self._start_jobs(unit, names)

    def _admissible(self) -> _Unit | None:
        """The head of the queue if its jobs fit in the free slots (or nothing else runs)."""
        if not self._queue:
            return None
        unit = self._units[self._queue[0]]
        needed = len(unit.to_start)
        if self._running == 0 or self._running + needed <= self._max_running:
            return unit
        return None

    def _start_jobs(self, unit: _Unit, names: Sequence[str]) -> None:
        peers = list(unit.jobs)
        for name in names:
            job = unit.jobs[name]
            key = JobKey(*unit.key, name)
            try:
                backend = self._backends[backend_name(job)]
                if backend.reports_starting:
                    # Before the backend can report RUNNING: one queue keeps them in order.
                    self.report(JobObservation(key, pb.JOB_STATE_STARTING, native_state="starting"))
                handle = backend.start(self._launch_spec(key, job, peers))
            except (BackendUnavailableError, ValueError, KeyError, OSError) as error:
                _log.warning("job %s failed to start: %s", key, error)
                self.report(
                    JobObservation(
                        key,
                        pb.JOB_STATE_FAILED,
                        native_state="start failed",
                        reason=f"could not start: {error}",
                    )
                )
                continue
            with self._lock:
                unit.handles[name] = handle
                self._pending_handles[key] = handle

    def _launch_spec(self, key: JobKey, job: pb.Job, peers: Sequence[str]) -> LaunchSpec:
        env = dict(job.env)
        env.update(
            XM_EXPERIMENT_ID=str(key.experiment_id),
            XM_WORK_UNIT_ID=str(key.work_unit_id),
            XM_JOB_NAME=key.job_name,
            XM_JOB_PEERS=",".join(peers),
        )
        job_dir = self._state_dir.job_dir(key.experiment_id, key.work_unit_id, key.job_name)
        return LaunchSpec(
            key=key,
            artifact=job.artifact,
            args=list(job.args),
            env=env,
            executor=job.executor,
            requirements=job.requirements,
            job_dir=job_dir,
            peers=peers,
        )

    # -- the recorder -----------------------------------------------------------------------------

    def _record_loop(self) -> None:
        stop = False
        while not stop:
            batch: list[JobObservation] = []
            flushes: list[_Flush] = []
            stop = self._drain(self._observations.get(), batch, flushes)
            if not stop and len(batch) < _LINGER_BELOW:
                # A burst (a sweep starting) is still arriving: one commit for more of it.
                time.sleep(_LINGER_SECONDS)
                with contextlib.suppress(queue.Empty):
                    stop = self._drain(self._observations.get_nowait(), batch, flushes)
            if batch:
                self._record_with_retries(batch)
            for flush in flushes:
                flush.done.set_result(None)

    def _drain(
        self,
        item: JobObservation | _Flush | None,
        batch: list[JobObservation],
        flushes: list[_Flush],
    ) -> bool:
        """Moves `item` and whatever else is queued into the batch; True at the stop marker."""
        stop = False
        while True:
            if item is None:
                stop = True
            elif isinstance(item, _Flush):
                flushes.append(item)
            else:
                batch.append(item)
            if len(batch) >= _MAX_BATCH:
                return stop
            try:
                item = self._observations.get_nowait()
            except queue.Empty:
                return stop

    def _record_with_retries(self, batch: Sequence[JobObservation]) -> None:
        """Records a batch, retrying a failing store (e.g. a restarting PostgreSQL server).

        A batch the database refuses for its content is recorded one observation at a time, so
        one bad observation neither holds up nor drops the others.
        """
        delay = 0.1
        deadline = time.monotonic() + _RECORD_RETRY_SECONDS
        while True:
            try:
                self._record(batch)
                return
            except sqlalchemy.exc.DBAPIError as error:
                if not _is_transient(error):
                    self._record_one_by_one(batch, error)
                    return
                if time.monotonic() > deadline:
                    _log.exception("recording %d observations failed; giving up", len(batch))
                    return
                _log.warning(
                    "recording %d observations failed; retrying", len(batch), exc_info=True
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                if time.monotonic() > deadline:
                    # The next daemon start reconciles these jobs from their records.
                    _log.exception("recording %d observations failed; giving up", len(batch))
                    return
                _log.warning(
                    "recording %d observations failed; retrying", len(batch), exc_info=True
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _record_one_by_one(self, batch: Sequence[JobObservation], error: Exception) -> None:
        _log.warning("the store refused a batch of %d observations (%s)", len(batch), error)
        for observation in batch:
            try:
                self._record([observation])
            except Exception:
                # The next daemon start reconciles this job from its backend.
                _log.exception("the store refused an observation; dropped: %s", observation)

    def _record(self, batch: Sequence[JobObservation]) -> None:
        with self._lock:
            handles = self._pending_handles
            self._pending_handles = {}
        try:
            updates = self._store.apply_observations(batch, handles)
        except Exception:
            with self._lock:  # not lost: recorded with the next batch that succeeds
                self._pending_handles = {**handles, **self._pending_handles}
            raise
        failed: list[tuple[UnitKey, str, str]] = []
        for update in updates:
            event = update.event
            if event.subject != pb.EVENT_SUBJECT_JOB or event.new_state not in FINAL_STATES:
                continue
            unit_key = (event.experiment_id, event.work_unit_id)
            with self._lock:
                unit = self._units.get(unit_key)
                if unit is not None:
                    unit.final.add(event.job_name)
                    if len(unit.final) == len(unit.jobs):
                        del self._units[unit_key]
            if event.new_state in FAILED_STATES:
                failed.append((unit_key, event.job_name, event.message))
        for unit_key, job_name, message in failed:
            self._stop_peers(unit_key, job_name, message)

    def _stop_peers(self, unit_key: UnitKey, job_name: str, message: str) -> None:
        with self._lock:
            unit = self._units.get(unit_key)
            if unit is None or unit.cancel_requested:
                return
        reason = f"stopped because job {job_name!r} failed" + (f": {message}" if message else "")
        threading.Thread(
            target=self.cancel, args=(*unit_key, None, reason), name="stop-peers", daemon=True
        ).start()
