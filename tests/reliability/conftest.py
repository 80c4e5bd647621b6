"""Daemons for the reliability suite: each test module gets its own state directory."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle, kill_job_processes


@contextlib.contextmanager
def temporary_state_dir() -> Iterator[Path]:
    # Short: a Unix socket path must fit in 108 bytes, pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="xm-rel-", dir="/tmp"))
    try:
        yield path
    finally:
        kill_job_processes(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    with temporary_state_dir() as path:
        yield path


@pytest.fixture
def daemon(state_dir: Path) -> Iterator[DaemonHandle]:
    handle = DaemonHandle(state_dir, ["--grace_period_seconds=2"])
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[DaemonHandle]:
    """One daemon for a module whose tests do not disturb each other."""
    with temporary_state_dir() as path:
        handle = DaemonHandle(path, ["--grace_period_seconds=2"])
        handle.start()
        yield handle
        handle.stop()
