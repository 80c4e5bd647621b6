"""AddWorkUnits and WatchWorkUnits carry many work units per message, over a real daemon."""

from __future__ import annotations

import uuid

from tests.support.daemon import FINAL, DaemonHandle, add_work_units, local_job
from xmanager.launcher.v1 import launcher_pb2 as pb

_UNITS = 30


def _sweep(daemon: DaemonHandle) -> int:
    stub = daemon.client.stub
    experiment = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="batching"))
    )
    job = local_job("true", "/bin/true")
    requests = [
        pb.AddWorkUnitRequest(experiment_id=experiment.id, request_id=uuid.uuid4().hex, jobs=[job])
        for _ in range(_UNITS)
    ]
    results = add_work_units(daemon.client, requests, batch=7)
    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert [r.work_unit.work_unit_id for r in results] == list(range(1, _UNITS + 1))
    daemon.wait_all_final(experiment.id, _UNITS)
    return int(experiment.id)


def test_each_batch_of_adds_gets_one_response_in_order(daemon: DaemonHandle) -> None:
    experiment_id = _sweep(daemon)
    job = local_job("true", "/bin/true")
    batches = [
        pb.AddWorkUnitsRequest(),  # empty: answered with no results
        pb.AddWorkUnitsRequest(
            requests=[
                pb.AddWorkUnitRequest(experiment_id=experiment_id, request_id=f"r{i}", jobs=[job])
                for i in range(3)
            ]
        ),
        # A retried request (same request_id) returns the unit the first one created.
        pb.AddWorkUnitsRequest(
            requests=[
                pb.AddWorkUnitRequest(experiment_id=experiment_id, request_id="r1", jobs=[job])
            ]
        ),
    ]
    responses = list(daemon.client.stub.AddWorkUnits(iter(batches)))
    assert [len(r.results) for r in responses] == [0, 3, 1]
    assert [r.work_unit.work_unit_id for r in responses[1].results] == [
        _UNITS + 1,
        _UNITS + 2,
        _UNITS + 3,
    ]
    assert responses[2].results[0].work_unit.work_unit_id == _UNITS + 2


def test_a_watch_snapshot_comes_in_one_response(daemon: DaemonHandle) -> None:
    experiment_id = _sweep(daemon)
    responses = list(
        daemon.client.stub.WatchWorkUnits(
            pb.WatchWorkUnitsRequest(experiment_id=experiment_id, until_all_final=True)
        )
    )
    assert len(responses) == 1
    units = [update.work_unit for update in responses[0].updates]
    assert [u.work_unit_id for u in units] == list(range(1, _UNITS + 1))
    assert all(u.status.state == pb.JOB_STATE_SUCCEEDED for u in units)
    assert all(update.event.sequence == 0 for update in responses[0].updates)


def test_a_resumed_watch_sends_each_unit_once_with_its_newest_status(
    daemon: DaemonHandle,
) -> None:
    experiment_id = _sweep(daemon)
    # From the first event on, every later event of the sweep is in the daemon's memory.
    responses = list(
        daemon.client.stub.WatchWorkUnits(
            pb.WatchWorkUnitsRequest(
                experiment_id=experiment_id,
                after_sequence=1,
                until_all_final=True,
                states=sorted(FINAL),
            )
        )
    )
    updates = [update for response in responses for update in response.updates]
    assert len(responses) < _UNITS  # batched, not one message per unit
    for response in responses:
        ids = [update.work_unit.work_unit_id for update in response.updates]
        assert len(ids) == len(set(ids))
        sequences = [update.event.sequence for update in response.updates]
        assert sequences == sorted(sequences)
        assert sequences[0] > 1
    final = {u.work_unit.work_unit_id: u.work_unit.status.state for u in updates}
    assert final == dict.fromkeys(range(1, _UNITS + 1), pb.JOB_STATE_SUCCEEDED)
