"""Crash loops: kill -9 of the daemon, of the job supervisor and of the submitting client at
random points of a sweep; every job starts exactly once, every exit code is right, no unit is
lost and every cancel is honoured.

Each job appends its work unit id to a file when it starts, so starts are counted by the jobs
themselves. XM_CRASH_ITERATIONS sets the number of iterations (5 by default, more by hand).
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.reliability.conftest import temporary_state_dir as _state_dir
from tests.support.daemon import DaemonHandle, list_work_units, local_job, make_executable
from tests.support.postgres import PostgresServer
from xmanager.launcher.v1 import launcher_pb2 as pb

ITERATIONS = int(os.environ.get("XM_CRASH_ITERATIONS", "5"))
UNITS = 200
# Units whose job sleeps long and is cancelled mid-sweep.
CANCELLED = frozenset(range(7, UNITS + 1, 40))
FLAGS = ["--grace_period_seconds=1", "--max_running_jobs=16"]

JOB = """#!/bin/sh
echo "$XM_WORK_UNIT_ID" >> "$1"
sleep "$2"
exit "$3"
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db_flags(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "sqlite":
        return []
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return [f"--db_url={server.create_database()}"]


@pytest.fixture
def state() -> Iterator[Path]:
    with _state_dir() as path:
        yield path


def _exit_code(unit: int) -> int:
    return 3 if unit % 3 == 0 else 0


def _requests(
    experiment_id: int, job: Path, starts: Path, seed: int
) -> list[pb.AddWorkUnitRequest]:
    rng = random.Random(seed)
    requests = []
    for unit in range(1, UNITS + 1):
        sleep = "30" if unit in CANCELLED else f"{rng.uniform(0, 0.3):.2f}"
        requests.append(
            pb.AddWorkUnitRequest(
                experiment_id=experiment_id,
                work_unit_id=unit,
                request_id=f"crash-{seed}-{unit}",
                jobs=[local_job("main", job, str(starts), sleep, str(_exit_code(unit)))],
            )
        )
    return requests


def _submit(daemon: DaemonHandle, requests: list[pb.AddWorkUnitRequest]) -> None:
    """Adds every request, retrying through daemon kills (request ids make retries safe)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            stream = daemon.client.stub.AddWorkUnits(
                iter(
                    [
                        pb.AddWorkUnitsRequest(requests=requests[i : i + 20])
                        for i in range(0, UNITS, 20)
                    ]
                )
            )
            results = [r for response in stream for r in response.results]
            assert all(not r.error_code for r in results), [r.error_message for r in results]
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _cancel_all(daemon: DaemonHandle, experiment_id: int) -> None:
    for unit in sorted(CANCELLED):
        while True:
            try:
                daemon.client.stub.CancelWorkUnit(
                    pb.CancelWorkUnitRequest(
                        experiment_id=experiment_id, work_unit_id=unit, reason="crash test"
                    )
                )
                break
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    time.sleep(0.05)  # not added yet
                    continue
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                time.sleep(0.1)


def _wait_final(daemon: DaemonHandle, experiment_id: int) -> list[pb.WorkUnit]:
    deadline = time.monotonic() + 180
    while True:
        try:
            units = list_work_units(daemon.client, experiment_id)
            if len(units) == UNITS and all(u.status.state in _FINAL for u in units):
                return units
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, "the sweep did not finish"
        time.sleep(0.1)


_FINAL = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED, pb.JOB_STATE_LOST}


def _starts(path: Path) -> collections.Counter[int]:
    if not path.exists():
        return collections.Counter()
    return collections.Counter(int(line) for line in path.read_text().split())


def _supervisors(state: Path) -> list[int]:
    marker = f"--run_dir={state}/run".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"supervisor" in cmdline and marker in cmdline:
                pids.append(int(proc.name))
    return pids


def _run_iteration(
    state: Path, work: Path, db_flags: list[str], seed: int, killer: str
) -> tuple[collections.Counter[int], list[pb.WorkUnit], int]:
    rng = random.Random(seed)
    # Outside the state directory, which the daemon keeps private (0600 files).
    job = make_executable(work / "job.sh", JOB)
    starts = work / f"starts-{seed}"
    daemon = DaemonHandle(state, [*FLAGS, *db_flags])
    daemon.start()
    experiment = daemon.client.stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title=f"crash {seed}"))
    )
    requests = _requests(experiment.id, job, starts, seed)
    kills = 0
    stop = threading.Event()

    def kill_loop() -> None:
        nonlocal kills
        while not stop.wait(rng.uniform(0.1, 0.7)):
            if killer == "daemon":
                daemon.kill()
                daemon.start()
                kills += 1
            else:
                for pid in _supervisors(state):
                    os.kill(pid, signal.SIGKILL)
                    kills += 1

    if killer == "client":
        _submit_with_client_kills(daemon, state, requests, rng)
        kills = 1
        threading.Thread(target=_cancel_all, args=(daemon, experiment.id)).start()
    else:
        thread = threading.Thread(target=kill_loop)
        thread.start()
        try:
            _submit(daemon, requests)
            _cancel_all(daemon, experiment.id)
            time.sleep(rng.uniform(0.5, 2.0))
        finally:
            stop.set()
            thread.join()
    units = _wait_final(daemon, experiment.id)
    daemon.stop()
    return _starts(starts), units, kills


def _submit_with_client_kills(
    daemon: DaemonHandle, state: Path, requests: list[pb.AddWorkUnitRequest], rng: random.Random
) -> None:
    """A client process adding the sweep, killed mid-stream, then run again to the end."""
    payload = state / "requests.bin"
    payload.write_bytes(pb.AddWorkUnitsRequest(requests=requests).SerializeToString())
    script = (
        "import sys\n"
        "from xmanager.client.connection import Launcher\n"
        "from xmanager.state_dir import StateDir\n"
        "from xmanager.launcher.v1 import launcher_pb2 as pb\n"
        f"all_ = pb.AddWorkUnitsRequest.FromString(open({str(payload)!r}, 'rb').read()).requests\n"
        f"launcher = Launcher(StateDir.resolve({str(state)!r}), autostart=False)\n"
        "messages = (pb.AddWorkUnitsRequest(requests=[r]) for r in all_)\n"
        "for response in launcher.stub.AddWorkUnits(messages):\n"
        "    assert not response.results[0].error_code, response.results[0].error_message\n"
    )
    client = subprocess.Popen([sys.executable, "-c", script])
    time.sleep(rng.uniform(0.3, 1.0))
    client.kill()
    client.wait()
    again = subprocess.run([sys.executable, "-c", script], check=False, timeout=120)
    assert again.returncode == 0


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("killer", ["daemon", "supervisor", "client"])
def test_crash_loops_lose_nothing_and_start_nothing_twice(
    state: Path, tmp_path: Path, db_flags: list[str], killer: str
) -> None:
    total_kills = 0
    lost = 0
    for iteration in range(ITERATIONS):
        seed = iteration * 1000 + hash(killer) % 1000
        starts, units, kills = _run_iteration(state, tmp_path, db_flags, seed, killer)
        total_kills += kills
        assert len(units) == UNITS
        duplicated = {unit: n for unit, n in starts.items() if n > 1}
        assert not duplicated, f"iteration {iteration}: started more than once: {duplicated}"
        for unit in units:
            wu = unit.work_unit_id
            state_name = pb.JobState.Name(unit.status.state)
            if wu in CANCELLED:
                # LOST only when its supervisor was killed while it was being cancelled.
                job_state = unit.jobs[0].status.state
                assert job_state == pb.JOB_STATE_CANCELLED or (
                    job_state == pb.JOB_STATE_LOST and killer == "supervisor"
                ), f"iteration {iteration}: unit {wu} was cancelled but is {state_name}"
                continue
            if unit.jobs[0].status.state == pb.JOB_STATE_LOST:
                lost += 1
                # Only a supervisor killed while the job ran leaves its outcome unknown.
                assert killer == "supervisor", f"unit {wu} LOST: {unit.status.reason}"
                assert starts[wu] <= 1
                continue
            assert starts[wu] == 1, f"iteration {iteration}: unit {wu} started {starts[wu]}x"
            expected = pb.JOB_STATE_FAILED if _exit_code(wu) else pb.JOB_STATE_SUCCEEDED
            assert unit.status.state == expected, (
                f"iteration {iteration}: unit {wu} is {state_name}: {unit.status.reason}"
            )
            assert unit.jobs[0].status.exit_code == _exit_code(wu)
    print(
        f"{killer}: {ITERATIONS} iterations x {UNITS} units, {total_kills} kills: "
        f"{lost} LOST with their supervisor, 0 started twice, every exit code right"
    )
    assert total_kills > 0
