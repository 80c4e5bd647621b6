"""The scheduler alone: a real store (SQLite in tmp), backends faked here to control every step.

Covers queueing and the local job slots, JobGroups admitted whole and failing together,
cancellation before, during and after a start, recovery by asking the backends, and add-time
refusals that write nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import grpc
import pytest

from launcher_server.aggregation import FINAL_STATES
from launcher_server.backends.base import AVAILABLE, Availability, Backend, BackendContext
from launcher_server.backends.registry import BackendRegistry
from launcher_server.config import DaemonConfig
from launcher_server.errors import InvalidArgumentError, LauncherError
from launcher_server.job_dirs import JobDirs
from launcher_server.jobs import JobKey, JobObservation, LaunchSpec
from launcher_server.observations import ObservationQueue
from launcher_server.scheduler import Scheduler
from launcher_server.store.store import Store
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.state_dir import StateDir

GRACE = datetime.timedelta(seconds=7)
TIMEOUT = 20.0


class FakeBackend(Backend):
    """Runs nothing: records what the scheduler asks, and reports what the test says."""

    name = "fake_local"
    executor = "local"
    reports_starting = False
    uses_local_slots = True

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.lock = threading.Lock()
        self.available = AVAILABLE
        self.starts: list[list[JobKey]] = []
        self.cancels: list[tuple[JobKey, str, datetime.timedelta]] = []
        self.reattached: list[tuple[JobKey, str]] = []
        # What reattach answers (default: PENDING, never started).
        self.after_restart: dict[JobKey, int] = {}
        # While set, start() blocks until it is cleared (a slow start).
        self.hold_starts: threading.Event | None = None
        # Raised by the next start() (a backend's client library failing its own way).
        self.start_error: Exception | None = None
        self.running: set[JobKey] = set()
        self.cancel_during_start: set[JobKey] = set()
        # Raised by the next cancel.
        self.cancel_error: Exception | None = None
        # Raised by reattach (a backend whose service is down, failing its own way).
        self.reattach_error: Exception | None = None
        # Cancels are recorded only: the test reports what they do, when it wants.
        self.late_cancels = False
        # Called for each job once start() reported it running, before start() returns.
        self.during_start: Callable[[JobKey], None] | None = None

    def accepts(self, job: pb.Job) -> bool:
        return bool(job.executor.WhichOneof("kind") == self.executor)

    def check(self, job: pb.Job, field: str) -> None:
        if "--unrunnable" in job.args:
            raise InvalidArgumentError(f"{field}.args", "--unrunnable cannot run here")

    def availability(self) -> Availability:
        return self.available

    def start(self, specs: Sequence[LaunchSpec]) -> list[str]:
        keys = [spec.key for spec in specs]
        with self.lock:
            self.starts.append(keys)
            held = self.hold_starts
            error, self.start_error = self.start_error, None
        if error is not None:
            raise error
        if held is not None:
            assert held.wait(TIMEOUT)
        for key in keys:
            with self.lock:
                cancelled = key in self.cancel_during_start
                if not cancelled:
                    self.running.add(key)
            if cancelled:
                self.report(JobObservation(key, pb.JOB_STATE_CANCELLED, reason="stopped at start"))
            else:
                self.report(JobObservation(key, pb.JOB_STATE_RUNNING, native_state="running"))
            if self.during_start is not None:
                self.during_start(key)
        return [handle(key) for key in keys]

    def finish(self, key: JobKey, exit_code: int = 0) -> None:
        """The job ends by itself."""
        with self.lock:
            self.running.discard(key)
        state = pb.JOB_STATE_SUCCEEDED if exit_code == 0 else pb.JOB_STATE_FAILED
        reason = f"exited with code {exit_code}" if exit_code else ""
        self.report(JobObservation(key, state, reason=reason, exit_code=exit_code))

    def cancel(self, key: JobKey, handle: str, grace_period: datetime.timedelta) -> None:
        with self.lock:
            self.cancels.append((key, handle, grace_period))
            error, self.cancel_error = self.cancel_error, None
        if error is not None:
            raise error
        with self.lock:
            if self.late_cancels:
                return
            was_running = key in self.running
            self.running.discard(key)
            if not handle:
                self.cancel_during_start.add(key)
        if was_running:
            self.report(JobObservation(key, pb.JOB_STATE_CANCELLED, reason="stopped"))

    def reattach(self, key: JobKey, handle: str) -> JobObservation:
        with self.lock:
            self.reattached.append((key, handle))
            if self.reattach_error is not None:
                raise self.reattach_error
            state = self.after_restart.get(key, pb.JOB_STATE_PENDING)
            if state == pb.JOB_STATE_RUNNING:
                self.running.add(key)
        return JobObservation(key, state, reason="re-attached")

    def runs(self, key: JobKey) -> Callable[[], bool]:
        return lambda: key in self.running

    def started(self) -> list[JobKey]:
        with self.lock:
            return [key for keys in self.starts for key in keys]


class FakeRemoteBackend(FakeBackend):
    """Like a cloud backend: passes through STARTING, and its jobs take no local slot."""

    name = "fake_remote"
    executor = "kubernetes"
    reports_starting: ClassVar[bool] = True
    uses_local_slots: ClassVar[bool] = False


def handle(key: JobKey) -> str:
    return f"fake:{key}"


@dataclasses.dataclass
class World:
    """A scheduler on a real store with fake backends; `restart` simulates a daemon restart."""

    tmp: Path
    max_running: int
    store: Store = dataclasses.field(init=False)
    local: FakeBackend = dataclasses.field(init=False)
    remote: FakeRemoteBackend = dataclasses.field(init=False)
    scheduler: Scheduler = dataclasses.field(init=False)
    experiment_id: int = 0

    def __post_init__(self) -> None:
        self.store = Store.open(f"sqlite:///{self.tmp / 'store.sqlite'}")
        self.experiment_id = self.store.create_experiment(pb.Experiment(title="sched")).id
        self._build()

    def _build(self) -> None:
        observations = ObservationQueue()
        state = StateDir.resolve(self.tmp / "state")
        context = BackendContext(
            report=observations.put, job_dirs=JobDirs(state.jobs), config=DaemonConfig(state)
        )
        self.local = FakeBackend(context)
        self.remote = FakeRemoteBackend(context)
        self.scheduler = Scheduler(
            self.store,
            BackendRegistry([self.local, self.remote]),
            observations,
            max_running_jobs=self.max_running,
            grace_period=GRACE,
        )
        self.scheduler.start()

    def restart(self, prepare: Callable[[World], None]) -> None:
        """Stops the scheduler and the store, then starts new ones with new fake backends;
        `prepare` sets what the new backends answer before recovery asks them."""
        self.scheduler.stop()
        self.store.close()
        self.store = Store.open(f"sqlite:///{self.tmp / 'store.sqlite'}")
        self._build()
        prepare(self)
        self.scheduler.recover()

    def close(self) -> None:
        self.scheduler.stop()
        self.store.close()

    def submit(self, *jobs: pb.Job) -> pb.WorkUnit | LauncherError:
        (result,) = self.scheduler.submit([self.request(*jobs)])
        return result if isinstance(result, LauncherError) else result[0]

    def request(self, *jobs: pb.Job) -> pb.AddWorkUnitRequest:
        return pb.AddWorkUnitRequest(
            experiment_id=self.experiment_id, request_id=uuid.uuid4().hex, jobs=list(jobs)
        )

    def add(self, *jobs: pb.Job) -> UnitKeys:
        unit = self.submit(*jobs)
        assert isinstance(unit, pb.WorkUnit), unit
        return UnitKeys(unit.experiment_id, unit.work_unit_id, [j.name for j in jobs])

    def job(self, key: JobKey) -> pb.Job:
        self.scheduler.flush()
        unit = self.store.get_work_unit(*key.unit)
        (job,) = [j for j in unit.jobs if j.name == key.job_name]
        return job

    def unit(self, keys: UnitKeys) -> pb.WorkUnit:
        self.scheduler.flush()
        return self.store.get_work_unit(keys.experiment_id, keys.work_unit_id)

    def wait_job(self, key: JobKey, state: int) -> pb.Job:
        deadline = time.monotonic() + TIMEOUT
        while (job := self.job(key)).status.state != state:
            assert time.monotonic() < deadline, f"{key}: {job.status} never {state}"
            time.sleep(0.01)
        return job

    def wait_unit(self, keys: UnitKeys, state: int) -> pb.WorkUnit:
        deadline = time.monotonic() + TIMEOUT
        while (unit := self.unit(keys)).status.state != state:
            assert time.monotonic() < deadline, f"{keys}: {unit.status} never {state}"
            time.sleep(0.01)
        return unit


@dataclasses.dataclass(frozen=True)
class UnitKeys:
    experiment_id: int
    work_unit_id: int
    names: list[str]

    def __getitem__(self, index: int) -> JobKey:
        return JobKey(self.experiment_id, self.work_unit_id, self.names[index])


def wait_until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.01)


def stays(condition: Callable[[], object], seconds: float = 0.3) -> bool:
    """Whether `condition` holds all along the next `seconds` (the scheduler did not move)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.01)
    return True


