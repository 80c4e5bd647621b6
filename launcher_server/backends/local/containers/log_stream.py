"""Copying a container's output from Docker Engine's log stream into the job's log files.

The engine keeps a container's output in its log driver; the daemon reads it back through the
logs endpoint with timestamps and copies it into stdout.log, stderr.log and output.log (the
same files, with the same size cap, as a supervised process's). Each message's timestamp moves
a cursor (one per stream) that is checkpointed in the job directory with the log files' sizes,
so a restarted daemon cuts the files back to the checkpoint and resumes from the cursor: no
output is lost and none appears twice.

Stream formats (Docker Engine API, GET /containers/{id}/logs):
- without a TTY, frames of an 8-byte header (stream: 1 stdout, 2 stderr; 3 zero bytes; a
  big-endian 32-bit length) and a payload, one log message per frame;
- with a TTY, the raw output: messages are lines, told apart by their leading timestamps.
Each message starts with its RFC 3339 timestamp (nanoseconds) and a space. The stream can
end before its last messages when the container exits: read once more after the exit.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from launcher_server import job_dirs
from launcher_server.backends.local import records
from launcher_server.job_dirs import JobLogs

CURSOR = "container-logs.json"
_HEADER = struct.Struct(">BxxxL")
_STREAMS = {1: "stdout", 2: "stderr"}
_TIMESTAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")
_CHECKPOINT_SECONDS = 0.25
_SILENT_STREAM_MARGIN = 10 * 1_000_000_000

ReadFn = Callable[[int], bytes]


def parse_timestamp(text: bytes) -> int | None:
    """Nanoseconds since the epoch of a Docker log timestamp, None if it is not one."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    zone_text = "+00:00" if zone == b"Z" else zone.decode()
    seconds = int(datetime.datetime.fromisoformat(whole.decode() + zone_text).timestamp())
    return seconds * 1_000_000_000 + int((fraction or b"0").ljust(9, b"0"))


def split_message(payload: bytes) -> tuple[int | None, bytes]:
    """(timestamp, output) of a log message as the engine sends it with timestamps."""
    stamp, space, rest = payload.partition(b" ")
    time_ns = parse_timestamp(stamp) if space else None
    return (time_ns, rest) if time_ns is not None else (None, payload)


def _read_exact(read: ReadFn, size: int) -> bytes | None:
    """Exactly `size` bytes, or None at the end of the stream."""
    chunks: list[bytes] = []
    while size:
        chunk = read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def multiplexed_messages(read: ReadFn) -> Iterator[tuple[str, bytes]]:
    """(stream, payload) of each frame of a non-TTY container's log stream."""
    while True:
        header = _read_exact(read, _HEADER.size)
        if header is None:
            return
        stream, length = _HEADER.unpack(header)
        payload = _read_exact(read, length) if length else b""
        if payload is None:
            return
        yield _STREAMS.get(stream, "stdout"), payload


def tty_messages(read: ReadFn, chunk: int = 1 << 16) -> Iterator[tuple[str, bytes]]:
    """("stdout", payload) per line of a TTY container's (unframed) log stream."""
    pending = b""
    while True:
        data = read(chunk)
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield "stdout", line + b"\n"
    if pending:
        yield "stdout", pending


@dataclasses.dataclass
class StreamCursor:
    """How far one stream has been copied: its last message's timestamp, and how many of its
    messages carried exactly that timestamp (the pieces of a long line share one)."""

    time_ns: int = 0
    count: int = 0
    # Messages at `time_ns` still to skip: read again after resuming from the cursor.
    skip: int = dataclasses.field(default=0, repr=False, compare=False)

    def advance(self, time_ns: int) -> bool:
        """Whether a message with this timestamp is new; moves the cursor past it if so."""
        if time_ns < self.time_ns:
            return False
        if time_ns == self.time_ns:
            if self.skip > 0:
                self.skip -= 1
                return False
            self.count += 1
            return True
        self.time_ns, self.count, self.skip = time_ns, 1, 0
        return True


