"""Turns added work units into running jobs, and backend observations into recorded statuses.

`submit` is the one path by which work units enter: validate, let each job's backend check it,
record, queue. Two threads then do the work:

- the *dispatcher* starts queued work units when enough job slots are free (a work unit's jobs
  start together, so a JobGroup is admitted whole), bounded by `max_running_jobs` for the
  backends that run jobs on this machine; units of other backends never wait for those slots;
- the *recorder* is the only writer of job statuses: it drains the observation queue that every
  backend reports into and applies each batch to the store in one transaction (group commit),
  so thousands of status changes per second cost a few transactions, and the order of
  observations is the order of the writes.

When a job of a work unit fails, the recorder cancels the unit's other jobs. On start,
`recover` asks each job's backend about every job that was not final when the daemon stopped.
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
from collections.abc import Sequence

import sqlalchemy.exc

from launcher_server import validation
from launcher_server.aggregation import FAILED_STATES, FINAL_STATES
from launcher_server.backends.base import Backend, BackendUnavailableError
from launcher_server.backends.registry import BackendRegistry
from launcher_server.errors import InvalidArgumentError, LauncherError
from launcher_server.jobs import JobKey, JobObservation, LaunchSpec, UnitKey
from launcher_server.observations import Flush, HandleAssigned, Item, ObservationQueue, Stop
from launcher_server.store.store import Store
from xmanager.launcher import contract, launch_context
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)

_MAX_BATCH = 5000
# A batch smaller than this waits a moment for more observations before it is committed.
_LINGER_BELOW = 200
_LINGER_SECONDS = 0.01
_RECORD_RETRY_SECONDS = 60.0
_CONTEXTS_KEPT = 64  # launch contexts kept in memory (the dispatcher's only: one thread)
# What a backend's start raises when jobs cannot start (anything else is a bug in it).
_START_ERRORS = (BackendUnavailableError, ValueError, KeyError, OSError)

# What `submit` gives back for each request: the recorded unit, or why it was refused.
SubmitResult = tuple[pb.WorkUnit, bool] | LauncherError


def _is_transient(error: sqlalchemy.exc.DBAPIError) -> bool:
    """A lost connection or a busy database, not a refusal of what was written."""
    return error.connection_invalidated or isinstance(
        error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
    )


@dataclasses.dataclass
class _Unit:
    """A work unit the scheduler is responsible for: queued or running."""

    key: UnitKey
    jobs: dict[str, pb.Job]
    # Jobs of the unit not started yet (a recovered unit may have some started already).
    to_start: list[str]
    handles: dict[str, str] = dataclasses.field(default_factory=dict)
    final: set[str] = dataclasses.field(default_factory=set)
    cancel_requested: bool = False
    # Jobs whose backend runs them on this machine (they take local slots), decided once.
    local: frozenset[str] = frozenset()


class Scheduler:
    def __init__(
        self,
        store: Store,
        backends: BackendRegistry,
        observations: ObservationQueue,
        *,
        max_running_jobs: int,
        grace_period: datetime.timedelta,
    ) -> None:
        self._store = store
        self.backends = backends
        self._observations = observations
        self._max_running = max(1, max_running_jobs)
        self._grace_period = grace_period
        # One lock for the scheduler's state, which final observations also notify.
        self._lock = observations.condition
        # Units waiting to start, in submission order: those needing local job slots wait for
        # them in turn; those needing none (cloud jobs) never wait behind them.
        self._queue: collections.deque[UnitKey] = collections.deque()
        self._unlimited: collections.deque[UnitKey] = collections.deque()
        self._units: dict[UnitKey, _Unit] = {}
        # Jobs started and not known to have ended that hold one of the local job slots. Kept
        # apart from the units: the recorder forgets a unit once its jobs are final, which may
        # happen before the dispatcher takes their final observations and frees their slots.
        self._holding: set[JobKey] = set()
        self._titles: dict[int, str] = {}
        self._known_contexts: set[str] = set()
        # Launch contexts of recent starts, by digest: a sweep's jobs share one, and a whole
        # environment each, they are not kept for the daemon's whole life.
        self._contexts: collections.OrderedDict[str, pb.LaunchContext] = collections.OrderedDict()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._dispatch_loop, name="dispatcher", daemon=True),
            threading.Thread(target=self._record_loop, name="recorder", daemon=True),
        ]

    # -- life cycle ------------------------------------------------------------------------

    def _report(self, observation: JobObservation) -> None:
        self._observations.put(observation)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stops dispatching and recording; running jobs keep running under their backends."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._observations.put(Stop())
        for thread in self._threads:
            thread.join(timeout=10)

    def flush(self, timeout: float = 30) -> None:
        """Waits until every observation reported so far is recorded."""
        marker = Flush(concurrent.futures.Future())
        self._observations.put(marker)
        marker.done.result(timeout=timeout)

    # -- submission --------------------------------------------------------------------------

    def submit(self, requests: Sequence[pb.AddWorkUnitRequest]) -> list[SubmitResult]:
        """Checks, records and queues work units; one result per request, in order.

        A request is refused whole, before anything of it is written: by generic validation,
        by its jobs' backends (INVALID_ARGUMENT for a job a backend cannot run,
        FAILED_PRECONDITION for a backend that cannot run jobs here), or by the store.
        """
        results: list[SubmitResult | None] = [None] * len(requests)
        valid: list[int] = []
        for i, request in enumerate(requests):
            try:
                validation.validate_add_work_unit(request)
                self.backends.check(request.jobs)
                valid.append(i)
            except LauncherError as error:
                results[i] = error
        valid = self._resolve_launch_contexts(requests, valid, results)
        if valid:
            outcomes, _ = self._store.add_work_units([requests[i] for i in valid])
            for i, outcome in zip(valid, outcomes, strict=True):
                results[i] = outcome
                if not isinstance(outcome, LauncherError) and outcome[1]:
                    self._enqueue(outcome[0])
        return [result for result in results if result is not None]

    def _resolve_launch_contexts(
        self,
        requests: Sequence[pb.AddWorkUnitRequest],
        valid: list[int],
        results: list[SubmitResult | None],
    ) -> list[int]:
        """Records the launch contexts sent whole and checks the ones named by digest; gives
        each job its context's digest. Returns the requests still valid."""
        sent: dict[str, pb.LaunchContext] = {}
        for i in valid:
            request = requests[i]
            if request.HasField("launch_context"):
                digest = launch_context.digest(request.launch_context)
                if request.launch_context_digest not in ("", digest):
                    results[i] = InvalidArgumentError(
                        "launch_context_digest", "is not the digest of launch_context"
                    )
                    continue
                sent[digest] = request.launch_context
                request.launch_context_digest = digest
        named = {requests[i].launch_context_digest for i in valid} - {""} - set(sent)
        unknown = named - self._known_contexts
        if unknown:
            self._known_contexts |= self._store.known_launch_contexts(unknown)
        if sent:
            self._store.save_launch_contexts(sent)
            self._known_contexts |= set(sent)
        still_valid = []
        for i in valid:
            request = requests[i]
            if results[i] is not None:
                continue
            if request.launch_context_digest not in self._known_contexts | {""}:
                results[i] = InvalidArgumentError(
                    "launch_context_digest",
                    "names a launch context this daemon does not know; send launch_context "
                    "with it (a client sends it whole on each new stream)",
                )
                continue
            for job in request.jobs:
                job.launch_context_digest = request.launch_context_digest
            still_valid.append(i)
        return still_valid

    def _launch_context(self, digest: str) -> pb.LaunchContext | None:
        if not digest:
            return None
        context = self._contexts.get(digest)
        if context is not None:
            self._contexts.move_to_end(digest)
            return context
        context = self._store.launch_context(digest)
        if context is not None:
            self._contexts[digest] = context
            if len(self._contexts) > _CONTEXTS_KEPT:
                self._contexts.popitem(last=False)
        return context

    def _enqueue(self, work_unit: pb.WorkUnit) -> None:
        key = (work_unit.experiment_id, work_unit.work_unit_id)
        jobs = {job.name: job for job in work_unit.jobs}
        with self._lock:
            if key in self._units:
                return  # an idempotent retry
            unit = self._units[key] = self._new_unit(key, jobs, to_start=list(jobs))
            self._queue_for(unit).append(key)
            self._lock.notify_all()

    # -- recovery ----------------------------------------------------------------------------

    def recover(self) -> None:
        """Asks the backends about every job that was not final when the daemon last stopped."""
        by_unit: dict[UnitKey, list[tuple[JobKey, pb.Job]]] = collections.defaultdict(list)
        for key, job in self._store.non_final_jobs():
            by_unit[key.unit].append((key, job))
        for unit_key, jobs in by_unit.items():
            self._recover_unit(unit_key, jobs)
        self.flush()

    def _recover_unit(self, unit_key: UnitKey, jobs: Sequence[tuple[JobKey, pb.Job]]) -> None:
        unit = self._store.get_work_unit(*unit_key)
        record = self._new_unit(unit_key, {job.name: job for job in unit.jobs}, to_start=[])
        record.final = {j.name for j in unit.jobs if j.status.state in FINAL_STATES}
        with self._lock:
            # Registered first: a job that ends while the others are asked about frees its slot.
            self._units[unit_key] = record
        cancelling = any(job.status.state == pb.JOB_STATE_CANCELLING for _, job in jobs)
        for key, job in jobs:
            backend = self.backends.find(job)
            if backend is None:
                self._report(
                    JobObservation(
                        key, pb.JOB_STATE_LOST, reason="no backend of this daemon runs it"
                    )
                )
                continue
            try:
                observation = backend.reattach(key, job.backend_handle)
            except Exception:
                # A broken backend must not keep the daemon from starting: the job keeps its
                # recorded state (it may still run), and the next start asks again.
                _log.exception("the %s backend failed re-attaching %s", backend.name, key)
                record.handles[job.name] = job.backend_handle
                continue
            if observation.state == pb.JOB_STATE_PENDING:
                if cancelling:
                    self._report(
                        JobObservation(
                            key,
                            pb.JOB_STATE_CANCELLED,
                            native_state="not started",
                            reason="cancelled by request before it started",
                        )
                    )
                else:
                    record.to_start.append(job.name)
                continue
            record.handles[job.name] = job.backend_handle
            if observation.state not in FINAL_STATES and backend.uses_local_slots:
                with self._lock:
                    self._holding.add(key)
            self._report(observation)
            if observation.state not in FINAL_STATES and cancelling:
                backend.cancel(key, job.backend_handle, self._grace_period)
        with self._lock:
            record.cancel_requested = cancelling
            if record.to_start:
                self._queue_for(record).append(unit_key)
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
            if unit is None:
                return False
            if unit.cancel_requested:
                # Asked again: deliver it again (the backends make it idempotent), in case the
                # first delivery raced with the job's start.
                again = [
                    (name, unit.handles.get(name, ""))
                    for name in unit.jobs
                    if name not in unit.final and name not in unit.to_start
                ]
        if unit.cancel_requested:
            self._deliver_cancels(unit, again, grace)
            return False
        with self._lock:
            unit.cancel_requested = True
            never_started = list(unit.to_start)
            unit.to_start.clear()
            for waiting in (self._queue, self._unlimited):
                if unit_key in waiting:
                    waiting.remove(unit_key)
            started = [
                (name, unit.handles.get(name, ""))
                for name in unit.jobs
                if name not in never_started and name not in unit.final
            ]
        message = reason or "cancelled by request"
        for name in never_started:
            self._report(
                JobObservation(
                    JobKey(*unit_key, name),
                    pb.JOB_STATE_CANCELLED,
                    native_state="not started",
                    reason=f"{message} before it started",
                )
            )
        for name, _ in started:
            self._report(
                JobObservation(JobKey(*unit_key, name), pb.JOB_STATE_CANCELLING, reason=message)
            )
        self.flush()
        self._deliver_cancels(unit, started, grace)
        return True

    def _deliver_cancels(
        self, unit: _Unit, jobs: Sequence[tuple[str, str]], grace: datetime.timedelta
    ) -> None:
        for name, handle in jobs:
            backend = self.backends.find(unit.jobs[name])
            if backend is None:
                continue
            try:
                backend.cancel(JobKey(*unit.key, name), handle, grace)
            except Exception:
                # The other jobs are still stopped; this one stays CANCELLING, and cancelling
                # again delivers it again.
                _log.exception("the %s backend failed cancelling %s", backend.name, name)

    # -- the dispatcher -------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._stopping or self._admissible() is not None)
                if self._stopping:
                    return
                ready = self._admissible()
                assert ready is not None
                unit = self._units[ready.popleft()]
                names, unit.to_start = unit.to_start, []
                self._holding.update(
                    JobKey(*unit.key, name) for name in names if name in unit.local
                )
            self._start_jobs(unit, names)

    def _new_unit(self, key: UnitKey, jobs: dict[str, pb.Job], to_start: list[str]) -> _Unit:
        local = frozenset(name for name, job in jobs.items() if self._uses_slot(job))
        return _Unit(key, jobs, to_start=to_start, local=local)

    def _uses_slot(self, job: pb.Job) -> bool:
        backend = self.backends.find(job)
        return backend is not None and backend.uses_local_slots

    def _release_finished(self) -> None:
        """Gives back the slots of jobs reported final (called with the lock held)."""
        self._holding.difference_update(self._observations.take_finished())

    def _queue_for(self, unit: _Unit) -> collections.deque[UnitKey]:
        needs_slots = any(name in unit.local for name in unit.to_start)
        return self._queue if needs_slots else self._unlimited

    def _admissible(self) -> collections.deque[UnitKey] | None:
        """The queue whose head can start now: a unit needing no local slot at once, else the
        head of the others if its jobs fit in the free slots (or nothing else runs)."""
        self._release_finished()
        if self._unlimited:
            return self._unlimited
        if not self._queue:
            return None
        unit = self._units[self._queue[0]]
        needed = sum(1 for name in unit.to_start if name in unit.local)
        running = len(self._holding)
        if needed == 0 or running == 0 or running + needed <= self._max_running:
            return self._queue
        return None

    def _start_jobs(self, unit: _Unit, names: Sequence[str]) -> None:
        by_backend: dict[int, tuple[Backend, list[LaunchSpec]]] = {}
        peers = tuple(unit.jobs)
        title = self._title(unit.key[0])
        for name in names:
            job = unit.jobs[name]
            key = JobKey(*unit.key, name)
            backend = self.backends.find(job)
            if backend is None:  # refused at add time; here only if the daemon changed
                self._report(JobObservation(key, pb.JOB_STATE_FAILED, reason="no backend runs it"))
                continue
            entry = by_backend.setdefault(id(backend), (backend, []))
            context = self._launch_context(job.launch_context_digest)
            entry[1].append(_launch_spec(key, job, peers, title, context))
        for backend, specs in by_backend.values():
            if backend.reports_starting:
                # Before the backend can report RUNNING: one queue keeps them in order.
                for spec in specs:
                    self._report(
                        JobObservation(spec.key, pb.JOB_STATE_STARTING, native_state="starting")
                    )
            try:
                handles = backend.start(specs)
                if len(handles) != len(specs):
                    raise RuntimeError(f"{len(handles)} handles for {len(specs)} jobs")
            except Exception as error:
                # Whatever a backend raises fails its jobs, never the dispatcher.
                if isinstance(error, _START_ERRORS):
                    _log.warning("jobs of %s failed to start: %s", unit.key, error)
                else:
                    _log.exception("the %s backend failed starting %s", backend.name, unit.key)
                for spec in specs:
                    self._report(
                        JobObservation(
                            spec.key,
                            pb.JOB_STATE_FAILED,
                            native_state="start failed",
                            reason=f"could not start: {error}",
                        )
                    )
                continue
            with self._lock:
                for spec, handle in zip(specs, handles, strict=True):
                    unit.handles[spec.key.job_name] = handle
            for spec, handle in zip(specs, handles, strict=True):
                self._observations.put(HandleAssigned(spec.key, handle))

    def _title(self, experiment_id: int) -> str:
        title = self._titles.get(experiment_id)
        if title is None:
            try:
                title = self._store.get_experiment(experiment_id).title
            except LauncherError:
                title = ""
            self._titles[experiment_id] = title
        return title

    # -- the recorder -----------------------------------------------------------------------------

    def _record_loop(self) -> None:
        stop = False
        while not stop:
            batch: list[JobObservation] = []
            handles: dict[JobKey, str] = {}
            flushes: list[Flush] = []
            stop = self._drain(self._observations.get(), batch, handles, flushes)
            if not stop and len(batch) < _LINGER_BELOW:
                # A burst (a sweep starting) is still arriving: one commit for more of it.
                time.sleep(_LINGER_SECONDS)
                with contextlib.suppress(queue.Empty):
                    stop = self._drain(self._observations.get_nowait(), batch, handles, flushes)
            if batch or handles:
                self._record_with_retries(batch, handles)
            for flush in flushes:
                flush.done.set_result(None)

    def _drain(
        self,
        item: Item,
        batch: list[JobObservation],
        handles: dict[JobKey, str],
        flushes: list[Flush],
    ) -> bool:
        """Moves `item` and whatever else is queued into the batch; True at the stop marker."""
        stop = False
        while True:
            if isinstance(item, Stop):
                stop = True
            elif isinstance(item, Flush):
                flushes.append(item)
            elif isinstance(item, HandleAssigned):
                handles[item.key] = item.handle
            else:
                batch.append(item)
            if len(batch) >= _MAX_BATCH:
                return stop
            try:
                item = self._observations.get_nowait()
            except queue.Empty:
                return stop

    def _record_with_retries(
        self, batch: Sequence[JobObservation], handles: dict[JobKey, str]
    ) -> None:
        """Records a batch, retrying a failing store (e.g. a restarting PostgreSQL server).

        A batch the database refuses for its content is recorded one observation at a time, so
        one bad observation neither holds up nor drops the others.
        """
        delay = 0.1
        deadline = time.monotonic() + _RECORD_RETRY_SECONDS
        while True:
            try:
                self._record(batch, handles)
                return
            except sqlalchemy.exc.DBAPIError as error:
                if not _is_transient(error):
                    self._record_one_by_one(batch, handles, error)
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
                    # The next daemon start reconciles these jobs with their backends.
                    _log.exception("recording %d observations failed; giving up", len(batch))
                    return
                _log.warning(
                    "recording %d observations failed; retrying", len(batch), exc_info=True
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _record_one_by_one(
        self, batch: Sequence[JobObservation], handles: dict[JobKey, str], error: Exception
    ) -> None:
        _log.warning("the store refused a batch of %d observations (%s)", len(batch), error)
        for observations, their_handles in [([], handles), *(([o], {}) for o in batch)]:
            try:
                self._record(observations, their_handles)
            except Exception:
                # The next daemon start reconciles this job with its backend.
                _log.exception("the store refused %s; dropped", observations or their_handles)

    def _record(self, batch: Sequence[JobObservation], handles: dict[JobKey, str]) -> None:
        updates = self._store.apply_observations(batch, handles)
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


def _launch_spec(
    key: JobKey,
    job: pb.Job,
    peers: tuple[str, ...],
    title: str,
    context: pb.LaunchContext | None,
) -> LaunchSpec:
    env = dict(job.env)
    env.update(
        contract.launcher_env(key.experiment_id, key.work_unit_id, key.job_name, list(peers))
    )
    return LaunchSpec(
        key=key,
        job=job,
        args=tuple(job.args),
        env=env,
        peers=peers,
        experiment_title=title,
        launch_context=context,
    )