def local(name: str = "job", *args: str) -> pb.Job:
    return pb.Job(
        name=name,
        artifact=pb.Artifact(local_binary=pb.LocalBinary(path="/fake/bin")),
        args=list(args),
        executor=pb.Executor(local=pb.LocalExecutor()),
    )


def remote(name: str = "job") -> pb.Job:
    return pb.Job(
        name=name,
        artifact=pb.Artifact(oci_image=pb.OciImage(reference="example.invalid/x:1")),
        executor=pb.Executor(kubernetes=pb.KubernetesExecutor()),
    )


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[[int], World]]:
    worlds: list[World] = []

    def make(max_running: int) -> World:
        world = World(tmp_path, max_running)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.close()


# -- queueing and slots ----------------------------------------------------------------------------


def test_queued_in_order_within_max_running_jobs(make_world: Callable[[int], World]) -> None:
    world = make_world(2)
    units = [world.add(local()) for _ in range(4)]
    wait_until(lambda: len(world.local.started()) == 2, "two started")
    assert stays(lambda: len(world.local.started()) == 2)
    assert world.local.started() == [units[0][0], units[1][0]]
    assert world.job(units[2][0]).status.state == pb.JOB_STATE_PENDING
    world.wait_job(units[0][0], pb.JOB_STATE_RUNNING)

    world.local.finish(units[1][0])
    wait_until(lambda: len(world.local.started()) == 3, "a freed slot is taken")
    assert world.local.started()[2] == units[2][0]
    for unit in units[::2] + units[3:]:
        wait_until(world.local.runs(unit[0]), f"{unit[0]} runs")
        world.local.finish(unit[0])
    for unit in units:
        world.wait_unit(unit, pb.JOB_STATE_SUCCEEDED)


