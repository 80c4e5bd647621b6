"""Jobs' logs for StreamLogs: a `LogSource` per job, read by offset or followed to the end.

A backend that writes its jobs' output into their job directories (see `job_dirs`) is served by
`JobDirLogSource`; a backend whose service keeps the logs (Cloud Logging, the Kubernetes API)
gives its own `LogSource`. StreamLogs treats both the same.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from launcher_server.job_dirs import LOGS, TRUNCATED
from xmanager.launcher.v1 import launcher_pb2 as pb

_STREAMS: dict[int, str] = {
    pb.LOG_STREAM_UNSPECIFIED: "output",
    pb.LOG_STREAM_STDOUT: "stdout",
    pb.LOG_STREAM_STDERR: "stderr",
}


def stream_name(stream: int) -> str:
    """ "output", "stdout" or "stderr" for a pb.LogStream value."""
    return _STREAMS.get(stream, "output")


@dataclasses.dataclass(frozen=True)
class LogRead:
    """Up to the bytes asked for, from `start` (where a negative offset resolved to)."""

    start: int
    data: bytes
    # True on the read that reaches the end of a log cut at its size cap.
    truncated: bool = False


class LogSource(abc.ABC):
    """One job's output, addressable by byte offset in each stream."""

    @abc.abstractmethod
    def read(self, stream: str, offset: int, max_bytes: int) -> LogRead:
        """Bytes of `stream` ("output", "stdout", "stderr") from `offset`; a negative offset
        counts from the current end (a tail). Empty data when nothing more is there yet."""


class JobDirLogSource(LogSource):
    """The log files a backend wrote into the job's directory."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir

    def read(self, stream: str, offset: int, max_bytes: int) -> LogRead:
        path = self.job_dir / LOGS[stream]
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                start = offset if offset >= 0 else max(0, size + offset)
                f.seek(start)
                data = f.read(max_bytes)
        except FileNotFoundError:
            return LogRead(max(offset, 0), b"")
        truncated = start + len(data) >= size and (self.job_dir / TRUNCATED).exists()
        return LogRead(start, data, truncated)


def read_all(source: LogSource, stream: str, offset: int, chunk: int) -> Iterator[LogRead]:
    """The log from `offset` to its current end, in chunks."""
    while True:
        read = source.read(stream, offset, chunk)
        if not read.data:
            return
        yield read
        offset = read.start + len(read.data)


def follow(
    source: LogSource,
    stream: str,
    offset: int,
    is_final: Callable[[], bool],
    *,
    poll_interval: float = 0.1,
    chunk: int = 64 * 1024,
) -> Iterator[LogRead]:
    """Yields the log as it grows, until the job is final and the log is drained."""
    position: int | None = None if offset < 0 else offset
    while True:
        read = source.read(stream, offset if position is None else position, chunk)
        position = read.start + len(read.data)
        if read.data:
            yield read
            continue
        # The end is checked only with nothing left to read, then once more after it: output
        # written just before the job ended is never cut off.
        if is_final():
            last = source.read(stream, position, chunk)
            if not last.data:
                return
            position = last.start + len(last.data)
            yield last
            continue
        time.sleep(poll_interval)
