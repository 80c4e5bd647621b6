"""A real daemon for the launch tests, shared by a module: the tests only add experiments."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle, kill_job_processes


@pytest.fixture(scope="module")
def launch_daemon() -> Iterator[DaemonHandle]:
    # Short: a Unix socket path must fit in 108 bytes, pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="xm-", dir="/tmp"))
    handle = DaemonHandle(path, ["--grace_period_seconds=2"])
    try:
        handle.start()
        yield handle
    finally:
        handle.stop()
        kill_job_processes(path)
        shutil.rmtree(path, ignore_errors=True)