def test_a_job_recorded_final_before_its_start_returns_frees_its_slot(
    make_world: Callable[[int], World],
) -> None:
    # A short job can end, and its unit be recorded final and forgotten, while the backend's
    # start() is still returning; its slot must come back all the same.
    world = make_world(1)

    def end_at_once(key: JobKey) -> None:
        world.local.finish(key)
        world.wait_unit(UnitKeys(*key.unit, [key.job_name]), pb.JOB_STATE_SUCCEEDED)

    world.local.during_start = end_at_once
    units = [world.add(local()) for _ in range(3)]
    for unit in units:
        world.wait_unit(unit, pb.JOB_STATE_SUCCEEDED)
    assert world.local.started() == [unit[0] for unit in units]


def test_jobs_without_local_slots_are_not_limited(make_world: Callable[[int], World]) -> None:
    world = make_world(1)
    busy = world.add(local())
    wait_until(lambda: world.local.started() == [busy[0]], "the local job runs")
    remotes = [world.add(remote()) for _ in range(3)]
    wait_until(lambda: len(world.remote.started()) == 3, "every remote job starts")
    for unit in remotes:
        world.wait_job(unit[0], pb.JOB_STATE_RUNNING)
    queued = world.add(local())
    # Not behind a unit waiting for a local slot either.
    late = world.add(remote())
    wait_until(lambda: late[0] in world.remote.started(), "a remote unit passes queued local ones")
    assert len(world.local.started()) == 1, "the local slot is still taken"
    world.local.finish(busy[0])
    wait_until(lambda: queued[0] in world.local.started(), "the queued local job starts")


def test_a_job_group_is_admitted_whole(make_world: Callable[[int], World]) -> None:
    world = make_world(2)
    first = world.add(local())
    wait_until(lambda: len(world.local.started()) == 1, "first runs")
    group = world.add(local("chief"), local("worker"))
    assert stays(lambda: len(world.local.started()) == 1), "one slot free, the group needs two"
    world.local.finish(first[0])
    wait_until(lambda: len(world.local.starts) == 2, "the group starts")
    assert world.local.starts[1] == [group[0], group[1]], "in one start call, chief first"

    # A group larger than the limit runs when nothing else does.
    world.local.finish(group[0])
    world.local.finish(group[1])
    big = world.add(local("a"), local("b"), local("c"))
    wait_until(lambda: len(world.local.starts) == 3, "the big group starts alone")
    assert world.local.starts[2] == [big[0], big[1], big[2]]


