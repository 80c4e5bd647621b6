"""JobState mapping and the poller's economy, against the simulated emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from launcher_server.backends.vertex import connection, custom_job, states
from launcher_server.backends.vertex.custom_job import Target
from launcher_server.backends.vertex.poller import Poller
from tests.fakes.vertex import FakeVertex
from tests.vertex.test_emulator import PARENT, wait_for
from tests.vertex.test_emulator import custom_job as make_job
from xmanager.launcher.v1 import launcher_pb2 as pb


def test_every_job_state_is_mapped() -> None:
    expected = {
        0: pb.JOB_STATE_STARTING,
        1: pb.JOB_STATE_STARTING,
        2: pb.JOB_STATE_STARTING,
        3: pb.JOB_STATE_RUNNING,
        4: pb.JOB_STATE_SUCCEEDED,
        5: pb.JOB_STATE_FAILED,
        6: pb.JOB_STATE_CANCELLING,
        7: pb.JOB_STATE_CANCELLED,
        8: pb.JOB_STATE_RUNNING,
        9: pb.JOB_STATE_FAILED,
        10: pb.JOB_STATE_RUNNING,
        11: pb.JOB_STATE_FAILED,
    }
    from google.cloud import aiplatform_v1 as aip

    job_states: Any = aip.JobState
    for state in job_states:
        assert states.contract_state(int(state)) == expected[int(state)]
        assert states.native_name(int(state)) == state.name
    assert states.contract_state(99) == pb.JOB_STATE_STARTING
    assert states.exit_code(5, "The replica workerpool0-0 exited with a non-zero status of 7.") == 7
    assert states.exit_code(4, "") == 0
    assert states.reason(9, "").startswith("expired")


LAUNCHER = "s-test"


@pytest.fixture
def emulator() -> Iterator[FakeVertex]:
    with FakeVertex(simulate=True, queue_seconds=0.01) as fake:
        yield fake


def _create(emulator: FakeVertex, count: int, first_unit: int = 1) -> list[str]:
    from tests.vertex.conftest import job_client

    client = job_client(emulator.address)
    names = []
    for unit in range(first_unit, first_unit + count):
        job = make_job(
            labels={
                custom_job.LABEL_LAUNCHER: LAUNCHER,
                custom_job.LABEL_EXPERIMENT: "1",
                custom_job.LABEL_WORK_UNIT: str(unit),
            }
        )
        names.append(client.create_custom_job(parent=PARENT, custom_job=job).name)
    return names


def _poller(emulator: FakeVertex, seen: dict[tuple[int, int], list[int]]) -> Poller:
    def deliver(unit: tuple[int, int], job: Any) -> None:
        seen.setdefault(unit, []).append(int(job.state))

    return Poller(
        connection.Connections(),
        LAUNCHER,
        deliver,
        min_seconds=0.05,
        max_seconds=0.2,
    )


def test_one_list_call_per_round_whatever_the_number_of_jobs(emulator: FakeVertex) -> None:
    names = _create(emulator, 50)
    target = Target("test-project", "us-central1", f"http://{emulator.address}")
    seen: dict[tuple[int, int], list[int]] = {}
    poller = _poller(emulator, seen)
    try:
        for unit in range(1, 51):
            poller.watch((1, unit), target)
        wait_for(lambda: seen, lambda s: len(s) == 50 and all(3 in v for v in s.values()))
        rounds, calls = poller.rounds, emulator.calls["ListCustomJobs"]
        time.sleep(1)
        # One call per round (read at slightly different moments: a round may be under way).
        assert abs((emulator.calls["ListCustomJobs"] - calls) - (poller.rounds - rounds)) <= 1
        assert emulator.calls["GetCustomJob"] == 0
        assert all(states == [3] or states[-1] == 3 for states in seen.values())
        emulator.cancel_from_outside(names[0])
        wait_for(lambda: seen[(1, 1)], lambda s: s[-1] == 7)
        assert poller.watching((1, 1)) is None  # final: no longer watched
    finally:
        poller.close()


def test_outages_back_off_and_change_nothing(emulator: FakeVertex) -> None:
    _create(emulator, 1)
    target = Target("test-project", "us-central1", f"http://{emulator.address}")
    seen: dict[tuple[int, int], list[int]] = {}
    poller = _poller(emulator, seen)
    try:
        poller.watch((1, 1), target)
        wait_for(lambda: seen, lambda s: 3 in s.get((1, 1), []))
        emulator.inject(grpc.StatusCode.RESOURCE_EXHAUSTED, 3, {"ListCustomJobs"})
        before = emulator.calls["ListCustomJobs"]
        time.sleep(2)
        # Quota errors: backoff from 10 s, so no hammering (one failed call, then waiting).
        assert emulator.calls["ListCustomJobs"] - before <= 2
        assert seen[(1, 1)][-1] == 3
    finally:
        poller.close()
