"""Reading local jobs' log files for StreamLogs: by offset, and following until the job ends."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from launcher_server.backends.local import records
from xmanager.launcher.v1 import launcher_pb2 as pb

_FILES: dict[int, str] = {
    pb.LOG_STREAM_UNSPECIFIED: records.LOGS["output"],
    pb.LOG_STREAM_STDOUT: records.LOGS["stdout"],
    pb.LOG_STREAM_STDERR: records.LOGS["stderr"],
}


def log_path(job_dir: Path, stream: int) -> Path:
    return job_dir / _FILES.get(stream, records.LOGS["output"])


def _start(path: Path, offset: int) -> int:
    """A negative offset counts from the end of the file (tail)."""
    if offset >= 0:
        return offset
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    return max(0, size + offset)


def read_log(job_dir: Path, stream: int, offset: int, max_bytes: int) -> tuple[int, bytes, bool]:
    """(offset of the data, up to max_bytes of data, whether the log was truncated)."""
    path = log_path(job_dir, stream)
    start = _start(path, offset)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(start)
            data = f.read(max_bytes)
    except FileNotFoundError:
        return start, b"", False
    # Flagged on the chunk that reaches the end of a log cut at its size cap.
    truncated = start + len(data) >= size and (job_dir / records.TRUNCATED).exists()
    return start, data, truncated


def follow_log(
    job_dir: Path,
    stream: int,
    offset: int,
    is_final: Callable[[], bool],
    *,
    poll_interval: float = 0.1,
    chunk: int = 64 * 1024,
) -> Iterator[tuple[int, bytes]]:
    """Yields (offset, data) as the log grows, until the job is final and the log drained."""
    path = log_path(job_dir, stream)
    position = _start(path, offset)
    handle = None
    try:
        while True:
            if handle is None and path.exists():
                handle = open(path, "rb")  # noqa: SIM115  # held across iterations
                handle.seek(position)
            data = handle.read(chunk) if handle is not None else b""
            if data:
                yield position, data
                position += len(data)
                continue
            # Check for the end only with nothing left to read, so no output is ever cut off.
            if is_final():
                if handle is not None and os.fstat(handle.fileno()).st_size > position:
                    continue
                return
            time.sleep(poll_interval)
    finally:
        if handle is not None:
            handle.close()