def test_a_start_that_raises_fails_its_jobs_only(make_world: Callable[[int], World]) -> None:
    world = make_world(4)
    for error in (ValueError("binary changed"), RuntimeError("client library broke")):
        world.remote.start_error = error
        broken = world.add(remote(), local("peer"))
        job = world.wait_job(broken[0], pb.JOB_STATE_FAILED)
        assert str(error) in job.status.reason
        world.wait_unit(broken, pb.JOB_STATE_FAILED)
    # The dispatcher goes on.
    after = world.add(local())
    world.wait_job(after[0], pb.JOB_STATE_RUNNING)


# -- a job group fails together --------------------------------------------------------------------


def test_a_failed_job_cancels_its_peers(make_world: Callable[[int], World]) -> None:
    world = make_world(8)
    group = world.add(local("chief"), local("worker"), remote("ps"))
    wait_until(lambda: len(world.local.running | world.remote.running) == 3, "all run")
    world.local.finish(group[1], exit_code=3)
    unit = world.wait_unit(group, pb.JOB_STATE_FAILED)
    wait_until(lambda: world.job(group[0]).status.state in FINAL_STATES, "chief stopped")
    wait_until(lambda: world.job(group[2]).status.state in FINAL_STATES, "ps stopped")
    unit = world.unit(group)
    states = {job.name: job.status.state for job in unit.jobs}
    assert states == {
        "chief": pb.JOB_STATE_CANCELLED,
        "worker": pb.JOB_STATE_FAILED,
        "ps": pb.JOB_STATE_CANCELLED,
    }
    assert unit.status.state == pb.JOB_STATE_FAILED
    chief = next(j for j in unit.jobs if j.name == "chief")
    assert "'worker' failed" in chief.status.reason
    cancelled = {key for key, _, _ in world.local.cancels + world.remote.cancels}
    assert cancelled == {group[0], group[2]}


# -- cancelling ------------------------------------------------------------------------------------


def test_cancel_before_start(make_world: Callable[[int], World]) -> None:
    world = make_world(1)
    busy = world.add(local())
    wait_until(lambda: len(world.local.started()) == 1, "busy runs")
    queued = world.add(local())
    assert world.scheduler.cancel(queued.experiment_id, queued.work_unit_id, None, "")
    job = world.wait_job(queued[0], pb.JOB_STATE_CANCELLED)
    assert "before it started" in job.status.reason
    world.local.finish(busy[0])
    assert stays(lambda: queued[0] not in world.local.started()), "never started"
    assert not any(key == queued[0] for key, _, _ in world.local.cancels)


def test_cancel_during_start(make_world: Callable[[int], World]) -> None:
    world = make_world(4)
    world.local.hold_starts = held = threading.Event()
    unit = world.add(local())
    wait_until(lambda: len(world.local.starts) == 1, "start under way")
    assert world.scheduler.cancel(unit.experiment_id, unit.work_unit_id, GRACE * 2, "stop it")
    # Delivered at once with the empty handle: the backend must stop what it is starting.
    assert world.local.cancels == [(unit[0], "", GRACE * 2)]
    held.set()
    job = world.wait_job(unit[0], pb.JOB_STATE_CANCELLED)
    assert "stop it" in job.status.reason
    assert job.backend_handle == handle(unit[0])


def test_a_start_reported_after_the_cancel_stays_cancelling(
    make_world: Callable[[int], World],
) -> None:
    """A backend that starts the job before the cancel reaches it reports RUNNING after the
    scheduler recorded CANCELLING: the job is still being cancelled, not running again."""
    world = make_world(4)
    world.remote.hold_starts = held = threading.Event()
    world.remote.late_cancels = True
    unit = world.add(remote())
    wait_until(lambda: len(world.remote.starts) == 1, "start under way")
    assert world.scheduler.cancel(unit.experiment_id, unit.work_unit_id, None, "stop it")
    held.set()
    wait_until(world.remote.runs(unit[0]), "started")
    world.scheduler.flush()
    assert world.job(unit[0]).status.state == pb.JOB_STATE_CANCELLING
    assert world.unit(unit).status.state == pb.JOB_STATE_CANCELLING
    world.remote.report(JobObservation(unit[0], pb.JOB_STATE_CANCELLED, reason="stopped"))
    job = world.wait_job(unit[0], pb.JOB_STATE_CANCELLED)
    assert "stop it" in job.status.reason
    transitions = [
        (e.old_state, e.new_state)
        for e in world.store.events_after(0)
        if e.job_name == unit[0].job_name and e.subject == pb.EVENT_SUBJECT_JOB
    ]
    assert transitions == [
        (pb.JOB_STATE_PENDING, pb.JOB_STATE_STARTING),
        (pb.JOB_STATE_STARTING, pb.JOB_STATE_CANCELLING),
        (pb.JOB_STATE_CANCELLING, pb.JOB_STATE_CANCELLED),
    ]


