"""Waiting for, querying and stopping units after the experiment's block ended (XManager's
launch scripts wait after leaving it), through a real daemon."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle, local_job, make_executable
from xmanager import xm, xm_local
from xmanager.launcher.v1 import launcher_pb2 as pb

# The client's background threads: none may outlive the block or the waits after it.
CLIENT_THREADS = {"xm-watcher", "xm-submitter", "xm-wait-loop", "xm-experiment-loop", "xm-output"}


@pytest.fixture
def client_env(shared_daemon: DaemonHandle, monkeypatch: pytest.MonkeyPatch) -> DaemonHandle:
    monkeypatch.setenv("XM_STATE_DIR", str(shared_daemon.state.root))
    return shared_daemon


def _client_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in CLIENT_THREADS]


def _assert_client_threads_end() -> None:
    deadline = time.monotonic() + 5
    while _client_threads():
        assert time.monotonic() < deadline, f"still running: {_client_threads()}"
        time.sleep(0.02)


def test_the_xmanager_example_shape_waits_after_the_async_block(
    client_env: DaemonHandle, tmp_path: Path
) -> None:
    job = make_executable(tmp_path / "job.sh", "#!/bin/sh\nsleep 0.2\nexit $1\n")

    @xm.run_in_asyncio_loop
    async def main() -> list[xm.WorkUnit]:
        async with xm_local.create_experiment(experiment_title="after exit") as experiment:
            [executable] = experiment.package(
                [xm.Packageable(xm.Binary(path=str(job)), xm_local.Local.Spec())]
            )
            work_units = [
                await experiment.add(xm.Job(executable, xm_local.Local(), args=["0"]))
                for _ in range(2)
            ]
        for work_unit in work_units:
            assert await work_unit.wait_until_complete() is work_unit
        with pytest.raises(RuntimeError, match="its `with` block has ended"):
            experiment.add(xm.Job(executable, xm_local.Local(), args=["0"]))
        return work_units

    work_units = main()
    assert all(unit.get_status().is_completed for unit in work_units)
    work_units[0].stop()  # a no-op on a finished unit, but allowed, as in XManager
    assert work_units[0].get_status().is_completed
    _assert_client_threads_end()


def test_sync_waits_open_one_watch_and_close_it_when_done(
    client_env: DaemonHandle, tmp_path: Path
) -> None:
    stub = client_env.client.stub
    record = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="waited from elsewhere"))
    )
    for i, seconds in enumerate(["1", "1", "60"]):
        stub.AddWorkUnit(
            pb.AddWorkUnitRequest(
                experiment_id=record.id,
                jobs=[local_job("sleep", "/bin/sleep", seconds)],
                request_id=f"after-exit-{record.id}-{i}",
            )
        )
    # A re-attached experiment is never entered: its units are still waited for.
    experiment = xm_local.get_experiment(record.id)
    waits = [experiment.work_units[i].wait_until_complete() for i in (1, 2)]
    deadline = time.monotonic() + 5
    while "xm-watcher" not in _client_threads():
        assert time.monotonic() < deadline, "the waits opened no watch stream"
        time.sleep(0.01)
    assert not any(wait.done() for wait in waits)
    assert _client_threads().count("xm-watcher") == 1  # one stream for all the waits
    units = experiment.work_units
    assert [wait.result(timeout=30) for wait in waits] == [units[1], units[2]]
    _assert_client_threads_end()

    endless = experiment.work_units[3]
    assert endless.get_status().is_active
    endless.stop(message="not needed")
    with pytest.raises(xm.ExperimentUnitNotCompletedError):
        endless.wait_until_complete().result(timeout=30)
    assert endless.get_status().is_cancelled
    _assert_client_threads_end()
