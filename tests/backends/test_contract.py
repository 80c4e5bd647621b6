"""The contract every backend keeps, run against each backend of `conftest.HARNESSES`.

What the scheduler and StreamLogs rely on: jobs start and report RUNNING then a final state with
their exit code; cancel honours the grace period; a restarted daemon re-attaches; logs read by
offset, tail and follow; jobs it cannot run are refused at add time; repeated reports are
harmless to the store.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from launcher_server.aggregation import FINAL_STATES
from launcher_server.backends.base import BackendUnavailableError
from launcher_server.errors import InvalidArgumentError
from launcher_server.jobs import JobKey, JobObservation
from launcher_server.logs import follow
from launcher_server.store.store import Store
from tests.backends.conftest import (
    FOREVER,
    BackendHarness,
    JobPlan,
    launch_spec,
    log_text,
    wait_log,
)
from xmanager.launcher.v1 import launcher_pb2 as pb

GRACE_LONG = datetime.timedelta(seconds=30)


def key(name: str = "job", work_unit_id: int = 1) -> JobKey:
    return JobKey(1, work_unit_id, name)


def start_one(harness: BackendHarness, plan: JobPlan, name: str = "job") -> tuple[JobKey, str]:
    """Starts one job on the harness's first backend instance; (key, handle)."""
    instance = harness.instances[0]
    job_key = key(name)
    (handle,) = instance.backend.start([launch_spec(job_key, harness.job(name, plan))])
    assert isinstance(handle, str)
    return job_key, handle


def assert_final_is_last(observations: Sequence[JobObservation], final_state: int) -> None:
    """Nothing but repeats of the final state after it."""
    states = [o.state for o in observations]
    first = next(i for i, s in enumerate(states) if s in FINAL_STATES)
    assert set(states[first:]) == {final_state}, [pb.JobState.Name(s) for s in states]


# -- routing and add-time checks ---------------------------------------------------------------


def _samples() -> list[pb.Job]:
    image = pb.Artifact(oci_image=pb.OciImage(reference="example.invalid/image:1"))
    return [
        pb.Job(
            name="binary",
            artifact=pb.Artifact(local_binary=pb.LocalBinary(path="/bin/true")),
            executor=pb.Executor(local=pb.LocalExecutor()),
        ),
        pb.Job(name="container", artifact=image, executor=pb.Executor(local=pb.LocalExecutor())),
        pb.Job(name="vertex", artifact=image, executor=pb.Executor(vertex=pb.VertexExecutor())),
        pb.Job(
            name="kubernetes",
            artifact=image,
            executor=pb.Executor(kubernetes=pb.KubernetesExecutor()),
        ),
    ]


def _kind(job: pb.Job) -> tuple[str | None, str | None]:
    return job.executor.WhichOneof("kind"), job.artifact.WhichOneof("kind")


def test_accepts_its_own_jobs_only(harness: BackendHarness) -> None:
    backend = harness.build().backend
    own = harness.job("own", JobPlan())
    assert backend.accepts(own)
    for other in _samples():
        if _kind(other) != _kind(own):
            assert not backend.accepts(other), f"{harness.name} accepts {other.name} jobs"


def test_check_passes_a_runnable_job(harness: BackendHarness) -> None:
    harness.build().backend.check(harness.job("ok", JobPlan()), "jobs[0]")


def test_check_refuses_naming_the_field(harness: BackendHarness) -> None:
    backend = harness.build().backend
    assert harness.invalid_jobs, "a harness gives at least one job its backend must refuse"
    for job, field in harness.invalid_jobs:
        assert backend.accepts(job), f"{job.name}: refused by accepts(), not by check()"
        with pytest.raises(InvalidArgumentError) as raised:
            backend.check(job, "jobs[3]")
        assert raised.value.field == f"jobs[3].{field}", raised.value
        assert str(raised.value).startswith(f"jobs[3].{field}: ")


def test_availability(harness: BackendHarness) -> None:
    availability = harness.build().backend.availability()
    assert availability.ok, availability.reason
    if harness.unavailable is not None:
        backend = harness.unavailable()
        try:
            missing = backend.availability()
        finally:
            backend.close()
        assert not missing.ok
        assert missing.reason, "an unavailable backend says what is missing and what to do"


# -- running -----------------------------------------------------------------------------------


def test_success_reports_running_then_succeeded(harness: BackendHarness) -> None:
    instance = harness.build()
    plan = JobPlan(stdout=["hello"], run_seconds=1.0)
    job_key, handle = start_one(harness, plan)
    running = instance.observed.wait(job_key, [pb.JOB_STATE_RUNNING], harness.start_timeout)
    final = instance.observed.final(job_key)
    assert final.state == pb.JOB_STATE_SUCCEEDED, final
    assert final.exit_code == 0
    observations = instance.observed.of(job_key)
    assert observations.index(running) < observations.index(final)
    assert_final_is_last(observations, pb.JOB_STATE_SUCCEEDED)
    source = instance.backend.logs(job_key, handle)
    assert log_text(source, "stdout") == plan.expected_stdout()
    assert instance.backend.log_location(job_key, handle)


