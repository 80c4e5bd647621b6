"""The metadata store against SQLite and a real PostgreSQL server: the same tests on both."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from launcher_server.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    StoreVersionError,
)
from launcher_server.jobs import JobKey, JobObservation
from launcher_server.store import migrate
from launcher_server.store.claim import StoreInUseError
from launcher_server.store.models import Base
from launcher_server.store.store import Store
from tests.support.postgres import PostgresServer
from xmanager.launcher.v1 import launcher_pb2 as pb


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    yield opened
    with contextlib.suppress(Exception):  # a test may have closed it already
        opened.close()


def _job(name: str = "main", *args: str) -> pb.Job:
    return pb.Job(
        name=name,
        artifact=pb.Artifact(local_binary=pb.LocalBinary(path="/bin/true")),
        args=args,
        env={"A": "1"},
        executor=pb.Executor(local=pb.LocalExecutor()),
        requirements=pb.ResourceRequirements(cpu=2, memory_bytes=1 << 30),
    )


def _add(
    store: Store,
    experiment_id: int,
    request_id: str,
    *jobs: pb.Job,
    identity: str = "",
    work_unit_id: int = 0,
) -> tuple[pb.WorkUnit, bool]:
    return store.add_work_unit(
        pb.AddWorkUnitRequest(
            experiment_id=experiment_id,
            request_id=request_id,
            jobs=jobs or [_job()],
            identity=identity,
            work_unit_id=work_unit_id,
            args_json='{"lr": 0.1}',
        )
    )


def _experiment(store: Store, title: str = "exp", **fields: object) -> pb.Experiment:
    return store.create_experiment(pb.Experiment(title=title, **fields))  # type: ignore[arg-type]


def _counts(store: Store) -> tuple[int, int, int]:
    """(experiments, work units, events): what a refused request must leave unchanged."""
    experiments = store.list_experiments(pb.ListExperimentsRequest(page_size=1000)).experiments
    units = sum(e.work_unit_count for e in experiments)
    return len(experiments), units, store.last_event_sequence()


# -- schema -----------------------------------------------------------------------------------


def test_models_describe_exactly_what_the_migrations_create(store_url: str) -> None:
    store = Store.open(store_url)
    store.close()
    engine = sqlalchemy.create_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_database_from_a_newer_daemon_is_refused_with_a_clear_message(store_url: str) -> None:
    Store.open(store_url).close()
    engine = sqlalchemy.create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreVersionError, match=r"revision 9999, newer than this daemon.*upgrade"):
        Store.open(store_url)


def test_reopening_keeps_everything(store_url: str) -> None:
    store = Store.open(store_url)
    experiment = _experiment(store, "kept", tags=["a"])
    _add(store, experiment.id, "r1")
    store.close()
    reopened = Store.open(store_url)
    try:
        assert migrate.current_revision(reopened._engine) == migrate.head_revision()
        again = reopened.get_experiment(experiment.id)
        assert (again.title, list(again.tags), again.work_unit_count) == ("kept", ["a"], 1)
        # Ids are never reused, even after a restart.
        assert _experiment(reopened).id == experiment.id + 1
    finally:
        reopened.close()


# -- experiments ------------------------------------------------------------------------------


def test_experiment_ids_increase_and_fields_round_trip(store: Store) -> None:
    first = _experiment(
        store,
        "first",
        tags=["sweep", "sweep", "lr"],
        notes="# notes",
        creator="alice",
        launch_script_path="/x/launch.py",
        launch_script_sha256="ab" * 32,
        source_revision="abc123+dirty",
    )
    second = _experiment(store, "second")
    assert second.id > first.id
    got = store.get_experiment(first.id)
    assert got.title == "first"
    assert list(got.tags) == ["sweep", "lr"]  # unique, order kept
    assert (got.notes, got.creator, got.source_revision) == ("# notes", "alice", "abc123+dirty")
    assert got.launch_script_sha256 == "ab" * 32
    assert got.create_time.ToDatetime(datetime.UTC) <= datetime.datetime.now(datetime.UTC)


def test_create_experiment_is_idempotent_by_request_id(store: Store) -> None:
    first = store.create_experiment(pb.Experiment(title="x"), request_id="req-1")
    again = store.create_experiment(pb.Experiment(title="x"), request_id="req-1")
    assert again.id == first.id
    assert len(store.list_experiments(pb.ListExperimentsRequest()).experiments) == 1


def test_list_experiments_filters_and_pages(store: Store) -> None:
    for i in range(7):
        _experiment(store, f"Run {i}", tags=["even"] if i % 2 == 0 else ["odd"], creator="bob")
    _experiment(store, "other", creator="carol")
    page = store.list_experiments(pb.ListExperimentsRequest(page_size=3, title_contains="run"))
    assert [e.title for e in page.experiments] == ["Run 6", "Run 5", "Run 4"]
    page2 = store.list_experiments(
        pb.ListExperimentsRequest(
            page_size=3, title_contains="RUN", page_token=page.next_page_token
        )
    )
    assert [e.title for e in page2.experiments] == ["Run 3", "Run 2", "Run 1"]
    page3 = store.list_experiments(
        pb.ListExperimentsRequest(
            page_size=3, title_contains="run", page_token=page2.next_page_token
        )
    )
    assert [e.title for e in page3.experiments] == ["Run 0"]
    assert page3.next_page_token == ""
    even = store.list_experiments(pb.ListExperimentsRequest(tags=["even"], page_size=2))
    assert [e.title for e in even.experiments] == ["Run 6", "Run 4"]
    rest = store.list_experiments(
        pb.ListExperimentsRequest(tags=["even"], page_size=2, page_token=even.next_page_token)
    )
    assert [e.title for e in rest.experiments] == ["Run 2", "Run 0"]
    carol = store.list_experiments(pb.ListExperimentsRequest(creator="carol"))
    assert [e.title for e in carol.experiments] == ["other"]
    with pytest.raises(InvalidArgumentError, match="page_token"):
        store.list_experiments(pb.ListExperimentsRequest(page_token="not a token!"))


def test_list_experiments_by_work_unit_state(store: Store) -> None:
    busy = _experiment(store, "busy")
    _experiment(store, "idle")
    _add(store, busy.id, "r1")
    found = store.list_experiments(
        pb.ListExperimentsRequest(has_work_unit_in_state=[pb.JOB_STATE_PENDING])
    )
    assert [e.title for e in found.experiments] == ["busy"]
    assert dict(found.experiments[0].work_unit_state_counts) == {pb.JOB_STATE_PENDING: 1}


def test_update_experiment_changes_only_the_masked_fields(store: Store) -> None:
    experiment = _experiment(store, "old", tags=["a"], notes="n")
    updated = store.update_experiment(
        pb.UpdateExperimentRequest(
            experiment_id=experiment.id, title="new", notes="ignored", update_mask=["title"]
        )
    )
    assert (updated.title, list(updated.tags), updated.notes) == ("new", ["a"], "n")
    assert updated.update_time.ToDatetime() >= experiment.update_time.ToDatetime()
    with pytest.raises(NotFoundError):
        store.update_experiment(
            pb.UpdateExperimentRequest(experiment_id=999, update_mask=["title"])
        )


def test_a_refused_update_writes_nothing(store: Store) -> None:
    experiment = _experiment(store, "old")
    before = _counts(store)
    with pytest.raises(InvalidArgumentError, match="update_mask"):
        store.update_experiment(
            pb.UpdateExperimentRequest(
                experiment_id=experiment.id, title="new", update_mask=["title", "creator"]
            )
        )
    assert store.get_experiment(experiment.id).title == "old"
    assert _counts(store) == before


# -- work units -------------------------------------------------------------------------------


def test_add_work_unit_records_jobs_verbatim(store: Store) -> None:
    experiment = _experiment(store)
    unit, created = _add(store, experiment.id, "r1", _job("a", "--x=1 2", "'q'"), _job("b"))
    assert created
    assert (unit.experiment_id, unit.work_unit_id) == (experiment.id, 1)
    assert unit.status.state == pb.JOB_STATE_PENDING
    got = store.get_work_unit(experiment.id, 1)
    assert [job.name for job in got.jobs] == ["a", "b"]
    assert list(got.jobs[0].args) == ["--x=1 2", "'q'"]
    assert dict(got.jobs[0].env) == {"A": "1"}
    assert got.jobs[0].requirements.memory_bytes == 1 << 30
    assert got.jobs[0].artifact.local_binary.path == "/bin/true"
    assert got.args_json == '{"lr": 0.1}'
    assert all(job.status.state == pb.JOB_STATE_PENDING for job in got.jobs)


def test_add_work_unit_is_idempotent_by_request_id(store: Store) -> None:
    experiment = _experiment(store)
    first, created = _add(store, experiment.id, "same")
    again, created_again = _add(store, experiment.id, "same")
    assert created
    assert not created_again
    assert again.work_unit_id == first.work_unit_id
    assert store.get_experiment(experiment.id).work_unit_count == 1
    other = _experiment(store)
    with pytest.raises(AlreadyExistsError, match="request_id"):
        _add(store, other.id, "same")


def test_identity_is_unique_within_an_experiment(store: Store) -> None:
    experiment = _experiment(store)
    _add(store, experiment.id, "r1", identity="trial-a")
    before = _counts(store)
    with pytest.raises(AlreadyExistsError, match="identity 'trial-a'"):
        _add(store, experiment.id, "r2", identity="trial-a")
    assert _counts(store) == before
    _add(store, _experiment(store).id, "r3", identity="trial-a")  # another experiment: fine


def test_requested_work_unit_ids_are_honoured_and_checked(store: Store) -> None:
    experiment = _experiment(store)
    unit, _ = _add(store, experiment.id, "r1", work_unit_id=5)
    assert unit.work_unit_id == 5
    assert _add(store, experiment.id, "r2")[0].work_unit_id == 6
    with pytest.raises(AlreadyExistsError, match=f"{experiment.id}/5 already exists"):
        _add(store, experiment.id, "r3", work_unit_id=5)


def test_unknown_experiment_and_unit_are_not_found(store: Store) -> None:
    before = _counts(store)
    with pytest.raises(NotFoundError, match="experiment 42 not found"):
        _add(store, 42, "r1")
    assert _counts(store) == before
    experiment = _experiment(store)
    with pytest.raises(NotFoundError, match=f"work unit {experiment.id}/3 not found"):
        store.get_work_unit(experiment.id, 3)
    with pytest.raises(NotFoundError, match="experiment 77 not found"):
        store.get_work_unit(77, 1)


def test_batch_add_gives_each_request_its_own_outcome(store: Store) -> None:
    experiment = _experiment(store)
    requests = [
        pb.AddWorkUnitRequest(experiment_id=experiment.id, request_id="a", jobs=[_job()]),
        pb.AddWorkUnitRequest(experiment_id=999, request_id="b", jobs=[_job()]),
        pb.AddWorkUnitRequest(experiment_id=experiment.id, request_id="c", jobs=[_job()]),
        pb.AddWorkUnitRequest(experiment_id=experiment.id, request_id="a", jobs=[_job()]),
    ]
    outcomes, _ = store.add_work_units(requests)
    assert isinstance(outcomes[1], NotFoundError)
    first, third, repeat = outcomes[0], outcomes[2], outcomes[3]
    assert not isinstance(first, Exception)
    assert not isinstance(third, Exception)
    assert not isinstance(repeat, Exception)
    assert [first[0].work_unit_id, third[0].work_unit_id] == [1, 2]
    assert repeat == (first[0], False)
    assert store.get_experiment(experiment.id).work_unit_count == 2


def test_list_work_units_pages_and_filters_by_state(store: Store) -> None:
    experiment = _experiment(store)
    for i in range(5):
        _add(store, experiment.id, f"r{i}")
    store.apply_observations([JobObservation(JobKey(experiment.id, 2, "main"), 3)])
    page = store.list_work_units(pb.ListWorkUnitsRequest(experiment_id=experiment.id, page_size=2))
    assert [u.work_unit_id for u in page.work_units] == [1, 2]
    page2 = store.list_work_units(
        pb.ListWorkUnitsRequest(
            experiment_id=experiment.id, page_size=2, page_token=page.next_page_token
        )
    )
    assert [u.work_unit_id for u in page2.work_units] == [3, 4]
    running = store.list_work_units(
        pb.ListWorkUnitsRequest(experiment_id=experiment.id, states=[pb.JOB_STATE_RUNNING])
    )
    assert [u.work_unit_id for u in running.work_units] == [2]


# -- statuses and events ----------------------------------------------------------------------


def test_observations_update_jobs_units_and_append_events(store: Store) -> None:
    experiment = _experiment(store)
    _add(store, experiment.id, "r1", _job("a"), _job("b"))
    start = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
    a, b = JobKey(experiment.id, 1, "a"), JobKey(experiment.id, 1, "b")
    events = store.apply_observations(
        [
            JobObservation(a, pb.JOB_STATE_RUNNING, "running", start_time=start),
            JobObservation(b, pb.JOB_STATE_RUNNING, "running", start_time=start),
        ],
        handles={a: "/jobs/a", b: "/jobs/b"},
    )
    subjects = [update.event.subject for update in events]
    assert subjects.count(pb.EVENT_SUBJECT_JOB) == 2
    assert subjects.count(pb.EVENT_SUBJECT_WORK_UNIT) == 1
    unit_event, unit = next(
        (u.event, u.work_unit) for u in events if u.event.subject == pb.EVENT_SUBJECT_WORK_UNIT
    )
    assert (unit_event.old_state, unit_event.new_state) == (
        pb.JOB_STATE_PENDING,
        pb.JOB_STATE_RUNNING,
    )
    assert unit is not None
    assert unit.status.state == pb.JOB_STATE_RUNNING
    end = start + datetime.timedelta(seconds=5)
    store.apply_observations(
        [JobObservation(a, pb.JOB_STATE_FAILED, "exited", "exited with code 3", 3, end_time=end)]
    )
    got = store.get_work_unit(experiment.id, 1)
    jobs = {job.name: job for job in got.jobs}
    assert jobs["a"].status.state == pb.JOB_STATE_FAILED
    assert (jobs["a"].status.exit_code, jobs["a"].status.has_exit_code) == (3, True)
    assert jobs["a"].status.start_time.ToDatetime(datetime.UTC) == start
    assert jobs["a"].status.end_time.ToDatetime(datetime.UTC) == end
    assert jobs["a"].backend_handle == "/jobs/a"
    assert not jobs["b"].status.has_exit_code
    # One job failed, the other still runs: the unit is stopping its peers.
    assert got.status.state == pb.JOB_STATE_CANCELLING
    store.apply_observations(
        [
            JobObservation(b, pb.JOB_STATE_CANCELLING, reason="stopped because 'a' failed"),
            JobObservation(b, pb.JOB_STATE_CANCELLED, "signaled", "killed by signal 15", 143),
        ]
    )
    got = store.get_work_unit(experiment.id, 1)
    jobs = {job.name: job for job in got.jobs}
    assert jobs["b"].status.reason == "stopped because 'a' failed (killed by signal 15)"
    assert got.status.state == pb.JOB_STATE_FAILED
    assert got.status.reason == "job 'a': exited with code 3"
    assert got.status.exit_code == 3
    assert got.status.end_time.ToDatetime(datetime.UTC) >= end
    # The event log tells the whole story, in order, and never changes.
    log = store.events_after(0, experiment.id)
    assert [e.sequence for e in log] == sorted(e.sequence for e in log)
    job_a = [(e.old_state, e.new_state) for e in log if e.job_name == "a"]
    assert job_a == [
        (pb.JOB_STATE_PENDING, pb.JOB_STATE_RUNNING),
        (pb.JOB_STATE_RUNNING, pb.JOB_STATE_FAILED),
    ]
    assert store.last_event_sequence() == log[-1].sequence


def test_final_states_never_change_and_repeats_are_ignored(store: Store) -> None:
    experiment = _experiment(store)
    _add(store, experiment.id, "r1")
    key = JobKey(experiment.id, 1, "main")
    store.apply_observations([JobObservation(key, pb.JOB_STATE_SUCCEEDED, "exited", exit_code=0)])
    sequence = store.last_event_sequence()
    assert store.apply_observations([JobObservation(key, pb.JOB_STATE_SUCCEEDED)]) == []
    assert store.apply_observations([JobObservation(key, pb.JOB_STATE_LOST, reason="x")]) == []
    assert store.last_event_sequence() == sequence
    unit = store.get_work_unit(experiment.id, 1)
    assert unit.status.state == pb.JOB_STATE_SUCCEEDED
    assert unit.status.exit_code == 0
    assert store.non_final_jobs() == []


def test_non_final_jobs_are_what_a_restarted_daemon_reconciles(store: Store) -> None:
    experiment = _experiment(store)
    _add(store, experiment.id, "r1")
    _add(store, experiment.id, "r2")
    store.apply_observations(
        [JobObservation(JobKey(experiment.id, 1, "main"), pb.JOB_STATE_SUCCEEDED, exit_code=0)]
    )
    (key, job), *rest = store.non_final_jobs()
    assert rest == []
    assert key == JobKey(experiment.id, 2, "main")
    assert job.status.state == pb.JOB_STATE_PENDING
    assert store.experiment_ids_with_active_work() == [experiment.id]


def test_a_failed_transaction_leaves_nothing_half_written(store: Store) -> None:
    """An error in the middle of a batch rolls the whole batch back."""
    experiment = _experiment(store)
    _add(store, experiment.id, "r1")
    before = _counts(store)
    jobs_before = store.get_work_unit(experiment.id, 1)
    sqlalchemy.event.listen(store._engine, "before_cursor_execute", _raise_on_event_insert)
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            store.apply_observations(
                [JobObservation(JobKey(experiment.id, 1, "main"), pb.JOB_STATE_RUNNING)]
            )
        with pytest.raises(RuntimeError, match="simulated"):
            _add(store, experiment.id, "r2")
    finally:
        sqlalchemy.event.remove(store._engine, "before_cursor_execute", _raise_on_event_insert)
    assert _counts(store) == before
    assert store.get_work_unit(experiment.id, 1) == jobs_before


def _raise_on_event_insert(*event_args: object) -> None:
    """Fails every INSERT into the events table: the last write of each transaction."""
    statement = str(event_args[2])  # (connection, cursor, statement, parameters, ...)
    if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
        raise RuntimeError("simulated failure while appending an event")


def test_one_daemon_writes_a_database_at_a_time(store: Store, store_url: str) -> None:
    with pytest.raises(StoreInUseError, match="another launcher daemon is using the database"):
        Store.open(store_url)
    store.close()
    Store.open(store_url).close()  # released with the first one


def test_events_are_numbered_without_gaps_in_commit_order(store: Store) -> None:
    experiment = _experiment(store)
    for i in range(3):
        _add(store, experiment.id, f"r{i}")
    store.apply_observations(
        [JobObservation(JobKey(experiment.id, i, "main"), pb.JOB_STATE_RUNNING) for i in (1, 2, 3)]
    )
    sequences = [event.sequence for event in store.events_after(0)]
    assert sequences == list(range(1, len(sequences) + 1))
    assert store.last_event_sequence() == sequences[-1]


def test_the_head_revision_constant_names_the_newest_migration() -> None:
    assert migrate.head_revision() == migrate.HEAD
