from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle, kill_job_processes


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Short: a Unix socket path must fit in 108 bytes, pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="xm-", dir="/tmp"))
    yield path
    kill_job_processes(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(state_dir: Path) -> Iterator[DaemonHandle]:
    handle = DaemonHandle(state_dir, ["--grace_period_seconds=2"])
    handle.start()
    yield handle
    handle.stop()
