"""The daemon's read process: it serves the plain reads, always what the store has committed,
ends with the daemon, and clients fall back to the daemon without it."""

from __future__ import annotations

import mmap
import os
import signal
import socket
import stat
import time
import uuid
from pathlib import Path

import grpc
import pytest

from launcher_server import read_process
from launcher_server.read_process import ReadProcess
from tests.support.daemon import DaemonHandle, local_job, make_executable
from xmanager.client import daemon_process
from xmanager.client.connection import READ_METHODS
from xmanager.launcher.contract import READ_PROCESS_CAPABILITY
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.launcher.v1 import launcher_pb2_grpc as pb_grpc

_FINAL = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)


def _read_process_pid(daemon: DaemonHandle, timeout: float = 10) -> int:
    """The daemon's child serving reads.sock, once it serves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.state.reads_socket.exists():
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == daemon.pid:
                    cmdline = (proc / "cmdline").read_bytes()
                    if b"launcher_server" in cmdline and b"supervisor" not in cmdline:
                        return int(proc.name)
        time.sleep(0.05)
    raise TimeoutError("no read process")


def _experiment_with_unit(daemon: DaemonHandle, tmp_path: Path) -> tuple[int, int]:
    stub = daemon.client.stub
    experiment_id = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="reads"))
    ).id
    unit = stub.AddWorkUnit(
        pb.AddWorkUnitRequest(
            experiment_id=experiment_id,
            request_id=str(uuid.uuid4()),
            jobs=[local_job("main", "/bin/true")],
        )
    )
    return experiment_id, unit.work_unit_id


def test_the_read_process_answers_the_reads_while_the_daemon_is_frozen(
    daemon: DaemonHandle, tmp_path: Path
) -> None:
    experiment_id, work_unit_id = _experiment_with_unit(daemon, tmp_path)
    stub = daemon.client.stub
    _read_process_pid(daemon)
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        got = stub.GetWorkUnit(
            pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id),
            timeout=5,
        )
        assert got.work_unit_id == work_unit_id
        listed = stub.ListWorkUnits(pb.ListWorkUnitsRequest(experiment_id=experiment_id), timeout=5)
        assert [u.work_unit_id for u in listed.work_units] == [work_unit_id]
        assert (
            stub.GetExperiment(
                pb.GetExperimentRequest(experiment_id=experiment_id), timeout=5
            ).title
            == "reads"
        )
        experiments = stub.ListExperiments(pb.ListExperimentsRequest(), timeout=5).experiments
        assert [e.id for e in experiments] == [experiment_id]
        # Validation is the daemon's: the same errors, from the read process.
        with pytest.raises(grpc.RpcError) as error:
            stub.GetWorkUnit(pb.GetWorkUnitRequest(experiment_id=experiment_id), timeout=5)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as error:
            stub.GetExperiment(pb.GetExperimentRequest(experiment_id=999), timeout=5)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        os.kill(daemon.pid, signal.SIGCONT)


def test_the_read_process_serves_exactly_the_routed_reads(daemon: DaemonHandle) -> None:
    _read_process_pid(daemon)
    assert READ_PROCESS_CAPABILITY in daemon.client.server_info.capabilities
    assert stat.S_IMODE(daemon.state.reads_socket.stat().st_mode) == 0o600
    channel = grpc.insecure_channel(f"unix:{daemon.state.reads_socket}")
    try:
        stub = pb_grpc.LauncherStub(channel)
        missing = {
            "GetExperiment": pb.GetExperimentRequest(experiment_id=1),
            "GetWorkUnit": pb.GetWorkUnitRequest(experiment_id=1, work_unit_id=1),
            "ListWorkUnits": pb.ListWorkUnitsRequest(experiment_id=1),
        }
        assert set(READ_METHODS) == {*missing, "ListExperiments"}
        for name, request in missing.items():  # what the client sends there, it serves
            with pytest.raises(grpc.RpcError) as error:
                getattr(stub, name)(request, timeout=5)
            assert error.value.code() == grpc.StatusCode.NOT_FOUND, name
        listed = stub.ListExperiments(pb.ListExperimentsRequest(), timeout=5)
        assert not listed.experiments
        with pytest.raises(grpc.RpcError) as error:  # and nothing else
            stub.CreateExperiment(pb.CreateExperimentRequest(), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        channel.close()


def test_a_client_reads_every_change_at_once(daemon: DaemonHandle, tmp_path: Path) -> None:
    """Units are cached in the read process; a change the daemon made is never read stale,
    however soon the read follows it."""
    stub = daemon.client.stub
    _read_process_pid(daemon)
    gate = tmp_path / "go"
    job = make_executable(
        tmp_path / "job.sh", f"#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.02; done\n"
    )
    experiment_id = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="fresh"))
    ).id
    watch = stub.WatchWorkUnits(pb.WatchWorkUnitsRequest(experiment_id=experiment_id), timeout=60)
    ids = [
        stub.AddWorkUnit(
            pb.AddWorkUnitRequest(
                experiment_id=experiment_id,
                request_id=str(uuid.uuid4()),
                jobs=[local_job("main", job)],
            )
        ).work_unit_id
        for _ in range(5)
    ]
    for work_unit_id in ids:  # read, so cached
        request = pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id)
        assert stub.GetWorkUnit(request).status.state not in _FINAL
    listing = pb.ListWorkUnitsRequest(experiment_id=experiment_id)
    assert all(u.status.state not in _FINAL for u in stub.ListWorkUnits(listing).work_units)
    gate.touch()
    final: set[int] = set()
    for response in watch:
        for update in response.updates:
            unit = update.work_unit
            if unit.status.state not in _FINAL:
                continue
            final.add(unit.work_unit_id)
            # The watch saw it final: so does a read sent right now.
            request = pb.GetWorkUnitRequest(
                experiment_id=experiment_id, work_unit_id=unit.work_unit_id
            )
            assert stub.GetWorkUnit(request).status.state == unit.status.state
            listed = {u.work_unit_id: u for u in stub.ListWorkUnits(listing).work_units}
            assert listed[unit.work_unit_id].status.state == unit.status.state
        if final == set(ids):
            break
    watch.cancel()
    # A deleted experiment's units are gone from the read process's memory too.
    stub.DeleteExperiment(pb.DeleteExperimentRequest(experiment_id=experiment_id))
    with pytest.raises(grpc.RpcError) as error:
        stub.GetWorkUnit(pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=ids[0]))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_read_process_ends_with_the_daemon_however_it_ends(state_dir: Path) -> None:
    killed = DaemonHandle(state_dir, [])
    killed.start()
    reader = _read_process_pid(killed)
    killed.kill()
    deadline = time.monotonic() + 10
    while daemon_process.alive(reader):
        assert time.monotonic() < deadline, "the read process outlived a killed daemon"
        time.sleep(0.02)
    # The next daemon starts at once (nothing of the old one holds the state directory), and
    # has a read process of its own.
    again = DaemonHandle(state_dir, [])
    again.start()
    try:
        second = _read_process_pid(again)
        assert second != reader
        again.stop()
        assert not daemon_process.alive(second)
        assert not again.state.reads_socket.exists()
    finally:
        again.stop()


def test_reads_go_to_the_daemon_when_the_read_process_is_gone(
    daemon: DaemonHandle, tmp_path: Path
) -> None:
    experiment_id, work_unit_id = _experiment_with_unit(daemon, tmp_path)
    reader = _read_process_pid(daemon)
    os.kill(reader, signal.SIGKILL)
    request = pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id)
    for _ in range(20):  # the socket is still there, nobody listens
        assert daemon.client.stub.GetWorkUnit(request, timeout=5).work_unit_id == work_unit_id
    unit, call = daemon.client.stub.GetWorkUnit.with_call(request, timeout=5)
    assert unit.work_unit_id == work_unit_id
    assert call.code() == grpc.StatusCode.OK
    deadline = time.monotonic() + 10
    while "the daemon serves reads itself" not in daemon.state.log.read_text():
        assert time.monotonic() < deadline, "the daemon did not notice"
        time.sleep(0.05)
    assert daemon_process.alive(daemon.pid)


def test_a_daemon_without_read_process_serves_the_reads(state_dir: Path) -> None:
    daemon = DaemonHandle(state_dir, ["--noread_process"])
    daemon.start()
    # Its clients do not even try the read socket: it says it has no read process.
    assert READ_PROCESS_CAPABILITY not in daemon.client.server_info.capabilities
    assert not daemon.state.reads_socket.exists()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(daemon.state.reads_socket))
    listener.listen()
    listener.setblocking(False)
    try:
        stub = daemon.client.stub
        experiment_id = stub.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(title="alone"))
        ).id
        for _ in range(3):
            assert stub.GetExperiment(pb.GetExperimentRequest(experiment_id=experiment_id)).id
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()
        daemon.state.reads_socket.unlink(missing_ok=True)
        daemon.stop()


def test_a_full_pipe_makes_the_read_process_drop_everything() -> None:
    """The daemon never waits for its read process: when the pipe is full, it counts an
    overflow, and the read process empties its cache rather than keep a stale unit."""
    read_end, write_end = os.pipe()
    overflows = mmap.mmap(-1, 8)
    os.set_blocking(write_end, False)
    daemon_side = ReadProcess(0, write_end, overflows)
    daemon_side._serving = True  # as after serve(): no process to write the URL to here
    cache = read_process._FollowedUnits(read_end, overflows)
    try:
        unit = pb.WorkUnit(experiment_id=1, work_unit_id=1)
        cache.put((1, 1), unit, cache.generation)
        cache.put((1, 2), unit, cache.generation)
        daemon_side.units_changed([(1, 1)])
        assert cache.get((1, 1)) is None  # dropped
        assert cache.get((1, 2)) is not None  # kept
        # Fill the pipe without the read process reading, then one more change.
        keys = [(2, n) for n in range(200_000)]
        daemon_side.units_changed(keys)
        assert cache.catch_up()
        assert cache.get((1, 2)) is None  # everything dropped
        cache.put((1, 2), unit, cache.generation)
        assert cache.get((1, 2)) is not None  # and it works on
    finally:
        os.close(write_end)
        os.close(read_end)
