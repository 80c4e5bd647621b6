"""Jobs' output from the pod log API: every replica followed (lines prefixed with the replica
index when there are several), kept in the job directory so that the last lines survive the
pods. Following starts when someone reads a job's logs; a job that ends unread has its logs
fetched once, while the API server still has them."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from launcher_server.backends.kubernetes import states
from launcher_server.job_dirs import LOGS, TRUNCATED, JobDirs
from launcher_server.jobs import JobKey
from launcher_server.logs import JobDirLogSource, LogRead, LogSource
from xmanager.launcher import kubernetes_names as names

_log = logging.getLogger(__name__)
Obj = Mapping[str, Any]
# Which pods' streams were copied whole, one "UID STREAM" line each.
COPIED = "kubernetes-logs-copied"
# The job directory's log files and the pod log API's `stream` option for each.
_STREAMS = {"output": "All", "stdout": "Stdout", "stderr": "Stderr"}


class _Output:
    """The job's output.log, appended to by whole lines from several replicas."""

    def __init__(self, path: Path, cap: int) -> None:
        self._path = path
        self._cap = cap
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._path, "ab") as f:
                room = self._cap - f.tell()
                if room <= 0:
                    (self._path.parent / TRUNCATED).touch()
                    return
                f.write(data[:room])
                if len(data) > room:
                    (self._path.parent / TRUNCATED).touch()


class LogCollector:
    """Per job: which pods' logs were captured (followed to the end or fetched)."""

    def __init__(self, job_dirs: JobDirs, cap: int) -> None:
        self._job_dirs = job_dirs
        self._cap = cap
        self._lock = threading.Lock()
        self._outputs: dict[tuple[JobKey, str], _Output] = {}
        self._started: set[str] = set()  # pod uids being (or already) captured
        self._fetches: dict[JobKey, list[threading.Thread]] = {}  # one-off copies under way

    def _output(self, key: JobKey, stream: str) -> _Output:
        with self._lock:
            output = self._outputs.get((key, stream))
            if output is None:
                path = self._job_dirs.path(key) / LOGS[stream]
                output = self._outputs[(key, stream)] = _Output(path, self._cap)
            return output

    def _claim(self, pod: Obj) -> bool:
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        with self._lock:
            if not uid or uid in self._started:
                return False
            self._started.add(uid)
            return True

    def capture(
        self, key: JobKey, core: Any, pods: Sequence[Obj], replicas: int, *, follow: bool
    ) -> None:
        """Starts copying each pod's log not yet captured (following it, or all at once)."""
        copied = self._copied(key)
        for pod in pods:
            status = pod.get("status") or {}
            waiting = not status.get("containerStatuses") or all(
                "waiting" in (c.get("state") or {}) for c in status["containerStatuses"]
            )
            if waiting or not self._claim(pod):
                continue
            prefix = f"[{states.replica(pod)}] ".encode() if replicas > 1 else b""
            # Interleaved output, and each stream alone (the API's `stream` log option).
            uid = str(pod["metadata"]["uid"])
            for stream in _STREAMS:
                if f"{uid} {stream}" in copied:
                    continue  # copied to its end before (a previous daemon)
                thread = threading.Thread(
                    target=self._copy,
                    args=(key, core, pod, prefix, follow, stream),
                    name=f"logs-{key}-{stream}",
                    daemon=True,
                )
                # Registered and started under the lock: a reader waiting for the copies never
                # sees one registered but not started.
                with self._lock:
                    if not follow:
                        self._fetches.setdefault(key, []).append(thread)
                    thread.start()

    def _copied(self, key: JobKey) -> set[str]:
        try:
            text = (self._job_dirs.path(key) / COPIED).read_text()
        except FileNotFoundError:
            return set()
        return set(text.splitlines())

    def wait(self, key: JobKey, timeout: float) -> None:
        """Waits for the one-off copies of a finished job's logs, so a read sees them."""
        with self._lock:
            threads = self._fetches.pop(key, [])
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _copy(  # noqa: PLR0917  # a thread's target
        self, key: JobKey, core: Any, pod: Obj, prefix: bytes, follow: bool, stream: str
    ) -> None:
        meta = pod["metadata"]
        output = self._output(key, stream)
        try:
            response = core.read_namespaced_pod_log(
                meta["name"],
                meta["namespace"],
                container=names.CONTAINER_NAME,
                follow=follow,
                stream=_STREAMS[stream],
                _preload_content=False,
                # Per read: only a day of silence ends a follow.
                _request_timeout=(10, 86400) if follow else (10, 60),
            )
            pending = b""
            for chunk in response.stream(64 * 1024, decode_content=True):
                pending += chunk
                if b"\n" in pending:
                    complete, _, pending = pending.rpartition(b"\n")
                    output.write(_prefixed(complete + b"\n", prefix))
            if pending:
                output.write(_prefixed(pending, prefix))
            response.release_conn()
            # Whole: a later daemon must not copy it again.
            directory = self._job_dirs.path(key)
            directory.mkdir(parents=True, exist_ok=True)
            with self._lock, open(directory / COPIED, "a") as marker:
                marker.write(f"{meta['uid']} {stream}\n")
        except Exception as error:  # a pod gone with its logs: nothing to keep
            _log.info("logs of %s from pod %s: %s", key, meta.get("name"), error)

    def source(self, key: JobKey, on_read: Callable[[], None]) -> LogSource:
        return _Source(JobDirLogSource(self._job_dirs.path(key)), on_read)


def _prefixed(data: bytes, prefix: bytes) -> bytes:
    if not prefix:
        return data
    lines = data.split(b"\n")
    tail = lines.pop() if not data.endswith(b"\n") else None
    out = b"".join(prefix + line + b"\n" for line in (lines[:-1] if tail is None else lines))
    return out + (prefix + tail if tail else b"")


class _Source(LogSource):
    """The job directory's output.log; a read first makes sure the pods are being followed."""

    def __init__(self, files: JobDirLogSource, on_read: Callable[[], None]) -> None:
        self._files = files
        self._on_read = on_read

    def read(self, stream: str, offset: int, max_bytes: int) -> LogRead:
        self._on_read()
        return self._files.read(stream, offset, max_bytes)


def output_size(job_dirs: JobDirs, key: JobKey) -> int:
    try:
        return os.stat(job_dirs.path(key) / LOGS["output"]).st_size
    except FileNotFoundError:
        return 0
