"""Property-based fuzzing of every RPC of a live daemon, on SQLite and on PostgreSQL.

Requests are generated from the contract's descriptors (tests/reliability/contract_strategies)
and sent as bytes, some of them corrupted. Whatever arrives: never INTERNAL (or UNKNOWN), never
a hang, the store consistent afterwards, and the experiments that existed before unchanged.

XM_FUZZ_EXAMPLES sets the number of examples per store (default 200; thousands for a long run).
"""

from __future__ import annotations

import collections
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import temporary_state_dir
from tests.reliability.contract_strategies import SERVICE, wire_bytes
from tests.support.daemon import DaemonHandle, list_work_units, local_job
from xmanager.launcher.v1 import launcher_pb2 as pb

EXAMPLES = int(os.environ.get("XM_FUZZ_EXAMPLES", "200"))
# Calls that may legitimately stay open (live updates): their deadline is not a hang.
_OPEN_ENDED = {"WatchWorkUnits", "StreamLogs"}
_MUTATING = {
    "UpdateExperiment",
    "AddWorkUnit",
    "AddWorkUnits",
    "CancelWorkUnit",
    "CancelExperiment",
    "DeleteExperiment",
}
_BAD_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
_UNARY_DEADLINE = 30.0
_STREAM_DEADLINE = 2.0


class FuzzTarget:
    def __init__(self, daemon: DaemonHandle, store: str) -> None:
        self.daemon = daemon
        self.store = store
        self.channel = grpc.insecure_channel(f"unix:{daemon.state.socket}")
        self.protected: dict[int, tuple[pb.Experiment, list[pb.WorkUnit]]] = {}
        self.codes: collections.Counter[str] = collections.Counter()
        self.examples = 0

    def snapshot(self, experiment_id: int) -> tuple[pb.Experiment, list[pb.WorkUnit]]:
        stub = self.daemon.client.stub
        experiment = stub.GetExperiment(pb.GetExperimentRequest(experiment_id=experiment_id))
        return experiment, list_work_units(self.daemon.client, experiment_id)


def _seed(target: FuzzTarget) -> None:
    """Experiments that must come through unchanged, and some the fuzzer may change."""
    stub = target.daemon.client.stub
    for title in ("protected one", "protected two", "open one", "open two"):
        experiment = stub.CreateExperiment(
            pb.CreateExperimentRequest(
                experiment=pb.Experiment(title=title, tags=["keep"], creator="fuzz")
            )
        )
        for i in range(3):
            stub.AddWorkUnit(
                pb.AddWorkUnitRequest(
                    experiment_id=experiment.id,
                    request_id=f"seed-{target.store}-{experiment.id}-{i}",
                    args_json=json.dumps({"i": i}),
                    jobs=[local_job("main", "/bin/true")],
                )
            )
        target.daemon.wait_all_final(experiment.id, 3)
        if title.startswith("protected"):
            target.protected[experiment.id] = target.snapshot(experiment.id)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest) -> Iterator[FuzzTarget]:
    # No container engine: container jobs are refused at once, not pulled from nowhere.
    flags = ["--grace_period_seconds=1", "--docker_host=unix:///nonexistent/docker.sock"]
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        flags.append(f"--db_url={server.create_database()}")
    with temporary_state_dir() as path:
        handle = DaemonHandle(path, flags)
        handle.start()
        fuzz = FuzzTarget(handle, request.param)
        try:
            _seed(fuzz)
            yield fuzz
            _check_afterwards(fuzz)
        finally:
            fuzz.channel.close()
            handle.stop()


def _ids_of(message: _message.Message) -> Iterator[tuple[_message.Message, str]]:
    """Every (message, field) holding an experiment id, nested ones included."""
    for field, value in message.ListFields():
        if field.name == "experiment_id":
            yield message, field.name
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in value if field.is_repeated else [value]:
                yield from _ids_of(item)