def test_failure_reports_exit_code(harness: BackendHarness) -> None:
    instance = harness.build()
    job_key, _ = start_one(harness, JobPlan(stderr=["broken"], run_seconds=0.5, exit_code=3))
    instance.observed.wait(job_key, [pb.JOB_STATE_RUNNING], harness.start_timeout)
    final = instance.observed.final(job_key)
    assert final.state == pb.JOB_STATE_FAILED, final
    assert final.exit_code == 3
    assert final.reason, "a failure says why"
    assert_final_is_last(instance.observed.of(job_key), pb.JOB_STATE_FAILED)


def test_job_sees_its_env_and_the_launchers(harness: BackendHarness) -> None:
    instance = harness.build()
    names = ["GREETING", "XM_EXPERIMENT_ID", "XM_WORK_UNIT_ID", "XM_JOB_NAME", "XM_JOB_PEERS"]
    job = harness.job("env", JobPlan(print_env=names))
    job.env["GREETING"] = "hello there"
    job_key = key("env")
    (handle,) = instance.backend.start([launch_spec(job_key, job, peers=["env", "other"])])
    assert instance.observed.final(job_key, harness.start_timeout).state == pb.JOB_STATE_SUCCEEDED
    printed = log_text(instance.backend.logs(job_key, handle), "stdout").decode().splitlines()
    assert printed[1:] == [
        "GREETING=hello there",
        "XM_EXPERIMENT_ID=1",
        "XM_WORK_UNIT_ID=1",
        "XM_JOB_NAME=env",
        "XM_JOB_PEERS=env,other",
    ]


def test_a_refused_job_started_anyway_fails_cleanly(harness: BackendHarness) -> None:
    """A job that became unrunnable between add and start (a binary or image removed): start
    raises ValueError or BackendUnavailableError (the scheduler records FAILED), or reports
    FAILED itself."""
    instance = harness.build()
    for i, (job, _) in enumerate(harness.invalid_jobs):
        job_key = key(f"refused{i}")
        try:
            handles = instance.backend.start([launch_spec(job_key, job)])
        except (ValueError, BackendUnavailableError):
            continue
        assert len(handles) == 1
        final = instance.observed.final(job_key, harness.start_timeout)
        assert final.state == pb.JOB_STATE_FAILED, final
        assert final.reason, "says why"


def test_a_work_units_jobs_start_together(harness: BackendHarness) -> None:
    harness.require("gang_outcomes")
    instance = harness.build()
    names = ["chief", "worker"]
    specs = [
        launch_spec(key(name), harness.job(name, JobPlan(exit_code=i)), peers=names)
        for i, name in enumerate(names)
    ]
    handles = instance.backend.start(specs)
    assert len(handles) == 2
    chief = instance.observed.final(key("chief"), harness.start_timeout)
    worker = instance.observed.final(key("worker"), harness.start_timeout)
    assert (chief.state, chief.exit_code) == (pb.JOB_STATE_SUCCEEDED, 0)
    assert (worker.state, worker.exit_code) == (pb.JOB_STATE_FAILED, 1)


# -- cancelling --------------------------------------------------------------------------------


def test_cancel_sigterm_is_honoured(harness: BackendHarness) -> None:
    harness.require("cancel_grace")
    instance = harness.build()
    job_key, handle = start_one(harness, JobPlan(run_seconds=FOREVER, on_term="exit"))
    source = instance.backend.logs(job_key, handle)
    wait_log(source, b"ready\n", timeout=harness.start_timeout)
    instance.backend.cancel(job_key, handle, GRACE_LONG)
    instance.backend.cancel(job_key, handle, GRACE_LONG)  # asked again: harmless
    final = instance.observed.final(job_key, timeout=GRACE_LONG.total_seconds() / 2)
    assert final.state == pb.JOB_STATE_CANCELLED, final
    assert b"terminated\n" in log_text(source, "stdout")
    assert_final_is_last(instance.observed.of(job_key), pb.JOB_STATE_CANCELLED)


