"""Requests a client should not send: each gets a precise error (never INTERNAL), and none
breaks the daemon for other clients. One test per defect of the reliability review."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from launcher_server import limits
from tests.support.daemon import (
    DaemonHandle,
    add_work_units,
    list_work_units,
    local_job,
    make_executable,
)
from xmanager.launcher.v1 import launcher_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
_SERVICE = "/xmanager.launcher.v1.Launcher/"


def _call(call: object, *args: object) -> None:
    result = call(*args, timeout=30)  # type: ignore[operator]
    if isinstance(result, Iterator):
        list(result)


def _refused(call: object, *args: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        _call(call, *args)
    return refused.value


def _experiment(daemon: DaemonHandle, title: str = "target", **fields: object) -> int:
    experiment = pb.Experiment(title=title, **fields)  # type: ignore[arg-type]
    created = daemon.client.stub.CreateExperiment(pb.CreateExperimentRequest(experiment=experiment))
    return int(created.id)


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_executable(tmp_path_factory.mktemp("bin") / "ok.sh", "#!/bin/sh\nexit 0\n")


def _unit(
    experiment_id: int, binary: Path, request_id: str, work_unit_id: int = 0
) -> pb.AddWorkUnitRequest:
    return pb.AddWorkUnitRequest(
        experiment_id=experiment_id,
        request_id=request_id,
        work_unit_id=work_unit_id,
        jobs=[local_job("main", binary)],
    )


def _raw_channel(daemon: DaemonHandle) -> grpc.Channel:
    """A channel that sends bytes as given: what a broken or hostile client sends."""
    return grpc.insecure_channel(f"unix:{daemon.state.socket}")


# -- work unit ids (defects 4 and 9) ---------------------------------------------------------


def test_work_unit_ids_in_any_order_within_and_across_batches(
    shared_daemon: DaemonHandle, binary: Path
) -> None:
    experiment_id = _experiment(shared_daemon)
    stub = shared_daemon.client.stub

    def messages() -> Iterator[pb.AddWorkUnitsRequest]:
        yield pb.AddWorkUnitsRequest(requests=[_unit(experiment_id, binary, "a", 50)])
        # Below the last id, as a slower generator's units arrive after a faster one's.
        yield pb.AddWorkUnitsRequest(requests=[_unit(experiment_id, binary, "b", 30)])
        yield pb.AddWorkUnitsRequest(
            requests=[_unit(experiment_id, binary, f"c{i}", i) for i in (9, 7, 8)]
        )

    results = [r for response in stub.AddWorkUnits(messages()) for r in response.results]
    assert [r.error_message for r in results] == [""] * 5
    # A second stream, still below the highest id; then one numbered by the daemon.
    (later,) = add_work_units(shared_daemon.client, [_unit(experiment_id, binary, "d", 20)])
    assert not later.error_message
    automatic = stub.AddWorkUnit(_unit(experiment_id, binary, "e"))
    assert automatic.work_unit_id == 51
    ids = [u.work_unit_id for u in list_work_units(shared_daemon.client, experiment_id)]
    assert ids == [7, 8, 9, 20, 30, 50, 51]
    for work_unit_id in ids:
        unit = stub.GetWorkUnit(
            pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id)
        )
        assert unit.work_unit_id == work_unit_id


@pytest.mark.parametrize("work_unit_id", [-5, -(1 << 63), (1 << 63) - 1, limits.MAX_ID + 1])
def test_out_of_range_work_unit_ids_are_refused_alone_or_batched(
    shared_daemon: DaemonHandle, binary: Path, work_unit_id: int
) -> None:
    experiment_id = _experiment(shared_daemon)
    request = _unit(experiment_id, binary, f"bad{work_unit_id}", work_unit_id)
    error = _refused(shared_daemon.client.stub.AddWorkUnit, request)
    assert error.code() == INVALID, error.details()
    assert "work_unit_id" in (error.details() or "")
    good = _unit(experiment_id, binary, f"good{experiment_id}")
    bad, ok = add_work_units(shared_daemon.client, [request, good])
    assert bad.error_code == INVALID.value[0], bad.error_message
    assert "work_unit_id" in bad.error_message
    assert not ok.error_message
    assert [u.work_unit_id for u in list_work_units(shared_daemon.client, experiment_id)] == [1]


# -- grace periods (defect 3) ----------------------------------------------------------------


@pytest.mark.parametrize("grace", [-1, limits.MAX_GRACE_SECONDS + 1, (1 << 31) - 1])
def test_grace_period_beyond_a_day_is_refused(
    shared_daemon: DaemonHandle, binary: Path, grace: int
) -> None:
    experiment_id = _experiment(shared_daemon)
    stub = shared_daemon.client.stub
    stub.AddWorkUnit(_unit(experiment_id, binary, f"g{experiment_id}"))
    for call, request in [
        (
            stub.CancelWorkUnit,
            pb.CancelWorkUnitRequest(
                experiment_id=experiment_id, work_unit_id=1, grace_period_seconds=grace
            ),
        ),
        (
            stub.CancelExperiment,
            pb.CancelExperimentRequest(experiment_id=experiment_id, grace_period_seconds=grace),
        ),
    ]:
        error = _refused(call, request)
        assert error.code() == INVALID
        assert "grace_period_seconds" in (error.details() or "")
        assert "86400" in (error.details() or "")


def test_daemon_refuses_a_default_grace_period_beyond_a_day(state_dir: Path) -> None:
    from xmanager.client import daemon_process

    handle = DaemonHandle(state_dir, ["--grace_period_seconds=3000000"])
    with pytest.raises(daemon_process.DaemonStartError) as refused:
        handle.start()
    assert "grace_period_seconds" in str(refused.value)


def test_supervisor_waits_at_most_an_hour_whatever_its_timers(tmp_path: Path) -> None:
    import selectors

    from launcher_server.backends.local import records, supervisor

    loop = supervisor.Supervisor(tmp_path)
    # 30 days: beyond what select() takes (a C int of milliseconds, 24.8 days).
    loop._timers.append((time.monotonic() + 30 * 86400, 1))
    timeout = loop._timeout()
    assert timeout is not None
    assert timeout <= 3600
    with selectors.DefaultSelector() as selector:
        selector.select(timeout=0 if timeout is None else min(timeout, 0.01))
    # Whatever a cancel request holds, its grace is a timer the loop can hold.
    for written in ("1e400", "NaN", "-5", '"soon"'):
        (tmp_path / records.CANCEL).write_text(f'{{"grace_seconds": {written}}}')
        grace = records.read_cancel_grace(tmp_path)
        assert grace is not None
        assert 0 <= grace < float("inf")


# -- strings (defects 5 and 8) ----------------------------------------------------------------

_EXPERIMENT_STRING_FIELDS = ["title", "creator", "launch_script_path", "source_revision", "notes"]


@pytest.mark.parametrize("field", _EXPERIMENT_STRING_FIELDS)
def test_nul_in_any_experiment_string_is_refused(shared_daemon: DaemonHandle, field: str) -> None:
    experiment = pb.Experiment(title="t")
    setattr(experiment, field, "bad\x00value")
    error = _refused(
        shared_daemon.client.stub.CreateExperiment,
        pb.CreateExperimentRequest(experiment=experiment),
    )
    assert error.code() == INVALID
    assert f"experiment.{field}" in (error.details() or "")
    assert "NUL" in (error.details() or "")


@pytest.mark.parametrize("field", ["creator", "source_revision", "launch_script_path"])
def test_megabytes_in_a_short_field_are_refused(shared_daemon: DaemonHandle, field: str) -> None:
    experiment = pb.Experiment(title="t")
    setattr(experiment, field, "x" * (8 * 1024 * 1024))
    error = _refused(
        shared_daemon.client.stub.CreateExperiment,
        pb.CreateExperimentRequest(experiment=experiment),
    )
    assert error.code() == INVALID
    assert f"experiment.{field}: is {8 * 1024 * 1024} characters long" in (error.details() or "")
    shared_daemon.client.stub.ListExperiments(pb.ListExperimentsRequest())


def test_nul_in_a_cancel_reason_is_refused_and_recording_goes_on(
    shared_daemon: DaemonHandle, binary: Path
) -> None:
    experiment_id = _experiment(shared_daemon)
    stub = shared_daemon.client.stub
    stub.AddWorkUnit(_unit(experiment_id, binary, "r"))
    for call, request in [
        (
            stub.CancelWorkUnit,
            pb.CancelWorkUnitRequest(experiment_id=experiment_id, work_unit_id=1, reason="a\x00b"),
        ),
        (
            stub.CancelExperiment,
            pb.CancelExperimentRequest(experiment_id=experiment_id, reason="a\x00b"),
        ),
    ]:
        error = _refused(call, request)
        assert error.code() == INVALID
        assert "reason" in (error.details() or "")
    shared_daemon.wait_all_final(experiment_id, 1, timeout=30)


def test_invalid_utf8_is_invalid_argument_not_internal(shared_daemon: DaemonHandle) -> None:
    # CreateExperimentRequest{experiment{title: b"\xff"}}: field 1 (message), field 2 (string).
    raw = b"\x0a\x03\x12\x01\xff"
    with _raw_channel(shared_daemon) as channel:
        call = channel.unary_unary(_SERVICE + "CreateExperiment", None, None)
        error = _refused(call, raw)
        garbage = _refused(call, b"\xff\xff\xff\xff")
    assert error.code() == INVALID, error.details()
    assert garbage.code() == INVALID, garbage.details()


# -- other hostile values (defect 10) ---------------------------------------------------------


def test_numbers_beyond_int64_or_the_id_range_are_invalid_argument(
    shared_daemon: DaemonHandle, binary: Path
) -> None:
    experiment_id = _experiment(shared_daemon)
    stub = shared_daemon.client.stub
    stub.AddWorkUnit(_unit(experiment_id, binary, "n"))
    huge_token = base64.urlsafe_b64encode(str(1 << 70).encode()).decode()
    cases: list[tuple[object, object, str]] = [
        (stub.ListExperiments, pb.ListExperimentsRequest(page_token=huge_token), "page_token"),
        (
            stub.ListWorkUnits,
            pb.ListWorkUnitsRequest(experiment_id=experiment_id, page_token=huge_token),
            "page_token",
        ),
        (
            stub.ListExperiments,
            pb.ListExperimentsRequest(page_token=base64.urlsafe_b64encode(b"-3").decode()),
            "page_token",
        ),
        (
            stub.StreamLogs,
            pb.StreamLogsRequest(experiment_id=experiment_id, work_unit_id=1, offset=(1 << 63) - 1),
            "offset",
        ),
        (
            stub.StreamLogs,
            pb.StreamLogsRequest(experiment_id=experiment_id, work_unit_id=1, offset=-(1 << 63)),
            "offset",
        ),
        (stub.GetExperiment, pb.GetExperimentRequest(experiment_id=(1 << 63) - 1), "id"),
        (stub.WatchWorkUnits, pb.WatchWorkUnitsRequest(after_sequence=-1), "after_sequence"),
        (stub.WatchWorkUnits, pb.WatchWorkUnitsRequest(experiment_id=-1), "experiment_id"),
    ]
    for call, request, field in cases:
        error = _refused(call, request)
        assert error.code() == INVALID, (request, error.details())
        assert field in (error.details() or ""), error.details()


def test_watch_beyond_the_last_event_is_out_of_range(shared_daemon: DaemonHandle) -> None:
    error = _refused(
        shared_daemon.client.stub.WatchWorkUnits,
        pb.WatchWorkUnitsRequest(after_sequence=limits.MAX_ID),
    )
    assert error.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "after_sequence" in (error.details() or "")


# -- smaller ones (defect 11) -------------------------------------------------------------------


def test_title_contains_takes_percent_and_underscore_literally(
    shared_daemon: DaemonHandle,
) -> None:
    _experiment(shared_daemon, "lr_0.1 at 50% width")
    _experiment(shared_daemon, "lrX0.1 at 50 width")
    stub = shared_daemon.client.stub
    for text in ("lr_0", "50%", "%", "_0.1"):
        titles = [
            e.title
            for e in stub.ListExperiments(
                pb.ListExperimentsRequest(title_contains=text, page_size=1000)
            ).experiments
        ]
        assert titles == ["lr_0.1 at 50% width"], (text, titles)


def test_a_client_cannot_set_the_log_location(shared_daemon: DaemonHandle, binary: Path) -> None:
    experiment_id = _experiment(shared_daemon)
    job = local_job("main", binary)
    job.log_location = "/etc/passwd"
    unit = shared_daemon.client.stub.AddWorkUnit(
        pb.AddWorkUnitRequest(experiment_id=experiment_id, request_id="loc", jobs=[job])
    )
    assert unit.jobs[0].log_location.startswith(str(shared_daemon.state.jobs))


# -- list responses and deletion (defect 8) --------------------------------------------------


def test_list_pages_end_at_their_byte_budget(shared_daemon: DaemonHandle) -> None:
    notes = "n" * (limits.LONG_TEXT_CHARS - 10)
    created = {_experiment(shared_daemon, "big", notes=notes) for _ in range(6)}
    stub = shared_daemon.client.stub
    seen: list[int] = []
    token = ""
    pages = 0
    while True:
        page = stub.ListExperiments(pb.ListExperimentsRequest(page_size=1000, page_token=token))
        assert page.ByteSize() <= limits.MAX_RESPONSE_BYTES + limits.LONG_TEXT_CHARS * 2
        seen.extend(e.id for e in page.experiments)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert created <= set(seen)
    assert len(seen) == len(set(seen))
    assert pages >= 2


def test_delete_experiment(shared_daemon: DaemonHandle, binary: Path, tmp_path: Path) -> None:
    stub = shared_daemon.client.stub
    experiment_id = _experiment(shared_daemon, "to delete")
    stub.AddWorkUnit(_unit(experiment_id, binary, "del1"))
    shared_daemon.wait_all_final(experiment_id, 1)
    sleeper = make_executable(tmp_path / "sleep.sh", "#!/bin/sh\nexec sleep 60\n")
    busy = _experiment(shared_daemon, "busy")
    stub.AddWorkUnit(_unit(busy, sleeper, "busy1"))

    error = _refused(stub.DeleteExperiment, pb.DeleteExperimentRequest(experiment_id=busy))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not final" in (error.details() or "")
    deleted = stub.DeleteExperiment(pb.DeleteExperimentRequest(experiment_id=experiment_id))
    assert deleted.deleted_work_units == 1
    for call, request in [
        (stub.GetExperiment, pb.GetExperimentRequest(experiment_id=experiment_id)),
        (stub.GetWorkUnit, pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=1)),
        (stub.DeleteExperiment, pb.DeleteExperimentRequest(experiment_id=experiment_id)),
    ]:
        assert _refused(call, request).code() == grpc.StatusCode.NOT_FOUND
    stub.GetExperiment(pb.GetExperimentRequest(experiment_id=busy))
    stub.CancelExperiment(pb.CancelExperimentRequest(experiment_id=busy))
    shared_daemon.wait_all_final(busy, 1)
