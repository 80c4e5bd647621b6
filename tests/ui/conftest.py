from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle, kill_job_processes
from tests.ui.support import UiServer, serve


@pytest.fixture(scope="module")
def ui_daemon() -> Iterator[DaemonHandle]:
    # Short: a Unix socket path must fit in 108 bytes, pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="xm-ui-", dir="/tmp"))
    handle = DaemonHandle(path, ["--grace_period_seconds=1"])
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()
        kill_job_processes(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ui(ui_daemon: DaemonHandle) -> Iterator[UiServer]:
    yield from serve(ui_daemon)


@pytest.fixture(scope="module")
def jobs_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="xm-ui-jobs-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