def test_cancel_forces_after_the_grace_period(harness: BackendHarness) -> None:
    harness.require("cancel_grace")
    instance = harness.build()
    job_key, handle = start_one(harness, JobPlan(run_seconds=FOREVER, on_term="ignore"))
    wait_log(instance.backend.logs(job_key, handle), b"ready\n", timeout=harness.start_timeout)
    grace = datetime.timedelta(seconds=1)
    asked = time.monotonic()
    instance.backend.cancel(job_key, handle, grace)
    final = instance.observed.final(job_key, timeout=30)
    # It ignores SIGTERM: only the forced stop after the grace period ends it.
    assert time.monotonic() - asked >= grace.total_seconds() * 0.9
    assert final.state == pb.JOB_STATE_CANCELLED, final
    assert_final_is_last(instance.observed.of(job_key), pb.JOB_STATE_CANCELLED)


def test_cancel_right_after_start(harness: BackendHarness) -> None:
    instance = harness.build()
    job_key, handle = start_one(harness, JobPlan(run_seconds=FOREVER))
    instance.backend.cancel(job_key, handle, datetime.timedelta(seconds=1))
    final = instance.observed.final(job_key, timeout=harness.start_timeout)
    assert final.state == pb.JOB_STATE_CANCELLED, final


def test_cancel_without_handle_while_starting(harness: BackendHarness) -> None:
    """The scheduler cancels with "" when the start has not returned its handle yet."""
    instance = harness.build()
    job_key, _ = start_one(harness, JobPlan(run_seconds=FOREVER))
    instance.backend.cancel(job_key, "", datetime.timedelta(seconds=1))
    final = instance.observed.final(job_key, timeout=harness.start_timeout)
    assert final.state == pb.JOB_STATE_CANCELLED, final


def test_cancel_of_a_finished_job_changes_nothing(harness: BackendHarness) -> None:
    instance = harness.build()
    job_key, handle = start_one(harness, JobPlan(stdout=["done"]))
    final = instance.observed.final(job_key, harness.start_timeout)
    assert final.state == pb.JOB_STATE_SUCCEEDED
    instance.backend.cancel(job_key, handle, datetime.timedelta(seconds=1))
    time.sleep(1.5)
    assert_final_is_last(instance.observed.of(job_key), pb.JOB_STATE_SUCCEEDED)
    after = instance.backend.reattach(job_key, handle)
    assert (after.state, after.exit_code) == (pb.JOB_STATE_SUCCEEDED, 0)


# -- re-attaching after a daemon restart -------------------------------------------------------


def test_reattach_to_a_running_job(harness: BackendHarness) -> None:
    harness.require("reattach")
    first = harness.build()
    job_key, handle = start_one(harness, JobPlan(run_seconds=FOREVER, on_term="exit"))
    first.observed.wait(job_key, [pb.JOB_STATE_RUNNING], harness.start_timeout)
    wait_log(first.backend.logs(job_key, handle), b"ready\n")
    first.backend.close()

    second = harness.build()
    now = second.backend.reattach(job_key, handle)
    assert now.state in (pb.JOB_STATE_RUNNING, pb.JOB_STATE_STARTING), now
    assert now.key == job_key
    # Followed by the new instance: its end is reported there.
    second.backend.cancel(job_key, handle, GRACE_LONG)
    final = second.observed.final(job_key, timeout=GRACE_LONG.total_seconds() / 2)
    assert final.state == pb.JOB_STATE_CANCELLED, final
    assert b"terminated\n" in log_text(second.backend.logs(job_key, handle), "stdout")


def test_reattach_to_a_job_that_ended_while_away(harness: BackendHarness) -> None:
    harness.require("reattach")
    first = harness.build()
    plan = JobPlan(stdout=["before"], run_seconds=2.0, exit_code=4)
    job_key, handle = start_one(harness, plan)
    first.observed.wait(job_key, [pb.JOB_STATE_RUNNING], harness.start_timeout)
    wait_log(first.backend.logs(job_key, handle), b"before\n")
    first.backend.close()
    assert not first.observed.is_final(job_key)()
    time.sleep(plan.run_seconds + 2.0)

    second = harness.build()
    now = second.backend.reattach(job_key, handle)
    if now.state not in FINAL_STATES:  # a backend may find out after answering
        now = second.observed.final(job_key, timeout=30)
    assert (now.state, now.exit_code) == (pb.JOB_STATE_FAILED, 4), now
    assert log_text(second.backend.logs(job_key, handle), "stdout") == plan.expected_stdout()


def test_reattach_without_handle_finds_a_started_job(harness: BackendHarness) -> None:
    """The daemon stopped after starting the job, before recording its handle: the job is
    found by what identifies it, never started twice."""
    harness.require("reattach")
    first = harness.build()
    job_key, handle = start_one(harness, JobPlan(run_seconds=FOREVER))
    first.observed.wait(job_key, [pb.JOB_STATE_RUNNING], harness.start_timeout)
    first.backend.close()

    second = harness.build()
    now = second.backend.reattach(job_key, "")
    assert now.state in (pb.JOB_STATE_RUNNING, pb.JOB_STATE_STARTING), now
    second.backend.cancel(job_key, handle, datetime.timedelta(seconds=1))
    assert second.observed.final(job_key, timeout=30).state == pb.JOB_STATE_CANCELLED


