"""Without a reachable Docker Engine: container jobs are refused with what to do, binaries run.

Needs no engine (the daemon is pointed at a socket that does not exist), so it runs everywhere.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.containers.conftest import add_unit, container_job, create_experiment, job_file, wait_job
from tests.support.daemon import DaemonHandle, make_executable
from xmanager.launcher.v1 import launcher_pb2 as pb

BOGUS = "unix:///tmp/xm-no-docker-here.sock"


@pytest.mark.parametrize("how", ["flag", "DOCKER_HOST"])
def test_docker_unreachable_gives_a_clear_error_and_binaries_still_run(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    flags = []
    if how == "flag":
        flags.append(f"--docker_host={BOGUS}")
    else:
        monkeypatch.setenv("DOCKER_HOST", BOGUS)  # inherited by the daemon process
    daemon = DaemonHandle(state_dir, flags)
    daemon.start()
    try:
        info = daemon.client.stub.GetServerInfo(pb.GetServerInfoRequest())
        (backend,) = [b for b in info.backends if b.name == "local_container"]
        assert not backend.available
        assert f"Docker Engine is not reachable at {BOGUS}: start it" in backend.reason
        assert "dockerd" in backend.reason
        experiment_id = create_experiment(daemon, "no docker")
        with pytest.raises(grpc.RpcError) as refused:
            add_unit(daemon, experiment_id, container_job("main", reference="busybox"))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = str(refused.value.details())
        assert f"Docker Engine is not reachable at {BOGUS}: start it" in details
        binary = make_executable(tmp_path / "hello.sh", "#!/bin/sh\necho binary ok\n")
        add_unit(
            daemon,
            experiment_id,
            pb.Job(
                name="binary",
                artifact=pb.Artifact(local_binary=pb.LocalBinary(path=str(binary))),
                executor=pb.Executor(local=pb.LocalExecutor()),
            ),
        )
        status = wait_job(daemon, experiment_id, 1, "binary").status
        assert status.state == pb.JOB_STATE_SUCCEEDED, status
        assert job_file(daemon, experiment_id, 1, "binary", "stdout.log") == b"binary ok\n"
    finally:
        daemon.stop()