def test_cancel_after_start(make_world: Callable[[int], World]) -> None:
    world = make_world(4)
    unit = world.add(local(), remote("helper"))
    world.wait_job(unit[0], pb.JOB_STATE_RUNNING)
    world.wait_job(unit[1], pb.JOB_STATE_RUNNING)
    grace = datetime.timedelta(seconds=3)
    assert world.scheduler.cancel(unit.experiment_id, unit.work_unit_id, grace, "enough")
    assert world.local.cancels == [(unit[0], handle(unit[0]), grace)]
    assert world.remote.cancels == [(unit[1], handle(unit[1]), grace)]
    recorded = world.wait_unit(unit, pb.JOB_STATE_CANCELLED)
    for job in recorded.jobs:
        assert job.status.state == pb.JOB_STATE_CANCELLED
        assert "enough" in job.status.reason
    # A finished unit has nothing left to cancel.
    assert not world.scheduler.cancel(unit.experiment_id, unit.work_unit_id, None, "")


def test_a_cancel_that_raises_still_stops_the_other_jobs(
    make_world: Callable[[int], World],
) -> None:
    world = make_world(4)
    unit = world.add(remote("far"), local("near"))
    world.wait_job(unit[0], pb.JOB_STATE_RUNNING)
    world.wait_job(unit[1], pb.JOB_STATE_RUNNING)
    world.remote.cancel_error = RuntimeError("the cluster's API is down")
    assert world.scheduler.cancel(unit.experiment_id, unit.work_unit_id, None, "stop")
    world.wait_job(unit[1], pb.JOB_STATE_CANCELLED)
    assert world.job(unit[0]).status.state == pb.JOB_STATE_CANCELLING
    # Asked again, delivered again.
    world.scheduler.cancel(unit.experiment_id, unit.work_unit_id, None, "stop")
    world.wait_unit(unit, pb.JOB_STATE_CANCELLED)


def test_cancel_uses_the_default_grace_period(make_world: Callable[[int], World]) -> None:
    world = make_world(4)
    unit = world.add(local())
    world.wait_job(unit[0], pb.JOB_STATE_RUNNING)
    world.scheduler.cancel(unit.experiment_id, unit.work_unit_id, None, "")
    assert world.local.cancels == [(unit[0], handle(unit[0]), GRACE)]


# -- recovery after a restart ----------------------------------------------------------------------


def test_recovery_asks_the_backends(make_world: Callable[[int], World]) -> None:
    world = make_world(1)
    running = world.add(local())
    world.wait_job(running[0], pb.JOB_STATE_RUNNING)
    queued = world.add(local())
    elsewhere = world.add(remote())
    world.wait_job(elsewhere[0], pb.JOB_STATE_RUNNING)
    world.scheduler.flush()

    def prepare(new: World) -> None:
        # The local job still runs; the remote one never started (the daemon died first).
        new.local.after_restart[running[0]] = pb.JOB_STATE_RUNNING
        new.remote.after_restart[elsewhere[0]] = pb.JOB_STATE_PENDING

    world.restart(prepare)
    assert (running[0], handle(running[0])) in world.local.reattached
    assert (elsewhere[0], handle(elsewhere[0])) in world.remote.reattached
    # PENDING: started again.
    wait_until(lambda: world.remote.started() == [elsewhere[0]], "the remote job starts again")
    # RUNNING: followed, and holds the only local slot; the queued unit waits for it.
    assert world.job(running[0]).status.state == pb.JOB_STATE_RUNNING
    assert stays(lambda: world.local.started() == []), "the re-attached job holds the slot"
    world.local.finish(running[0])
    world.wait_job(running[0], pb.JOB_STATE_SUCCEEDED)
    wait_until(lambda: world.local.started() == [queued[0]], "then the queued unit starts")