def test_reattach_to_a_job_never_started(harness: BackendHarness) -> None:
    harness.require("reattach")
    instance = harness.build()
    now = instance.backend.reattach(key("never"), "")
    assert now.state == pb.JOB_STATE_PENDING, now


# -- logs --------------------------------------------------------------------------------------


def test_logs_by_offset_and_tail(harness: BackendHarness) -> None:
    instance = harness.build()
    plan = JobPlan(stdout=[f"line {i}" for i in range(10)], stderr=["oops"])
    job_key, handle = start_one(harness, plan)
    instance.observed.final(job_key, harness.start_timeout)
    source = instance.backend.logs(job_key, handle)
    stdout = plan.expected_stdout()
    assert log_text(source, "stdout") == stdout
    assert log_text(source, "stderr") == b"oops\n"
    output = log_text(source, "output")
    assert sorted(output.splitlines()) == sorted((stdout + b"oops\n").splitlines())

    read = source.read("stdout", 5, 7)
    assert (read.start, read.data) == (5, stdout[5:12])
    tail = source.read("stdout", -8, 1 << 16)
    assert (tail.start, tail.data) == (len(stdout) - 8, stdout[-8:])
    longer_than_log = source.read("stdout", -10 * len(stdout), 1 << 16)
    assert (longer_than_log.start, longer_than_log.data) == (0, stdout)
    past_end = source.read("stdout", len(stdout), 1 << 16)
    assert past_end.data == b""
    assert not past_end.truncated


def test_logs_capped(harness: BackendHarness) -> None:
    harness.require("log_cap")
    instance = harness.build(log_cap_bytes=1024)
    plan = JobPlan(stdout=[f"{i:04d} " + "x" * 95 for i in range(30)])
    job_key, handle = start_one(harness, plan)
    assert instance.observed.final(job_key, harness.start_timeout).state == pb.JOB_STATE_SUCCEEDED
    source = instance.backend.logs(job_key, handle)
    stdout = log_text(source, "stdout")
    assert stdout == plan.expected_stdout()[:1024]
    assert source.read("stdout", 0, 100).truncated is False
    assert source.read("stdout", 1000, 100).truncated is True


def test_logs_follow_a_running_job(harness: BackendHarness) -> None:
    harness.require("logs_follow")
    instance = harness.build()
    plan = JobPlan(stdout=[f"step {i}" for i in range(6)], line_delay=0.3)
    job_key, handle = start_one(harness, plan)
    source = instance.backend.logs(job_key, handle)
    reads = list(
        follow(source, "stdout", 0, instance.observed.is_final(job_key), poll_interval=0.05)
    )
    assert b"".join(r.data for r in reads) == plan.expected_stdout()
    assert len(reads) > 1, "followed while it ran, not read once at the end"
    assert instance.observed.final(job_key).state == pb.JOB_STATE_SUCCEEDED


# -- repeated reports through a real store -----------------------------------------------------


def test_repeated_observations_change_nothing(harness: BackendHarness, tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}")
    try:
        experiment = store.create_experiment(pb.Experiment(title="contract"))
        job = harness.job("job", JobPlan(stdout=["once"], run_seconds=0.5, exit_code=2))
        request = pb.AddWorkUnitRequest(
            experiment_id=experiment.id, request_id=uuid.uuid4().hex, jobs=[job]
        )
        (outcome,), _ = store.add_work_units([request])
        assert not isinstance(outcome, Exception), outcome
        unit, created = outcome
        assert created
        job_key = JobKey(unit.experiment_id, unit.work_unit_id, "job")

        instance = harness.build()
        (handle,) = instance.backend.start([launch_spec(job_key, job)])
        instance.observed.final(job_key, harness.start_timeout)
        observations = instance.observed.of(job_key)
        for observation in observations:
            store.apply_observations([observation], {job_key: handle})
            assert store.apply_observations([observation], {job_key: handle}) == []
        recorded = store.get_work_unit(*job_key.unit)
        assert recorded.jobs[0].status.state == pb.JOB_STATE_FAILED
        assert recorded.jobs[0].status.exit_code == 2
        events = store.events_after(0)

        # Everything again, and what a restarted daemon re-attaching reports: nothing changes.
        assert store.apply_observations(observations, {job_key: handle}) == []
        again = instance.backend.reattach(job_key, handle)
        assert store.apply_observations([again]) == []
        assert store.get_work_unit(*job_key.unit) == recorded
        assert store.events_after(0) == events
    finally:
        store.close()
