"""Text a backend reports is stored whatever it holds, on SQLite and on PostgreSQL (which
refuses NUL in text): one bad observation neither fails nor holds up the others."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher_server import limits
from launcher_server.jobs import JobKey, JobObservation
from launcher_server.store.store import Store
from tests.support.postgres import PostgresServer
from xmanager.launcher.v1 import launcher_pb2 as pb


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
    opened = Store.open(url)
    yield opened
    with contextlib.suppress(Exception):
        opened.close()


def test_nul_and_huge_reasons_are_stored_cleaned_with_the_rest_of_the_batch(store: Store) -> None:
    experiment = store.create_experiment(pb.Experiment(title="t"))
    for i in (1, 2):
        store.add_work_unit(
            pb.AddWorkUnitRequest(
                experiment_id=experiment.id,
                request_id=f"r{i}",
                jobs=[
                    pb.Job(
                        name="main",
                        artifact=pb.Artifact(local_binary=pb.LocalBinary(path="/bin/true")),
                        executor=pb.Executor(local=pb.LocalExecutor()),
                    )
                ],
            )
        )
    bad = JobObservation(
        JobKey(experiment.id, 1, "main"),
        pb.JOB_STATE_FAILED,
        native_state="exit\x00ed",
        reason="crashed: \x00\x00" + "x" * 100_000,
    )
    good = JobObservation(JobKey(experiment.id, 2, "main"), pb.JOB_STATE_SUCCEEDED, reason="ok")
    store.apply_observations([bad, good])
    failed = store.get_work_unit(experiment.id, 1).jobs[0].status
    assert failed.state == pb.JOB_STATE_FAILED
    assert "\x00" not in failed.reason
    assert failed.reason.startswith("crashed: \N{REPLACEMENT CHARACTER}")
    assert len(failed.reason) <= limits.DEFAULT_MAX_CHARS
    assert "\x00" not in failed.native_state
    assert store.get_work_unit(experiment.id, 2).status.state == pb.JOB_STATE_SUCCEEDED