def _spare_protected(
    target: FuzzTarget, method: _descriptor.MethodDescriptor, data: bytes
) -> bytes:
    """Points a mutation of a protected experiment at another one (reads may touch them)."""
    if method.name not in _MUTATING:
        return data
    message_class = getattr(pb, method.input_type.name)
    try:
        message = message_class.FromString(data)
    except Exception:
        return data  # does not parse: the daemon refuses it whatever ids it holds
    changed = False
    for holder, name in _ids_of(message):
        if getattr(holder, name) in target.protected:
            setattr(holder, name, max(target.protected) + 1)
            changed = True
    return message.SerializeToString() if changed else data


def _call(target: FuzzTarget, method: _descriptor.MethodDescriptor, datas: list[bytes]) -> str:
    path = f"/{SERVICE.full_name}/{method.name}"
    channel = target.channel
    deadline = _STREAM_DEADLINE if method.server_streaming else _UNARY_DEADLINE
    try:
        if method.client_streaming:
            responses = channel.stream_stream(path, None, None)(iter(datas), timeout=deadline)
            for _ in responses:
                pass
        elif method.server_streaming:
            for i, _ in enumerate(
                channel.unary_stream(path, None, None)(datas[0], timeout=deadline)
            ):
                if i > 1000:
                    break
        else:
            channel.unary_unary(path, None, None)(datas[0], timeout=deadline)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        details = error.details()
        assert code not in _BAD_CODES, f"{method.name}: {code.name}: {details}"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            assert method.name in _OPEN_ENDED, f"{method.name} hung: {details}"
        return str(code.name)
    return "OK"


@st.composite
def _requests(draw: st.DrawFn) -> tuple[_descriptor.MethodDescriptor, list[bytes]]:
    method = draw(st.sampled_from(list(SERVICE.methods)))
    count = draw(st.integers(1, 3)) if method.client_streaming else 1
    return method, [draw(wire_bytes(method.input_type)) for _ in range(count)]


@pytest.mark.slow
@pytest.mark.timeout(120 + EXAMPLES)
def test_no_request_gets_internal_or_hangs_or_changes_others(target: FuzzTarget) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_requests())
    def one(request: tuple[_descriptor.MethodDescriptor, list[bytes]]) -> None:
        method, datas = request
        datas = [_spare_protected(target, method, data) for data in datas]
        outcome = _call(target, method, datas)
        target.codes[f"{method.name} {outcome}"] += 1
        target.examples += 1

    started = time.monotonic()
    one()
    took = time.monotonic() - started
    internal = sum(n for key, n in target.codes.items() if key.split()[-1] in ("INTERNAL",))
    print(
        f"\nfuzz[{target.store}]: {target.examples} examples in {took:.0f} s, "
        f"{internal} INTERNAL; outcomes: {dict(sorted(target.codes.items()))}"
    )


def _check_afterwards(target: FuzzTarget) -> None:
    """The daemon still answers, its store is consistent, protected experiments unchanged."""
    stub = target.daemon.client.stub
    for experiment_id, before in target.protected.items():
        assert target.snapshot(experiment_id) == before, f"experiment {experiment_id} changed"
    token = ""
    while True:
        page = stub.ListExperiments(pb.ListExperimentsRequest(page_size=1000, page_token=token))
        for experiment in page.experiments:
            units = list_work_units(target.daemon.client, experiment.id)
            assert len(units) == experiment.work_unit_count, experiment.id
            assert sum(experiment.work_unit_state_counts.values()) == len(units)
            for unit in units[:20]:
                got = stub.GetWorkUnit(
                    pb.GetWorkUnitRequest(
                        experiment_id=experiment.id, work_unit_id=unit.work_unit_id
                    )
                )
                assert got.work_unit_id == unit.work_unit_id
        token = page.next_page_token
        if not token:
            break
    if target.store == "sqlite":
        database = Path(target.daemon.state.database)
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    log = target.daemon.state.log.read_text(errors="replace")
    assert "internal error" not in log
    assert "ERROR launcher_server.service" not in log, log[-5000:]
