"""The state directory is the daemon user's alone: tightened on start, refused when unsafe, and
checked as a second user would see it (when this machine lets the test create one)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle
from xmanager.client import daemon_process
from xmanager.launcher.v1 import launcher_pb2 as pb

OTHER_USER = "xm-reliability-other"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _loosen(daemon: DaemonHandle) -> None:
    """What an older version or `mkdir -p` left: a 0755 directory with 0644 files."""
    daemon.state.root.chmod(0o755)
    for entry in daemon.state.root.iterdir():
        if entry.is_file():
            entry.chmod(0o644)


@pytest.fixture(scope="module")
def other_user() -> Iterator[pwd.struct_passwd]:
    """A second, unprivileged user (created for the test, removed afterwards)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create a second user")
    created = False
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/false", OTHER_USER],
            check=True,
        )
        created = True
    try:
        yield pwd.getpwnam(OTHER_USER)
    finally:
        if created:
            subprocess.run(["userdel", OTHER_USER], check=False)


def _as_other(user: pwd.struct_passwd, code: str) -> subprocess.Popen[str]:
    """Runs Python code as the other user (the machine's Python, no project imports)."""
    return subprocess.Popen(
        ["/usr/bin/python3", "-c", code],
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )


def test_start_tightens_an_existing_loose_directory(state_dir: Path) -> None:
    daemon = DaemonHandle(state_dir)
    daemon.start()
    daemon.stop()
    _loosen(daemon)
    daemon.start()
    try:
        assert _mode(state_dir) == 0o700
        for name in ("store.sqlite", "daemon.lock", "daemon.pid", "daemon.log"):
            assert _mode(state_dir / name) == 0o600, name
        wal = state_dir / "store.sqlite-wal"
        if wal.exists():
            assert _mode(wal) == 0o600
    finally:
        daemon.stop()


def test_new_directory_and_files_are_private(state_dir: Path) -> None:
    root = state_dir / "fresh"
    daemon = DaemonHandle(root)
    daemon.start()
    try:
        daemon.client.stub.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(title="t"))
        )
        assert _mode(root) == 0o700
        for entry in root.iterdir():
            if entry.is_file():
                assert _mode(entry) & 0o077 == 0, entry
    finally:
        daemon.stop()


def test_directory_writable_by_others_is_refused(state_dir: Path) -> None:
    state_dir.chmod(0o777)
    with pytest.raises(daemon_process.DaemonStartError) as refused:
        DaemonHandle(state_dir).start()
    message = str(refused.value)
    assert "writable by other users" in message
    assert f"chmod 700 {state_dir}" in message


def test_directory_of_another_user_is_refused(
    state_dir: Path, other_user: pwd.struct_passwd
) -> None:
    theirs = state_dir / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, other_user.pw_uid, other_user.pw_gid)
    # The client may not even look inside: start the daemon itself in the foreground.
    result = subprocess.run(
        [sys.executable, "-m", "launcher_server", f"--state_dir={theirs}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"belongs to uid {other_user.pw_uid}" in result.stderr
    assert "--state_dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_another_user_can_neither_read_nor_lock_nor_connect(
    state_dir: Path, other_user: pwd.struct_passwd
) -> None:
    daemon = DaemonHandle(state_dir)
    daemon.start()
    daemon.client.stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="secret"))
    )
    daemon.stop()
    _loosen(daemon)
    state_dir.chmod(0o755)
    # The other user takes a shared lock while the files are open to them, and keeps it.
    holder = _as_other(
        other_user,
        "import fcntl, sys, time\n"
        f"f = open({str(daemon.state.lock)!r})\n"
        "fcntl.flock(f, fcntl.LOCK_SH)\n"
        "print('holding', flush=True)\n"
        "time.sleep(60)\n",
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding", holder.stderr
        daemon.start()  # not kept out by the other user's lock
        try:
            probe = _as_other(
                other_user,
                "import fcntl, os, socket, sys\n"
                f"root = {str(state_dir)!r}\n"
                "results = []\n"
                "for name in ('store.sqlite', 'store.sqlite-wal', 'daemon.lock', 'token'):\n"
                "    try:\n"
                "        open(os.path.join(root, name), 'rb').read(1)\n"
                "        results.append(name + ': read')\n"
                "    except FileNotFoundError:\n"
                "        pass\n"
                "    except PermissionError:\n"
                "        results.append(name + ': denied')\n"
                "try:\n"
                "    os.listdir(root)\n"
                "    results.append('listdir: allowed')\n"
                "except PermissionError:\n"
                "    results.append('listdir: denied')\n"
                "s = socket.socket(socket.AF_UNIX)\n"
                "try:\n"
                "    s.connect(os.path.join(root, 'launcher.sock'))\n"
                "    results.append('socket: connected')\n"
                "except (PermissionError, FileNotFoundError):\n"
                "    results.append('socket: denied')\n"
                "print('\\n'.join(results))\n",
            )
            out, err = probe.communicate(timeout=30)
            assert probe.returncode == 0, err
            lines = out.split()
            assert "listdir: denied" in out, out
            assert "socket: denied" in out, out
            assert not [line for line in lines if line.endswith(("read", "allowed", "connected"))]
            daemon.client.stub.ListExperiments(pb.ListExperimentsRequest())
        finally:
            daemon.stop()
    finally:
        holder.kill()
        holder.wait()
    # The next start is not blocked either.
    started = time.monotonic()
    daemon.start()
    daemon.stop()
    assert time.monotonic() - started < 30
