"""Local binaries under supervisors: environment, logs, limits, cancellation, re-attachment."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.support.daemon import FINAL, DaemonHandle, local_job, make_executable, python_script
from xmanager.client import daemon_process
from xmanager.launcher.v1 import launcher_pb2 as pb


def _experiment(daemon: DaemonHandle, title: str = "local") -> int:
    created = daemon.client.stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title=title))
    )
    return int(created.id)


def _add(daemon: DaemonHandle, experiment_id: int, *jobs: pb.Job) -> pb.WorkUnit:
    unit: pb.WorkUnit = daemon.client.stub.AddWorkUnit(
        pb.AddWorkUnitRequest(
            experiment_id=experiment_id, request_id=os.urandom(8).hex(), jobs=jobs
        )
    )
    return unit


def _unit(daemon: DaemonHandle, experiment_id: int, work_unit_id: int) -> pb.WorkUnit:
    unit: pb.WorkUnit = daemon.client.stub.GetWorkUnit(
        pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id)
    )
    return unit


def _wait_for(daemon: DaemonHandle, experiment_id: int, work_unit_id: int, *states: int) -> None:
    deadline = time.monotonic() + 20
    while _unit(daemon, experiment_id, work_unit_id).status.state not in states:
        assert time.monotonic() < deadline, _unit(daemon, experiment_id, work_unit_id).status
        time.sleep(0.02)


def _logs(
    daemon: DaemonHandle,
    experiment_id: int,
    work_unit_id: int,
    job: str = "",
    *,
    stream: pb.LogStream = pb.LOG_STREAM_UNSPECIFIED,
    offset: int = 0,
    follow: bool = False,
) -> list[pb.LogChunk]:
    return list(
        daemon.client.stub.StreamLogs(
            pb.StreamLogsRequest(
                experiment_id=experiment_id,
                work_unit_id=work_unit_id,
                job_name=job,
                stream=stream,
                offset=offset,
                follow=follow,
            ),
            timeout=60,
        )
    )


def _text(chunks: list[pb.LogChunk]) -> str:
    return b"".join(chunk.data for chunk in chunks).decode()


def test_jobs_get_their_env_the_xm_variables_and_a_working_directory(
    shared_daemon: DaemonHandle, tmp_path: Path
) -> None:
    daemon = shared_daemon
    report = python_script(
        tmp_path / "report.py",
        "import json, os, sys\n"
        "print(json.dumps({'env': {k: v for k, v in os.environ.items()"
        " if k.startswith(('XM_', 'MY_')) or k == 'PATH'}, 'cwd': os.getcwd(),"
        " 'pgid': os.getpgid(0) == os.getpid(), 'sid': os.getsid(0) == os.getpid(),"
        " 'stdin': sys.stdin.read()}))\n",
    )
    experiment_id = _experiment(daemon)
    unit = _add(
        daemon,
        experiment_id,
        local_job("learner", report, env={"MY_VALUE": "a b $c"}),
        local_job("actor", report),
    )
    daemon.wait_all_final(experiment_id, 1)
    learner = json.loads(_text(_logs(daemon, experiment_id, unit.work_unit_id, "learner")))
    env = learner["env"]
    assert env["MY_VALUE"] == "a b $c"
    assert env["XM_EXPERIMENT_ID"] == str(experiment_id)
    assert env["XM_WORK_UNIT_ID"] == str(unit.work_unit_id)
    assert env["XM_JOB_NAME"] == "learner"
    assert env["XM_JOB_PEERS"] == "learner,actor"
    assert env["PATH"]
    # Its own process group in the supervisor's session (one scheduling group for all jobs), a
    # private working directory, no stdin.
    assert learner["pgid"]
    assert not learner["sid"]
    assert learner["stdin"] == ""
    job_dir = daemon.state.job_dir(experiment_id, unit.work_unit_id, "learner")
    assert learner["cwd"] == str(job_dir / "workdir")
    actor = json.loads(_text(_logs(daemon, experiment_id, unit.work_unit_id, "actor")))
    assert actor["env"]["XM_JOB_NAME"] == "actor"
    assert "MY_VALUE" not in actor["env"]
    got = _unit(daemon, experiment_id, unit.work_unit_id)
    assert got.jobs[0].log_location == str(job_dir / "output.log")


def test_log_streams_offsets_and_tail(shared_daemon: DaemonHandle, tmp_path: Path) -> None:
    daemon = shared_daemon
    job = make_executable(
        tmp_path / "talk.sh", "#!/bin/sh\necho out-1\necho err-1 >&2\necho out-2\nexit 0\n"
    )
    experiment_id = _experiment(daemon)
    unit = _add(daemon, experiment_id, local_job("main", job))
    daemon.wait_all_final(experiment_id, 1)
    wu = unit.work_unit_id
    assert _text(_logs(daemon, experiment_id, wu, stream=pb.LOG_STREAM_STDOUT)) == "out-1\nout-2\n"
    assert _text(_logs(daemon, experiment_id, wu, stream=pb.LOG_STREAM_STDERR)) == "err-1\n"
    combined = _text(_logs(daemon, experiment_id, wu))
    assert sorted(combined.splitlines()) == ["err-1", "out-1", "out-2"]
    chunks = _logs(daemon, experiment_id, wu, stream=pb.LOG_STREAM_STDOUT, offset=6)
    assert (chunks[0].offset, _text(chunks)) == (6, "out-2\n")
    tail = _logs(daemon, experiment_id, wu, stream=pb.LOG_STREAM_STDOUT, offset=-6)
    assert (tail[0].offset, _text(tail)) == (6, "out-2\n")
    assert _logs(daemon, experiment_id, wu, stream=pb.LOG_STREAM_STDOUT, offset=1000) == []


def test_follow_streams_output_until_the_job_ends(
    shared_daemon: DaemonHandle, tmp_path: Path
) -> None:
    daemon = shared_daemon
    job = make_executable(
        tmp_path / "slow.sh",
        "#!/bin/sh\nfor i in 1 2 3 4 5; do echo line-$i; sleep 0.2; done\n",
    )
    experiment_id = _experiment(daemon)
    unit = _add(daemon, experiment_id, local_job("main", job))
    started = time.monotonic()
    chunks = _logs(daemon, experiment_id, unit.work_unit_id, follow=True)
    assert time.monotonic() - started >= 0.6  # it waited for output that came later
    assert _text(chunks) == "".join(f"line-{i}\n" for i in range(1, 6))
    offsets = [chunk.offset for chunk in chunks]
    assert offsets == sorted(offsets)
    assert _unit(daemon, experiment_id, unit.work_unit_id).status.state in FINAL


def test_logs_are_capped_and_marked_truncated(state_dir: Path, tmp_path: Path) -> None:
    daemon = DaemonHandle(state_dir, ["--log_cap_mb=1"])
    daemon.start()
    try:
        job = python_script(
            tmp_path / "loud.py",
            "import sys\nfor _ in range(3):\n    sys.stdout.write('x' * (1 << 20))\n",
        )
        experiment_id = _experiment(daemon)
        unit = _add(daemon, experiment_id, local_job("main", job))
        (done,) = daemon.wait_all_final(experiment_id, 1)
        assert done.status.state == pb.JOB_STATE_SUCCEEDED  # the job itself was not harmed
        chunks = _logs(daemon, experiment_id, unit.work_unit_id, stream=pb.LOG_STREAM_STDOUT)
        assert sum(len(chunk.data) for chunk in chunks) == 1 << 20
        assert chunks[-1].truncated
        assert not any(chunk.truncated for chunk in chunks[:-1])
        followed = _logs(
            daemon, experiment_id, unit.work_unit_id, stream=pb.LOG_STREAM_STDOUT, follow=True
        )
        assert b"".join(c.data for c in followed) == b"".join(c.data for c in chunks)
        assert followed[-1].truncated, "a follow says so too"
        assert not any(chunk.truncated for chunk in followed[:-1])
    finally:
        daemon.stop()


def test_running_jobs_are_bounded_and_the_rest_wait_pending(
    state_dir: Path, tmp_path: Path
) -> None:
    daemon = DaemonHandle(state_dir, ["--max_running_jobs=2"])
    daemon.start()
    try:
        job = make_executable(tmp_path / "nap.sh", "#!/bin/sh\nsleep 0.4\n")
        experiment_id = _experiment(daemon)
        for _ in range(6):
            _add(daemon, experiment_id, local_job("main", job))
        units = [_unit(daemon, experiment_id, i) for i in range(1, 7)]
        assert sum(u.status.state == pb.JOB_STATE_PENDING for u in units) >= 3
        units = daemon.wait_all_final(experiment_id, 6)
        assert all(u.status.state == pb.JOB_STATE_SUCCEEDED for u in units)
        spans = [
            (u.status.start_time.ToNanoseconds(), u.status.end_time.ToNanoseconds()) for u in units
        ]
        for start, _ in spans:
            running = sum(1 for s, e in spans if s <= start < e)
            assert running <= 2, spans
    finally:
        daemon.stop()


def test_cancel_escalates_to_sigkill_after_the_grace_period(
    state_dir: Path, tmp_path: Path
) -> None:
    daemon = DaemonHandle(state_dir, ["--grace_period_seconds=1"])
    daemon.start()
    try:
        stubborn = python_script(
            tmp_path / "stubborn.py",
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: print('ignoring TERM', flush=True))\n"
            "print('ready', flush=True)\n"
            "time.sleep(300)\n",
        )
        polite = python_script(
            tmp_path / "polite.py",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
            "print('ready', flush=True)\n"
            "time.sleep(300)\n",
        )
        experiment_id = _experiment(daemon)
        _add(daemon, experiment_id, local_job("main", stubborn))
        _add(daemon, experiment_id, local_job("main", polite))
        for work_unit_id in (1, 2):
            deadline = time.monotonic() + 20
            while "ready" not in _text(_logs(daemon, experiment_id, work_unit_id)):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        started = time.monotonic()
        response = daemon.client.stub.CancelExperiment(
            pb.CancelExperimentRequest(experiment_id=experiment_id, reason="enough")
        )
        assert response.cancelled_work_units == 2
        units = daemon.wait_all_final(experiment_id, 2)
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 10
        stubborn_job, polite_job = units[0].jobs[0].status, units[1].jobs[0].status
        assert stubborn_job.state == pb.JOB_STATE_CANCELLED
        assert stubborn_job.exit_code == 128 + signal.SIGKILL
        assert stubborn_job.reason.startswith("enough")
        assert "SIGKILL" in stubborn_job.reason
        assert "ignoring TERM" in _text(_logs(daemon, experiment_id, 1))
        assert polite_job.state == pb.JOB_STATE_CANCELLED
        assert polite_job.exit_code == 0
        # Cancelling again is harmless.
        again = daemon.client.stub.CancelWorkUnit(
            pb.CancelWorkUnitRequest(experiment_id=experiment_id, work_unit_id=1)
        )
        assert again.work_unit.status.state == pb.JOB_STATE_CANCELLED
    finally:
        daemon.stop()


def test_cancel_before_start_never_runs_the_job(state_dir: Path, tmp_path: Path) -> None:
    daemon = DaemonHandle(state_dir, ["--max_running_jobs=1"])
    daemon.start()
    try:
        marker = tmp_path / "ran"
        blocker = make_executable(tmp_path / "block.sh", "#!/bin/sh\nsleep 2\n")
        job = make_executable(tmp_path / "touch.sh", f"#!/bin/sh\ntouch {marker}\n")
        experiment_id = _experiment(daemon)
        _add(daemon, experiment_id, local_job("main", blocker))
        _add(daemon, experiment_id, local_job("main", job))
        assert _unit(daemon, experiment_id, 2).status.state == pb.JOB_STATE_PENDING
        daemon.client.stub.CancelWorkUnit(
            pb.CancelWorkUnitRequest(experiment_id=experiment_id, work_unit_id=2)
        )
        units = daemon.wait_all_final(experiment_id, 2)
        assert units[1].status.state == pb.JOB_STATE_CANCELLED
        assert "before it started" in units[1].jobs[0].status.reason
        assert not marker.exists()
    finally:
        daemon.stop()


def test_a_graceful_daemon_restart_reattaches_running_jobs(state_dir: Path, tmp_path: Path) -> None:
    daemon = DaemonHandle(state_dir)
    daemon.start()
    try:
        job = make_executable(
            tmp_path / "long.sh", "#!/bin/sh\necho before\nsleep 6\necho after\nexit 7\n"
        )
        experiment_id = _experiment(daemon)
        _add(daemon, experiment_id, local_job("main", job))
        _wait_for(daemon, experiment_id, 1, pb.JOB_STATE_RUNNING)
        daemon.stop()
        daemon.start()
        status = _unit(daemon, experiment_id, 1).jobs[0].status
        assert status.state == pb.JOB_STATE_RUNNING  # re-attached, not restarted
        (unit,) = daemon.wait_all_final(experiment_id, 1)
        assert unit.status.state == pb.JOB_STATE_FAILED
        assert unit.jobs[0].status.exit_code == 7
        assert _text(_logs(daemon, experiment_id, 1)) == "before\nafter\n"
    finally:
        daemon.stop()


def test_a_vanished_supervisor_means_lost_and_no_orphans(state_dir: Path, tmp_path: Path) -> None:
    daemon = DaemonHandle(state_dir)
    daemon.start()
    try:
        job = make_executable(tmp_path / "long.sh", "#!/bin/sh\nsleep 300\n")
        experiment_id = _experiment(daemon)
        _add(daemon, experiment_id, local_job("main", job))
        _wait_for(daemon, experiment_id, 1, pb.JOB_STATE_RUNNING)
        job_dir = daemon.state.job_dir(experiment_id, 1, "main")
        started = json.loads((job_dir / "started.json").read_text())
        os.kill(started["supervisor_pid"], signal.SIGKILL)
        (unit,) = daemon.wait_all_final(experiment_id, 1)
        status = unit.jobs[0].status
        assert status.state == pb.JOB_STATE_LOST
        assert "supervisor vanished" in status.reason
        assert unit.status.state == pb.JOB_STATE_FAILED
        deadline = time.monotonic() + 5
        while daemon_process.alive(started["pid"]):
            assert time.monotonic() < deadline, "the job outlived its supervisor"
            time.sleep(0.05)
    finally:
        daemon.stop()


def test_a_binary_changed_since_packaging_is_refused(
    shared_daemon: DaemonHandle, tmp_path: Path
) -> None:
    daemon = shared_daemon
    job = make_executable(tmp_path / "v1.sh", "#!/bin/sh\necho v1\n")
    experiment_id = _experiment(daemon)
    message = local_job("main", job)
    message.artifact.local_binary.sha256 = "0" * 64
    _add(daemon, experiment_id, message)
    (unit,) = daemon.wait_all_final(experiment_id, 1)
    assert unit.status.state == pb.JOB_STATE_FAILED
    assert "changed since it was packaged" in unit.jobs[0].status.reason
