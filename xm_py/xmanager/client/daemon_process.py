"""Starting, stopping and finding the launcher daemon process of a state directory."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from xmanager.state_dir import StateDir


class DaemonStartError(RuntimeError):
    """The daemon did not come up; the message quotes its log."""


@dataclasses.dataclass(frozen=True)
class DaemonStatus:
    running: bool
    pid: int | None
    socket: str


def read_pid(state: StateDir) -> int | None:
    """The pid of the daemon serving `state`, if one is alive."""
    try:
        pid = int(state.pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # A daemon killed but not yet reaped by its parent is a zombie: it serves nothing.
    return pid if alive(pid) else None


def status(state: StateDir) -> DaemonStatus:
    pid = read_pid(state)
    return DaemonStatus(
        running=pid is not None and state.socket.exists(), pid=pid, socket=str(state.socket)
    )


# Set by Bazel's Python stub for a `bazel run` target only: a daemon started from there must not
# see them, or it would import that target's runfiles instead of its own installation.
_BAZEL_PYTHON_ENV = ("PYTHONPATH", "PYTHONSAFEPATH", "RUNFILES_DIR", "RUNFILES_MANIFEST_FILE")


def daemon_command(state: StateDir, flags: Sequence[str] = ()) -> list[str]:
    """How to run a daemon: with this interpreter when it has the daemon's code, else with the
    installed `xmanager` command (a launch script run by Bazel carries only the client)."""
    if importlib.util.find_spec("launcher_server") is not None:
        return [sys.executable, "-m", "launcher_server", f"--state_dir={state.root}", *flags]
    installed = shutil.which("xmanager")
    if installed is None:
        raise DaemonStartError(
            f"no launcher daemon runs for {state.root}, and this program cannot start one (it "
            "has the xmanager client but not the daemon, as a launch script run by Bazel): "
            "start it with `xmanager daemon start`, or set XM_LAUNCHER_ADDRESS to a running one"
        )
    return [installed, "daemon", "start", "--foreground", f"--state_dir={state.root}", *flags]


def start_detached(state: StateDir, flags: Sequence[str] = (), *, timeout: float = 30.0) -> int:
    """Starts a daemon in the background (own session, log in the state directory).

    Returns its pid once its socket accepts connections. Raises DaemonStartError with the tail
    of the daemon's log when it exits or does not become ready in time.
    """
    state.create()
    # Private like everything in the state directory (the daemon tightens older files).
    log = open(  # noqa: SIM115  # closed once the daemon holds it
        os.open(state.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab"
    )
    log_start = log.tell()  # this start's own lines begin here
    command = daemon_command(state, flags)
    env = {k: v for k, v in os.environ.items() if k not in _BAZEL_PYTHON_ENV}
    env.setdefault("PYTHONUNBUFFERED", "1")
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
        env=env,
        cwd="/",
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise DaemonStartError(f"the launcher daemon {_start_failure(state, code, log_start)}")
        if _socket_ready(state) and read_pid(state) == process.pid:
            return process.pid
        time.sleep(0.02)
    process.terminate()
    raise DaemonStartError(
        f"the launcher daemon did not become ready within {timeout:.0f} s:\n{_log_tail(state)}"
    )


def _socket_ready(state: StateDir) -> bool:
    if not state.socket.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(state.socket))
        except OSError:
            return False
    return True


def _start_failure(state: StateDir, code: int, log_start: int) -> str:
    """Why a daemon exited while starting: its own one-line reason when it gave one."""
    try:
        with state.log.open("rb") as f:
            f.seek(log_start)
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        lines = []
    marker = "cannot start: "
    reasons = [line.split(marker, 1)[1] for line in lines if marker in line]
    if reasons:
        return f"cannot start: {reasons[-1]} (log: {state.log})"
    return f"exited with code {code} while starting:\n{_log_tail(state)}"


def _log_tail(state: StateDir, lines: int = 20) -> str:
    try:
        text = state.log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(f"  {line}" for line in text[-lines:]) + f"\n(full log: {state.log})"


def stop(state: StateDir, *, timeout: float = 30.0) -> bool:
    """Stops the daemon gracefully (SIGTERM); False when none was running."""
    pid = read_pid(state)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Gone, not merely its pid file: until it exits it may hold the store.
        if not alive(pid):
            return True
        time.sleep(0.02)
    raise TimeoutError(
        f"the launcher daemon (pid {pid}) did not stop within {timeout:.0f} s; `kill -9 {pid}` "
        "ends it (its jobs keep running)"
    )


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, which has ended, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
