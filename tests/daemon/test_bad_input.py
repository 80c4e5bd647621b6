"""Every kind of bad request gets a precise gRPC error and leaves the store exactly as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy

from tests.support.daemon import DaemonHandle, add_work_units, make_executable
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.launcher.v1 import launcher_pb2_grpc as pb_grpc

_TABLES = ("experiments", "work_units", "jobs", "events")


def _row_counts(daemon: DaemonHandle) -> dict[str, int]:
    """Rows per table, read straight from the daemon's SQLite file."""
    engine = sqlalchemy.create_engine(f"sqlite:///{daemon.state.database}")
    try:
        with engine.connect() as connection:
            return {
                table: int(connection.scalar(sqlalchemy.text(f"SELECT count(*) FROM {table}")))
                for table in _TABLES
            }
    finally:
        engine.dispose()


def _binary(tmp_path: Path) -> str:
    return str(make_executable(tmp_path / "ok.sh", "#!/bin/sh\nexit 0\n"))


def _not_executable(tmp_path: Path) -> str:
    path = tmp_path / "plain.sh"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o644)
    return str(path)


def _job(path: str, name: str = "main", **fields: object) -> pb.Job:
    job = pb.Job(
        name=name,
        artifact=pb.Artifact(local_binary=pb.LocalBinary(path=path)),
        executor=pb.Executor(local=pb.LocalExecutor()),
    )
    job.MergeFrom(pb.Job(**fields))  # type: ignore[arg-type]
    return job


@pytest.fixture
def experiment_id(shared_daemon: DaemonHandle) -> int:
    created = shared_daemon.client.stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="target"))
    )
    return int(created.id)


def _add(experiment_id: int, *jobs: pb.Job, request_id: str = "req") -> pb.AddWorkUnitRequest:
    return pb.AddWorkUnitRequest(experiment_id=experiment_id, request_id=request_id, jobs=jobs)


Case = Callable[[int, Path], tuple[str, object]]

