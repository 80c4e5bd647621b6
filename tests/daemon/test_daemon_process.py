"""The daemon as a process: listening, authentication, start/stop/status, auto-start, versions."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest
import sqlalchemy

from tests.support.daemon import DaemonHandle, run_cli
from tests.support.postgres import PostgresServer
from xmanager.client import daemon_process
from xmanager.client.connection import Launcher, VersionMismatchError, connect
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.launcher.v1 import launcher_pb2_grpc as pb_grpc
from xmanager.state_dir import StateDir


def _env(state_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "XM_STATE_DIR": str(state_dir), **extra}


def test_unix_socket_and_secrets_are_private(daemon: DaemonHandle) -> None:
    assert stat.S_IMODE(daemon.state.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.state.root.stat().st_mode) == 0o700
    info = daemon.client.stub.GetServerInfo(pb.GetServerInfoRequest())
    assert info.api_version == "v1"
    assert info.store == "sqlite"
    assert info.pid == daemon.pid
    backends = {backend.name: backend for backend in info.backends}
    assert backends["local"].available
    assert "local_container" in backends
    assert "add.idempotent" in info.capabilities


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_tcp_listener_requires_the_bearer_token(state_dir: Path) -> None:
    port = _free_port()
    handle = DaemonHandle(state_dir, [f"--listen=127.0.0.1:{port}"])
    handle.start()
    try:
        token_file = handle.state.token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.LauncherStub(channel)
            with pytest.raises(grpc.RpcError) as missing:
                stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5)
            assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in (missing.value.details() or "")
            with pytest.raises(grpc.RpcError) as wrong:
                stub.GetServerInfo(
                    pb.GetServerInfoRequest(),
                    metadata=[("authorization", "Bearer not-the-token")],
                    timeout=5,
                )
            assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
            info = stub.GetServerInfo(
                pb.GetServerInfoRequest(),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=5,
            )
            assert info.pid == handle.pid
        # The client library sends the token itself, read from the state directory.
        os.environ["XM_LAUNCHER_ADDRESS"] = f"127.0.0.1:{port}"
        try:
            launcher = connect(state_dir, autostart=False)
            assert launcher.server_info.pid == handle.pid
            launcher.close()
        finally:
            del os.environ["XM_LAUNCHER_ADDRESS"]
        # The token survives restarts: clients keep working.
        handle.stop()
        handle.start()
        assert token_file.read_text().strip() == token
    finally:
        handle.stop()


def test_non_loopback_listen_needs_an_explicit_flag(state_dir: Path) -> None:
    result = run_cli(["daemon", "start", "--listen=0.0.0.0:7878"], env=_env(state_dir))
    assert result.returncode == 1
    assert "not a loopback address" in result.stderr
    assert "--allow_remote" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert daemon_process.read_pid(StateDir.resolve(state_dir)) is None
    bad = run_cli(["daemon", "start", "--listen=nonsense"], env=_env(state_dir))
    assert bad.returncode == 1
    assert "expected HOST:PORT" in bad.stderr


def test_cli_daemon_start_status_stop(state_dir: Path) -> None:
    env = _env(state_dir)
    stopped = run_cli(["daemon", "status"], env=env)
    assert stopped.returncode == 3
    assert "not running" in stopped.stdout
    started = run_cli(["daemon", "start", "--max_running_jobs=3"], env=env)
    assert started.returncode == 0, started.stderr
    assert "started (pid" in started.stdout
    again = run_cli(["daemon", "start"], env=env)
    assert again.returncode == 0
    assert "already running" in again.stdout
    status = run_cli(["daemon", "status"], env=env)
    assert status.returncode == 0, status.stderr
    assert "sqlite" in status.stdout
    stop = run_cli(["daemon", "stop"], env=env)
    assert stop.returncode == 0
    assert "stopped" in stop.stdout
    assert not StateDir.resolve(state_dir).socket.exists()
    assert run_cli(["daemon", "status"], env=env).returncode == 3


def test_a_sigterm_the_kernel_hands_to_another_thread_still_stops_the_daemon(
    state_dir: Path,
) -> None:
    # kill(2) may deliver a process's signal to any of its threads; the main thread, which
    # runs Python's handler, must notice. tgkill picks a thread other than the main one.
    handle = DaemonHandle(state_dir)
    handle.start()
    handle.client.stub.GetServerInfo(pb.GetServerInfoRequest())
    handle.client.close()
    other = next(
        int(tid) for tid in os.listdir(f"/proc/{handle.pid}/task") if int(tid) != handle.pid
    )
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.tgkill(handle.pid, other, signal.SIGTERM) == 0, ctypes.get_errno()
    deadline = time.monotonic() + 10
    while daemon_process.alive(handle.pid):
        assert time.monotonic() < deadline, "the daemon ignored a SIGTERM"
        time.sleep(0.05)
    assert not handle.state.socket.exists()


def test_one_daemon_per_state_directory(daemon: DaemonHandle) -> None:
    second = subprocess.run(
        daemon_process.daemon_command(daemon.state),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert second.returncode == 1
    assert "already runs" in second.stderr
    # The running daemon is unharmed.
    assert daemon.client.stub.GetServerInfo(pb.GetServerInfoRequest()).pid == daemon.pid
    assert daemon_process.read_pid(daemon.state) == daemon.pid


def test_a_client_starts_a_daemon_when_none_runs(state_dir: Path) -> None:
    state = StateDir.resolve(state_dir)
    assert daemon_process.read_pid(state) is None
    launcher = connect(state_dir)
    try:
        pid = daemon_process.read_pid(state)
        assert pid is not None
        assert launcher.server_info.pid == pid
        # A second client finds the same daemon instead of starting another.
        other = connect(state_dir)
        assert other.server_info.pid == pid
        other.close()
    finally:
        launcher.close()
        daemon_process.stop(state)


def test_version_mismatch_is_explained(state_dir: Path) -> None:
    state = StateDir.resolve(state_dir)
    state.create()
    code = (
        "import sys, xmanager; xmanager.__version__ = '0.0.0-other'\n"
        "from launcher_server.daemon import run\n"
        f"sys.argv = ['launcher', '--state_dir={state.root}']\n"
        "run()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (state.socket.exists() and daemon_process.read_pid(state) == process.pid):
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.05)
        with pytest.raises(VersionMismatchError) as mismatch:
            Launcher(state, autostart=False, retry_seconds=5)
        message = str(mismatch.value)
        assert "0.0.0-other" in message
        assert "xmanager daemon stop" in message
        listing = run_cli(["list"], env=_env(state_dir))
        assert listing.returncode == 1
        assert listing.stderr.startswith("xmanager: the launcher daemon")
        assert listing.stderr.count("\n") == 1
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_database_from_a_newer_daemon_stops_the_start_with_a_clear_message(
    state_dir: Path,
) -> None:
    handle = DaemonHandle(state_dir)
    handle.start()
    handle.stop()
    engine = sqlalchemy.create_engine(f"sqlite:///{handle.state.database}")
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = 'f00d'"))
    engine.dispose()
    result = run_cli(["daemon", "start"], env=_env(state_dir))
    assert result.returncode == 1
    assert "schema revision f00d, newer than this daemon" in result.stderr
    assert "upgrade xmanager" in result.stderr
    assert daemon_process.read_pid(handle.state) is None


def test_daemon_on_postgresql_runs_and_survives_a_restart(
    state_dir: Path, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.create_database()
    handle = DaemonHandle(state_dir, [f"--db_url={url}"])
    client = handle.start()
    try:
        assert client.stub.GetServerInfo(pb.GetServerInfoRequest()).store == "postgresql"
        experiment = client.stub.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(title="on postgres"))
        )
        script = tmp_path / "job.sh"
        script.write_text("#!/bin/sh\nsleep 1\nexit $1\n")
        script.chmod(0o755)
        for i, code in enumerate(["0", "4"]):
            client.stub.AddWorkUnit(
                pb.AddWorkUnitRequest(
                    experiment_id=experiment.id,
                    request_id=f"pg-{i}",
                    jobs=[
                        pb.Job(
                            name="main",
                            artifact=pb.Artifact(local_binary=pb.LocalBinary(path=str(script))),
                            args=[code],
                            executor=pb.Executor(local=pb.LocalExecutor()),
                        )
                    ],
                )
            )
        # A second daemon (another state directory) may not write the same database.
        with contextlib.ExitStack() as stack:
            other_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(dir="/tmp")))
            other = DaemonHandle(other_dir, [f"--db_url={url}"])
            with pytest.raises(daemon_process.DaemonStartError, match="another launcher daemon"):
                other.start()
        handle.kill()  # while both jobs sleep
        client = handle.start()
        units = handle.wait_all_final(experiment.id, 2)
        assert [u.status.state for u in units] == [pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED]
        assert units[1].jobs[0].status.exit_code == 4
        assert client.stub.GetExperiment(
            pb.GetExperimentRequest(experiment_id=experiment.id)
        ).title == ("on postgres")
    finally:
        handle.stop()
