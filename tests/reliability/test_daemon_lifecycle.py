"""Starting and stopping the daemon whatever state it finds or clients leave it in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.daemon import DaemonHandle, _wait_gone, run_cli
from xmanager.client import daemon_process
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.state_dir import StateDir


def _env(state_dir: Path) -> dict[str, str]:
    return {**os.environ, "XM_STATE_DIR": str(state_dir)}


def test_stop_completes_with_a_corrupt_message_on_an_open_add_stream(
    daemon: DaemonHandle,
) -> None:
    experiment = daemon.client.stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="t"))
    )
    hold = threading.Event()

    def requests() -> Iterator[bytes]:
        yield pb.AddWorkUnitsRequest(
            requests=[pb.AddWorkUnitRequest(experiment_id=experiment.id, request_id="x")]
        ).SerializeToString()
        yield b"\xff\xff\xff\xff"  # not a message
        hold.wait(60)  # and the client keeps its side open

    channel = grpc.insecure_channel(f"unix:{daemon.state.socket}")
    call = channel.stream_stream("/xmanager.launcher.v1.Launcher/AddWorkUnits", None, None)
    responses = call(requests(), timeout=60)
    with pytest.raises(grpc.RpcError) as ended:
        for _ in responses:
            pass
    assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ended.value.details()
    # Another stream that stays open and silent, and a watch.
    silent = call(iter(hold.wait, True), timeout=60)
    watch = daemon.client.stub.WatchWorkUnits(pb.WatchWorkUnitsRequest(), timeout=60)
    codes: list[grpc.StatusCode] = []

    def drain(stream: Iterator[object]) -> None:
        try:
            list(stream)
        except grpc.RpcError as error:
            codes.append(error.code())

    readers = [threading.Thread(target=drain, args=(s,)) for s in (watch, silent)]
    for reader in readers:
        reader.start()
    time.sleep(0.5)

    started = time.monotonic()
    result = run_cli(["daemon", "stop"], _env(daemon.state.root), timeout=60)
    took = time.monotonic() - started
    hold.set()
    channel.close()
    daemon.launcher = None
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "stopped"
    assert "Traceback" not in result.stderr
    assert took < 20, f"stop took {took:.1f} s"
    for reader in readers:
        reader.join(10)
    # The watch is told to resume elsewhere; nothing is an internal error.
    assert codes, codes
    assert grpc.StatusCode.INTERNAL not in codes, codes


def test_stop_that_times_out_prints_one_line(state_dir: Path) -> None:
    # A process that ignores SIGTERM and claims to be the daemon: stop gives up in one line.
    state = StateDir.resolve(state_dir)
    state.create()
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(15, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stubborn.stdout is not None
        assert stubborn.stdout.readline().strip() == "ready"
        state.pid.write_text(f"{stubborn.pid}\n")
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import functools, sys\n"
                "from xmanager.client import daemon_process as d\n"
                "d.stop = functools.partial(d.stop, timeout=1)\n"
                "from xmanager.cli.main import run\n"
                "sys.argv = ['xmanager', 'daemon', 'stop']\n"
                "run()\n",
            ],
            env=_env(state_dir),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        stubborn.kill()
        stubborn.wait()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "did not stop within" in lines[0]


def test_start_after_a_killed_daemon_not_yet_reaped(state_dir: Path) -> None:
    state = StateDir.resolve(state_dir)
    state.create()
    # Our own child, so that once killed it stays a zombie until we reap it.
    child = subprocess.Popen(
        [sys.executable, "-m", "launcher_server", f"--state_dir={state.root}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while daemon_process.read_pid(state) != child.pid:
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        while daemon_process.alive(child.pid):
            time.sleep(0.01)
        assert Path(f"/proc/{child.pid}").exists()  # a zombie: not reaped yet
        result = run_cli(["daemon", "start"], _env(state_dir), timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("started"), result.stdout
    finally:
        daemon_process.stop(state)
        child.wait()
    _wait_gone(child.pid)