@dataclasses.dataclass
class Cursor:
    """How far a container's output has been copied, stream by stream.

    The engine stamps each stream's messages in order, but stdout and stderr are stamped and
    written by separate goroutines: a stderr message may be written after a stdout message
    stamped later. So each stream keeps its own cursor, and reading resumes from the earliest.
    """

    streams: dict[str, StreamCursor] = dataclasses.field(default_factory=dict)
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)

    def since(self) -> str:
        """The logs endpoint's `since`: no stream's next message is before it."""
        copied = [c.time_ns for c in self.streams.values() if c.count]
        if not copied:
            return "0"
        # A stream with nothing copied yet: its first message is stamped shortly before it is
        # written, so certainly after the other stream's last message minus a margin.
        floors = [
            self.streams[s].time_ns if s in self.streams else max(copied) - _SILENT_STREAM_MARGIN
            for s in job_dirs.STREAMS
        ]
        seconds, nanos = divmod(max(0, min(floors)), 1_000_000_000)
        return f"{seconds}.{nanos:09d}"

    def advance(self, stream: str, time_ns: int | None) -> bool:
        """Whether a message of `stream` with this timestamp is new (then it moves past it)."""
        if time_ns is None:
            return True  # no timestamp to order it by: copy it
        return self.streams.setdefault(stream, StreamCursor()).advance(time_ns)

    def rewound(self) -> Cursor:
        """The cursor to read again from: messages at its times already copied are skipped."""
        streams = {
            name: StreamCursor(c.time_ns, c.count, skip=c.count) for name, c in self.streams.items()
        }
        return Cursor(streams, dict(self.sizes))

    @classmethod
    def load(cls, job_dir: Path) -> Cursor | None:
        try:
            data = json.loads((job_dir / CURSOR).read_text())
            streams = {
                name: StreamCursor(int(time_ns), int(count))
                for name, (time_ns, count) in data["streams"].items()
            }
            return cls(streams, {str(k): int(v) for k, v in data["sizes"].items()})
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, job_dir: Path) -> None:
        streams = {name: [c.time_ns, c.count] for name, c in self.streams.items()}
        records.write_atomic(job_dir / CURSOR, {"streams": streams, "sizes": self.sizes})


class LogCopier:
    """Copies log messages into a job's log files, checkpointing as it goes.

    Opening it cuts the log files back to the last checkpoint, so it must be the only writer
    of the job's logs; `since()` then says where to resume reading.
    """

    def __init__(self, job_dir: Path, cap: int) -> None:
        self._job_dir = job_dir
        saved = Cursor.load(job_dir)
        if saved is not None:
            job_dirs.rewind(job_dir, saved.sizes)
        self._cursor = saved.rewound() if saved is not None else Cursor()
        self._logs = JobLogs(job_dir, cap)
        self._saved_at = time.monotonic()
        self._dirty = saved is None

    def since(self) -> str:
        return self._cursor.since()

    def restart_read(self) -> None:
        """Reading starts again from `since()`: the messages at the cursor's time come again."""
        self._cursor = self._cursor.rewound()

    def copy(self, messages: Iterator[tuple[str, bytes]]) -> int:
        """Copies new messages until the stream ends; returns how many were new."""
        copied = 0
        for stream, payload in messages:
            time_ns, data = split_message(payload)
            if not self._cursor.advance(stream, time_ns):
                continue
            self._logs.write(stream, data)
            copied += 1
            self._dirty = True
            if time.monotonic() - self._saved_at >= _CHECKPOINT_SECONDS:
                self.checkpoint()
        return copied

    def checkpoint(self) -> None:
        if self._dirty:
            self._cursor.sizes = self._logs.sizes
            self._cursor.save(self._job_dir)
            self._dirty = False
        self._saved_at = time.monotonic()

    def close(self) -> None:
        self.checkpoint()
        self._logs.close()
