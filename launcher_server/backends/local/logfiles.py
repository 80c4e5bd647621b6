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
    written; opening existing files resumes at their current sizes.
    """

    def __init__(self, job_dir: Path, cap: int) -> None:
        self._job_dir = job_dir
        self._cap = cap
        self._files: dict[str, IO[bytes]] = {
            name: open(job_dir / filename, "ab", buffering=0)  # noqa: SIM115
            for name, filename in records.LOGS.items()
        }
        self._sizes = {name: os.fstat(f.fileno()).st_size for name, f in self._files.items()}
        self._truncated = (job_dir / records.TRUNCATED).exists()

    def write(self, stream: str, data: bytes) -> None:
        """Appends data written by the job to `stream` ("stdout" or "stderr")."""
        for name in (stream, "output"):
            room = self._cap - self._sizes[name]
            if room <= 0:
                self._mark_truncated()
                continue
            chunk = data[:room]
            self._files[name].write(chunk)
            self._sizes[name] += len(chunk)
            if len(chunk) < len(data):
                self._mark_truncated()

    @property
    def sizes(self) -> dict[str, int]:
        """Bytes in each file ("output", "stdout", "stderr")."""
        return dict(self._sizes)

    def _mark_truncated(self) -> None:
        if not self._truncated:
            self._truncated = True
            (self._job_dir / records.TRUNCATED).touch()

    def close(self) -> None:
        for f in self._files.values():
            f.close()


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
