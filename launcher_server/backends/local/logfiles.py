"""A local job's log files: stdout.log, stderr.log and the interleaved output.log, size-capped.

Shared by the process supervisor (which copies pipes) and the container backend (which copies
Docker Engine's log stream), so that both kinds of job leave the same files with the same cap
semantics, and StreamLogs reads either the same way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from launcher_server.backends.local import records

STREAMS = ("stdout", "stderr")


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
                size = os.stat(self._job_dir / records.LOGS[name]).st_size
            except FileNotFoundError:
                size = 0
            self._sizes[name] = size
        return size

    def _file(self, name: str) -> IO[bytes]:
        file = self._files.get(name)
        if file is None:
            file = self._files[name] = open(  # noqa: SIM115  # closed by close()
                self._job_dir / records.LOGS[name], "ab", buffering=0
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
        return {name: self._size(name) for name in records.LOGS}

    def _mark_truncated(self) -> None:
        if not self._truncated:
            self._truncated = True
            (self._job_dir / records.TRUNCATED).touch()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def rewind(job_dir: Path, sizes: Mapping[str, int]) -> None:
    """Cuts each log file back to the given size (what a checkpoint recorded).

    Output copied after the checkpoint is copied again when copying resumes from it; cutting
    first keeps it from appearing twice.
    """
    for name, filename in records.LOGS.items():
        size = sizes.get(name)
        if size is None:
            continue
        with contextlib.suppress(FileNotFoundError):
            path = job_dir / filename
            if path.stat().st_size > size:
                os.truncate(path, size)
