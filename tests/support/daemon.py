"""Real launcher daemons for tests: separate processes over real Unix sockets."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from xmanager.client import daemon_process
from xmanager.client.connection import Launcher
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.state_dir import StateDir

ROOT = Path(__file__).resolve().parents[2]
# Argument and environment values that a shell would mangle: they must reach jobs byte for byte.
TRICKY_VALUES = [
    "two words",
    "it's",
    'say "hi"',
    "$HOME and ${PATH}",
    "line one\nline two",
    '{"lr": [0.1, 0.01], "name": "a b"}',
    "",
    "ünïcødé ✓",
    "--not-a-flag",
    "back\\slash",
    "`backticks` and $(subshell)",
]
FINAL = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED, pb.JOB_STATE_LOST}


class DaemonHandle:
    """A daemon process started by a test, with a client connected to it."""

    def __init__(self, state_dir: Path, flags: Sequence[str] = ()) -> None:
        self.state = StateDir.resolve(state_dir)
        self.flags = list(flags)
        self.pid = 0
        self.launcher: Launcher | None = None

    def start(self) -> Launcher:
        self.pid = daemon_process.start_detached(self.state, self.flags)
        self.launcher = Launcher(self.state, autostart=False, retry_seconds=30)
        return self.launcher

    def attach(self) -> Launcher:
        """Connects to the daemon running now (e.g. one a client restarted)."""
        pid = daemon_process.read_pid(self.state)
        assert pid is not None, "no daemon runs"
        self.pid = pid
        self.launcher = Launcher(self.state, autostart=False, retry_seconds=30)
        return self.launcher

    @property
    def client(self) -> Launcher:
        assert self.launcher is not None, "start() the daemon first"
        return self.launcher

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        os.kill(self.pid, signal.SIGKILL)
        _wait_gone(self.pid)

    def stop(self) -> None:
        if self.launcher is not None:
            self.launcher.close()
            self.launcher = None
        daemon_process.stop(self.state)

    def env(self) -> dict[str, str]:
        """The environment for a launch script talking to this daemon."""
        return {**os.environ, "XM_STATE_DIR": str(self.state.root)}

    def wait_all_final(
        self, experiment_id: int, count: int, timeout: float = 60
    ) -> list[pb.WorkUnit]:
        deadline = time.monotonic() + timeout
        while True:
            units = list_work_units(self.client, experiment_id)
            if len(units) == count and all(u.status.state in FINAL for u in units):
                return units
            if time.monotonic() > deadline:
                states = [pb.JobState.Name(u.status.state) for u in units]
                raise TimeoutError(f"not all final after {timeout}s: {states}")
            time.sleep(0.05)


def list_work_units(launcher: Launcher, experiment_id: int) -> list[pb.WorkUnit]:
    units: list[pb.WorkUnit] = []
    token = ""
    while True:
        page = launcher.stub.ListWorkUnits(
            pb.ListWorkUnitsRequest(experiment_id=experiment_id, page_size=1000, page_token=token)
        )
        units.extend(page.work_units)
        token = page.next_page_token
        if not token:
            return units


def local_job(name: str, path: Path | str, *args: str, env: dict[str, str] | None = None) -> pb.Job:
    """A job running a binary on the daemon's machine (the Local executor)."""
    return pb.Job(
        name=name,
        artifact=pb.Artifact(local_binary=pb.LocalBinary(path=str(path))),
        args=args,
        env=env or {},
        executor=pb.Executor(local=pb.LocalExecutor()),
    )


def add_work_units(
    launcher: Launcher, requests: Iterable[pb.AddWorkUnitRequest], *, batch: int = 500
) -> list[pb.AddWorkUnitResult]:
    """Adds through one AddWorkUnits stream, `batch` requests per message; results in order."""

    def messages() -> Iterator[pb.AddWorkUnitsRequest]:
        remaining = iter(requests)
        while chunk := list(itertools.islice(remaining, batch)):
            yield pb.AddWorkUnitsRequest(requests=chunk)

    return [r for response in launcher.stub.AddWorkUnits(messages()) for r in response.results]


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} still alive")


def kill_job_processes(state_dir: Path) -> None:
    """Last-resort cleanup: SIGKILL every process whose command line names the state dir."""
    marker = str(state_dir)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker in cmdline or marker.encode() in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def run_cli(
    args: Sequence[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs the `xmanager` command line as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "xmanager.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def run_script(
    script: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs a launch script as plain Python (`python script.py`), as a user would."""
    return subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def python_script(path: Path, body: str) -> Path:
    """An executable Python script run by this interpreter."""
    return make_executable(path, f"#!{sys.executable}\n{body}")


Fixture = Iterator[DaemonHandle]
