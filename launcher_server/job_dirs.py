"""The job directory: where a job's records and output live, in one documented layout.

Every job has a directory `jobs/EXPERIMENT/WORK_UNIT/JOB/` under the state directory. The daemon
streams logs from it (StreamLogs) whatever the backend, so a backend either writes its jobs'
output here with `JobLogs` (local processes and containers do) or gives the daemon a
`logs.LogSource` of its own (a remote service's log API). The layout:

    output.log     stdout and stderr interleaved, as written
    stdout.log     the job's standard output
    stderr.log     the job's standard error
    truncated      present when a log reached its size cap

Backends keep their own records beside these (the local supervisor's `started.json`, ...).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from launcher_server.jobs import JobKey

LOGS = {"output": "output.log", "stdout": "stdout.log", "stderr": "stderr.log"}
TRUNCATED = "truncated"
STREAMS = ("stdout", "stderr")


@dataclasses.dataclass(frozen=True)
class JobDirs:
    """The directories of all jobs, under one root (the state directory's `jobs/`)."""

    root: Path

    def path(self, key: JobKey) -> Path:
        return self.root / str(key.experiment_id) / str(key.work_unit_id) / key.job_name

    def log_path(self, key: JobKey, stream: str = "output") -> Path:
        return self.path(key) / LOGS[stream]


class JobLogs:
    """Appends a job's output to its log files, each capped at `cap` bytes.

    Writes go straight to the files (no buffering), so their sizes always say how much was
    written; existing files are appended to, from their current sizes. A file is opened when
    something is first written to it: most short jobs of a sweep write nothing to stderr.
    """

    def __init__(self, job_dir: Path, cap: int) -> None:
        self._job_dir = job_dir
        self._cap = cap
        self._files: dict[str, IO[bytes]] = {}
        self._sizes: dict[str, int] = {}
        self._truncated = False

    def _size(self, name: str) -> int:
        size = self._sizes.get(name)
        if size is None:
            try:
                size = os.stat(self._job_dir / LOGS[name]).st_size
            except FileNotFoundError:
                size = 0
            self._sizes[name] = size
        return size

    def _file(self, name: str) -> IO[bytes]:
        file = self._files.get(name)
        if file is None:
            file = self._files[name] = open(  # noqa: SIM115  # closed by close()
                self._job_dir / LOGS[name], "ab", buffering=0
            )
        return file

    def write(self, stream: str, data: bytes) -> None:
        """Appends data written by the job to `stream` ("stdout" or "stderr")."""
        for name in (stream, "output"):
            room = self._cap - self._size(name)
            if room <= 0:
                self._mark_truncated()
                continue
            chunk = data[:room]
            self._file(name).write(chunk)
            self._sizes[name] += len(chunk)
            if len(chunk) < len(data):
                self._mark_truncated()

    @property
    def sizes(self) -> dict[str, int]:
        """Bytes in each file ("output", "stdout", "stderr")."""
        return {name: self._size(name) for name in LOGS}

    def _mark_truncated(self) -> None:
        if not self._truncated:
            self._truncated = True
            (self._job_dir / TRUNCATED).touch()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def rewind(job_dir: Path, sizes: Mapping[str, int]) -> None:
    """Cuts each log file back to the given size (what a checkpoint recorded).

    Output copied after the checkpoint is copied again when copying resumes from it; cutting
    first keeps it from appearing twice.
    """
    for name, filename in LOGS.items():
        size = sizes.get(name)
        if size is None:
            continue
        with contextlib.suppress(FileNotFoundError):
            path = job_dir / filename
            if path.stat().st_size > size:
                os.truncate(path, size)
