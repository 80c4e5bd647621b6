"""WatchWorkUnits of named work units: only their updates, ended once they are final, over a real
daemon; the requests it refuses."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.daemon import FINAL, DaemonHandle, add_work_units, local_job, make_executable
from xmanager.launcher.v1 import launcher_pb2 as pb


def _experiment(daemon: DaemonHandle, jobs: list[pb.Job]) -> int:
    """An experiment with one work unit per job, ids 1, 2, ... in order."""
    stub = daemon.client.stub
    experiment = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="watched units"))
    )
    add_work_units(
        daemon.client,
        [
            pb.AddWorkUnitRequest(
                experiment_id=experiment.id, request_id=uuid.uuid4().hex, jobs=[job]
            )
            for job in jobs
        ],
    )
    return int(experiment.id)


def _gated(tmp_path: Path) -> tuple[pb.Job, Path]:
    """A job that runs until its gate file exists."""
    gate = tmp_path / "gate"
    script = make_executable(
        tmp_path / "gated.sh", f"#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.05; done\n"
    )
    return local_job("gated", script), gate


def test_a_watch_of_named_units_ends_when_they_are_final_while_others_run(
    daemon: DaemonHandle, tmp_path: Path
) -> None:
    gated, gate = _gated(tmp_path)
    quick = local_job("quick", "/bin/true")
    experiment_id = _experiment(daemon, [gated, quick, quick, gated])
    try:
        responses = daemon.client.stub.WatchWorkUnits(
            pb.WatchWorkUnitsRequest(
                experiment_id=experiment_id, until_all_final=True, work_unit_ids=[3, 2, 3]
            ),
            timeout=60,
        )
        updates = [update for response in responses for update in response.updates]
        assert {update.work_unit.work_unit_id for update in updates} == {2, 3}
        newest = {
            update.work_unit.work_unit_id: update.work_unit.status.state for update in updates
        }
        assert newest == {2: pb.JOB_STATE_SUCCEEDED, 3: pb.JOB_STATE_SUCCEEDED}
        # The stream ended on units 2 and 3 alone: 1 and 4 are still running.
        unit_1 = daemon.client.stub.GetWorkUnit(
            pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=1)
        )
        assert unit_1.status.state not in FINAL
    finally:
        gate.touch()
    daemon.wait_all_final(experiment_id, 4)


def test_a_resumed_watch_of_a_named_unit_sends_only_its_updates(
    daemon: DaemonHandle, tmp_path: Path
) -> None:
    quick = local_job("quick", "/bin/true")
    experiment_id = _experiment(daemon, [quick] * 5)
    daemon.wait_all_final(experiment_id, 5)
    responses = daemon.client.stub.WatchWorkUnits(
        pb.WatchWorkUnitsRequest(
            experiment_id=experiment_id, after_sequence=1, until_all_final=True, work_unit_ids=[4]
        ),
        timeout=60,
    )
    updates = [update for response in responses for update in response.updates]
    assert updates, "the unit's events after sequence 1"
    assert {update.work_unit.work_unit_id for update in updates} == {4}
    assert all(update.event.sequence > 1 for update in updates)
    assert updates[-1].work_unit.status.state == pb.JOB_STATE_SUCCEEDED


@pytest.mark.parametrize(
    ("in_experiment", "ids", "code", "named"),
    [
        (False, [1], grpc.StatusCode.INVALID_ARGUMENT, "needs an experiment_id"),
        (True, [0], grpc.StatusCode.INVALID_ARGUMENT, "work_unit_ids[0]"),
        (True, [2, -5], grpc.StatusCode.INVALID_ARGUMENT, "work_unit_ids[1]"),
        (True, list(range(1, 1002)), grpc.StatusCode.INVALID_ARGUMENT, "at most 1000"),
        (True, [1, 7, 9], grpc.StatusCode.NOT_FOUND, "no work unit 7, 9"),
    ],
)
def test_bad_work_unit_ids_are_refused_naming_them(
    shared_daemon: DaemonHandle,
    in_experiment: bool,
    ids: list[int],
    code: grpc.StatusCode,
    named: str,
) -> None:
    stub = shared_daemon.client.stub
    experiment = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="refused watches"))
    )
    stub.AddWorkUnit(
        pb.AddWorkUnitRequest(
            experiment_id=experiment.id,
            request_id=uuid.uuid4().hex,
            jobs=[local_job("quick", "/bin/true")],
        )
    )
    request = pb.WatchWorkUnitsRequest(
        experiment_id=experiment.id if in_experiment else 0, work_unit_ids=ids
    )
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.WatchWorkUnits(request, timeout=30))
    error: Any = raised.value
    assert error.code() == code, error.details()
    assert named in (error.details() or ""), error.details()