# Each case: a name; (RPC name, request) built from the experiment id and a temporary directory,
# the expected status code, and a text the error must contain (naming the field).
BAD_REQUESTS: list[tuple[str, Case, grpc.StatusCode, str]] = [
    (
        "empty title",
        lambda e, t: ("CreateExperiment", pb.CreateExperimentRequest(experiment=pb.Experiment())),
        grpc.StatusCode.INVALID_ARGUMENT,
        "experiment.title: is empty",
    ),
    (
        "bad script digest",
        lambda e, t: (
            "CreateExperiment",
            pb.CreateExperimentRequest(
                experiment=pb.Experiment(title="x", launch_script_sha256="xyz")
            ),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "experiment.launch_script_sha256",
    ),
    (
        "NUL in notes",
        lambda e, t: (
            "CreateExperiment",
            pb.CreateExperimentRequest(experiment=pb.Experiment(title="x", notes="a\x00b")),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "experiment.notes: contains a NUL",
    ),
    (
        "empty update mask",
        lambda e, t: ("UpdateExperiment", pb.UpdateExperimentRequest(experiment_id=e, title="y")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "update_mask: is empty",
    ),
    (
        "unknown update field",
        lambda e, t: (
            "UpdateExperiment",
            pb.UpdateExperimentRequest(experiment_id=e, update_mask=["creator"]),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "update_mask[0]: 'creator' cannot be updated",
    ),
    (
        "update of an unknown experiment",
        lambda e, t: (
            "UpdateExperiment",
            pb.UpdateExperimentRequest(experiment_id=e + 100, title="y", update_mask=["title"]),
        ),
        grpc.StatusCode.NOT_FOUND,
        "not found",
    ),
    (
        "unknown experiment",
        lambda e, t: ("AddWorkUnit", _add(e + 100, _job(_binary(t)))),
        grpc.StatusCode.NOT_FOUND,
        "not found",
    ),
    (
        "no jobs",
        lambda e, t: ("AddWorkUnit", _add(e)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "jobs: is empty",
    ),
    (
        "no request id",
        lambda e, t: ("AddWorkUnit", _add(e, _job(_binary(t)), request_id="")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "request_id: is required",
    ),
    (
        "empty job name",
        lambda e, t: ("AddWorkUnit", _add(e, _job(_binary(t), name=""))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "jobs[0].name: is empty",
    ),
    (
        "invalid job name",
        lambda e, t: ("AddWorkUnit", _add(e, _job(_binary(t), name="a/b c"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "jobs[0].name: 'a/b c' is not a valid job name",
    ),
    (
        "duplicate job names",
        lambda e, t: ("AddWorkUnit", _add(e, _job(_binary(t), "w"), _job(_binary(t), "w"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "jobs[1].name: duplicate job name 'w'",
    ),
    (
        "bad env var name",
        lambda e, t: ("AddWorkUnit", _add(e, _job(_binary(t), env={"1BAD": "x"}))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "jobs[0].env['1BAD']: is not a valid environment variable name",
    ),
    (
        "reserved env var",
        lambda e, t: ("AddWorkUnit", _add(e, _job(_binary(t), env={"XM_JOB_NAME": "x"}))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "XM_JOB_NAME is set by the launcher in every job and cannot be overridden",
    ),
    (
        "missing binary",
        lambda e, t: ("AddWorkUnit", _add(e, _job(str(t / "nope")))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "jobs[0].artifact.local_binary.path",
    ),
    (
        "relative binary path",
        lambda e, t: ("AddWorkUnit", _add(e, _job("bin/run"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "is not absolute",
    ),
    (
        "binary not executable",
        lambda e, t: (
            "AddWorkUnit",
            _add(e, _job(_not_executable(t))),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "is not executable; chmod +x it",
    ),
    (
        "bad binary digest",
        lambda e, t: (
            "AddWorkUnit",
            _add(
                e,
                pb.Job(
                    name="main",
                    artifact=pb.Artifact(
                        local_binary=pb.LocalBinary(path=_binary(t), sha256="ABC")
                    ),
                    executor=pb.Executor(local=pb.LocalExecutor()),
                ),
            ),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "local_binary.sha256: must be 64 lowercase hex digits",
    ),
    (
        "no artifact",
        lambda e, t: (
            "AddWorkUnit",
            _add(e, pb.Job(name="main", executor=pb.Executor(local=pb.LocalExecutor()))),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "jobs[0].artifact: is not set",
    ),
    (
        "no executor",
        lambda e, t: (
            "AddWorkUnit",
            _add(
                e,
                pb.Job(
                    name="main",
                    artifact=pb.Artifact(local_binary=pb.LocalBinary(path=_binary(t))),
                ),
            ),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "jobs[0].executor: is not set",
    ),
    (
        "backend not available",
        lambda e, t: (
            "AddWorkUnit",
            _add(
                e,
                pb.Job(
                    name="main",
                    artifact=pb.Artifact(oci_image=pb.OciImage(reference="trainer:latest")),
                    executor=pb.Executor(vertex=pb.VertexExecutor()),
                ),
            ),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "vertex",
    ),
    (
        "unknown enum value",
        lambda e, t: (
            "ListWorkUnits",
            pb.ListWorkUnitsRequest(experiment_id=e, states=[pb.JOB_STATE_RUNNING, 42]),  # type: ignore[list-item]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "states: unknown JobState value 42",
    ),
    (
        "negative resources",
        lambda e, t: (
            "AddWorkUnit",
            _add(
                e,
                _job(_binary(t), requirements=pb.ResourceRequirements(cpu=-1)),
            ),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "jobs[0].requirements.cpu: is negative",
    ),
    (
        "page size out of range",
        lambda e, t: ("ListExperiments", pb.ListExperimentsRequest(page_size=5000)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size: must be between 0 and 1000",
    ),
    (
        "forged page token",
        lambda e, t: ("ListWorkUnits", pb.ListWorkUnitsRequest(experiment_id=e, page_token="%%")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
    ),
    (
        "unknown work unit",
        lambda e, t: ("GetWorkUnit", pb.GetWorkUnitRequest(experiment_id=e, work_unit_id=9)),
        grpc.StatusCode.NOT_FOUND,
        "work unit",
    ),
    (
        "non-positive id",
        lambda e, t: ("GetWorkUnit", pb.GetWorkUnitRequest(experiment_id=e, work_unit_id=0)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "work_unit_id: must be positive",
    ),
    (
        "cancel with a negative grace period",
        lambda e, t: (
            "CancelExperiment",
            pb.CancelExperimentRequest(experiment_id=e, grace_period_seconds=-1),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "grace_period_seconds",
    ),
    (
        "oversized message",
        lambda e, t: ("AddWorkUnit", _add(e, _job(_binary(t), args=["x" * (17 << 20)]))),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "",
    ),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request_is_refused_precisely_and_writes_nothing(
    shared_daemon: DaemonHandle,
    experiment_id: int,
    tmp_path: Path,
    case: tuple[str, Case, grpc.StatusCode, str],
) -> None:
    _, build, code, text = case
    rpc, request = build(experiment_id, tmp_path)
    before = _row_counts(shared_daemon)
    # A channel allowing big messages, so that the daemon's own limit is what refuses them.
    with grpc.insecure_channel(
        f"unix:{shared_daemon.state.socket}",
        options=[("grpc.max_send_message_length", 64 << 20)],
    ) as channel:
        stub = pb_grpc.LauncherStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            getattr(stub, rpc)(request, timeout=30)
    assert refused.value.code() == code, refused.value.details()
    assert text in (refused.value.details() or ""), refused.value.details()
    assert _row_counts(shared_daemon) == before
    # The daemon is still fine.
    assert shared_daemon.client.stub.GetExperiment(
        pb.GetExperimentRequest(experiment_id=experiment_id)
    ).title == ("target")


def test_stream_of_adds_reports_each_bad_request_and_goes_on(
    shared_daemon: DaemonHandle, experiment_id: int, tmp_path: Path
) -> None:
    good = _binary(tmp_path)
    requests = [
        _add(experiment_id, _job(good), request_id="ok-1"),
        _add(experiment_id, _job(good, name="bad name"), request_id="bad-1"),
        _add(experiment_id + 100, _job(good), request_id="bad-2"),
        _add(experiment_id, _job(good), request_id="ok-2"),
    ]
    before = _row_counts(shared_daemon)
    results = add_work_units(shared_daemon.client, requests, batch=3)
    assert [r.request_id for r in results] == ["ok-1", "bad-1", "bad-2", "ok-2"]
    assert [r.error_code for r in results] == [
        0,
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        grpc.StatusCode.NOT_FOUND.value[0],
        0,
    ]
    assert "jobs[0].name" in results[1].error_message
    assert [results[0].work_unit.work_unit_id, results[3].work_unit.work_unit_id] == [1, 2]
    after = _row_counts(shared_daemon)
    assert after["work_units"] - before["work_units"] == 2
    assert after["jobs"] - before["jobs"] == 2


def test_stream_logs_names_the_jobs_to_choose_from(
    shared_daemon: DaemonHandle, experiment_id: int, tmp_path: Path
) -> None:
    good = _binary(tmp_path)
    shared_daemon.client.stub.AddWorkUnit(_add(experiment_id, _job(good, "a"), _job(good, "b")))
    for job_name, code, text in [
        ("", grpc.StatusCode.INVALID_ARGUMENT, "choose one of ['a', 'b']"),
        ("c", grpc.StatusCode.NOT_FOUND, "its jobs are ['a', 'b']"),
    ]:
        with pytest.raises(grpc.RpcError) as refused:
            list(
                shared_daemon.client.stub.StreamLogs(
                    pb.StreamLogsRequest(
                        experiment_id=experiment_id, work_unit_id=1, job_name=job_name
                    )
                )
            )
        assert refused.value.code() == code
        assert text in (refused.value.details() or "")