def test_recovery_finishes_cancelling(make_world: Callable[[int], World]) -> None:
    world = make_world(4)
    unit = world.add(local("a"), local("b"))
    world.wait_job(unit[0], pb.JOB_STATE_RUNNING)
    world.local.running.clear()  # the fake forgets it: no CANCELLED before the restart
    world.scheduler.cancel(unit.experiment_id, unit.work_unit_id, None, "stop")
    world.wait_job(unit[0], pb.JOB_STATE_CANCELLING)

    def prepare(new: World) -> None:
        new.local.after_restart[unit[0]] = pb.JOB_STATE_RUNNING  # b: never started

    world.restart(prepare)
    assert [key for key, _, _ in world.local.cancels] == [unit[0]], "cancel delivered again"
    world.wait_unit(unit, pb.JOB_STATE_CANCELLED)
    assert world.local.started() == [], "nothing of a cancelled unit starts"


def test_recovery_survives_a_backend_that_raises(make_world: Callable[[int], World]) -> None:
    world = make_world(4)
    far = world.add(remote())
    world.wait_job(far[0], pb.JOB_STATE_RUNNING)
    near = world.add(local())
    world.wait_job(near[0], pb.JOB_STATE_RUNNING)
    world.scheduler.flush()

    def prepare(new: World) -> None:
        new.remote.reattach_error = RuntimeError("the cluster's API is down")
        new.local.after_restart[near[0]] = pb.JOB_STATE_RUNNING

    world.restart(prepare)
    # The job keeps its recorded state; everything else recovers and new work runs.
    assert world.job(far[0]).status.state == pb.JOB_STATE_RUNNING
    assert world.remote.started() == []
    world.local.finish(near[0])
    world.wait_job(near[0], pb.JOB_STATE_SUCCEEDED)
    later = world.add(local())
    world.wait_job(later[0], pb.JOB_STATE_RUNNING)
    # It can still be cancelled.
    world.scheduler.cancel(far.experiment_id, far.work_unit_id, None, "")
    assert [key for key, _, _ in world.remote.cancels] == [far[0]]


# -- refusals at add time --------------------------------------------------------------------------


def _nothing_written(world: World, events_before: int) -> None:
    assert world.store.last_event_sequence() == events_before
    listed = world.store.list_work_units(pb.ListWorkUnitsRequest(experiment_id=world.experiment_id))
    assert list(listed.work_units) == []


def test_submit_refuses_what_a_backend_cannot_run(make_world: Callable[[int], World]) -> None:
    world = make_world(4)
    before = world.store.last_event_sequence()
    error = world.submit(local("ok"), local("bad", "--unrunnable"))
    assert isinstance(error, InvalidArgumentError), error
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.field == "jobs[1].args"
    _nothing_written(world, before)
    assert world.local.started() == []


def test_submit_refuses_when_a_backend_is_unavailable(make_world: Callable[[int], World]) -> None:
    world = make_world(4)
    world.remote.available = Availability(False, "the cluster is unreachable; start it")
    before = world.store.last_event_sequence()
    error = world.submit(local("ok"), remote("far"))
    assert isinstance(error, LauncherError)
    assert not isinstance(error, InvalidArgumentError)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert str(error).startswith("jobs[1]: ")
    assert "the cluster is unreachable; start it" in str(error)
    _nothing_written(world, before)


def test_submit_refuses_a_job_no_backend_runs(make_world: Callable[[int], World]) -> None:
    world = make_world(4)
    before = world.store.last_event_sequence()
    vertex = pb.Job(
        name="v",
        artifact=pb.Artifact(oci_image=pb.OciImage(reference="example.invalid/x:1")),
        executor=pb.Executor(vertex=pb.VertexExecutor()),
    )
    error = world.submit(vertex)
    assert isinstance(error, LauncherError)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    _nothing_written(world, before)


def test_a_refused_request_does_not_hold_back_its_batch(make_world: Callable[[int], World]) -> None:
    world = make_world(4)
    requests = [
        world.request(local()),
        world.request(local("x", "--unrunnable")),
        world.request(local()),
    ]
    results = world.scheduler.submit(requests)
    assert isinstance(results[1], InvalidArgumentError)
    units = [r for r in results if not isinstance(r, LauncherError)]
    assert [unit.work_unit_id for unit, _ in units] == [1, 2]
    wait_until(lambda: len(world.local.started()) == 2, "both valid units start")
