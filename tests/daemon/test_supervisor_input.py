"""The job supervisor on its own: a request it cannot start fails that job, not the others."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from launcher_server.backends.local import records, supervisor


def _request(job_dir: Path, argv: list[str]) -> bytes:
    request = supervisor.Request(
        key=[1, 1, job_dir.name],
        argv=argv,
        env={"PATH": "/bin:/usr/bin"},
        job_dir=str(job_dir),
        log_cap=1 << 20,
    )
    return supervisor.frame(request.to_json())


def test_a_request_posix_spawn_refuses_fails_its_job_and_the_supervisor_goes_on(
    tmp_path: Path,
) -> None:
    bad, good = tmp_path / "jobs" / "bad", tmp_path / "jobs" / "good"
    for directory in (bad, good, tmp_path / "run"):
        directory.mkdir(parents=True)
    process = subprocess.Popen(
        [sys.executable, "-m", supervisor.__name__, f"--run_dir={tmp_path / 'run'}"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # A NUL in an argument: posix_spawn raises ValueError, not OSError.
    _, errors = process.communicate(
        _request(bad, ["/bin/true", "a\0b"]) + _request(good, ["/bin/true"]), timeout=30
    )
    assert process.returncode == 0, errors.decode()
    refused = records.read_exited(bad)
    assert refused is not None
    assert refused.exit_code == 127
    assert "cannot execute" in refused.reason
    ran = records.read_exited(good)
    assert ran is not None
    assert ran.exit_code == 0
