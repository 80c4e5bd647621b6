"""A Vertex AI job's output, read from Cloud Logging (`entries.list`) with the official client.

Vertex AI writes each replica's output lines as entries of resource type `ml_job` labelled with
the job's id and the replica's task name (workerpool0-0, ...); stdout lines are INFO, stderr
lines ERROR. A launcher job is one worker pool, so its log is the entries of that pool's tasks,
in time order; with several replicas each line is prefixed with its task name.
Reading is incremental (entries after the last one seen) and throttled, so a follower that
polls often costs one API call per second at most; once the job has ended, one more read
happens at once, so that its last lines are not cut off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from launcher_server.logs import LogRead, LogSource

MIN_FETCH_SECONDS = 1.0
PAGE_SIZE = 1000
ERROR_SEVERITY = 500  # LogSeverity.ERROR


class Where:
    """What identifies a job's entries: project, CustomJob id, worker pool index."""

    def __init__(self, project: str, job_id: str, pool: int) -> None:
        self.project = project
        self.job_id = job_id
        self.pool = pool


class CloudLoggingSource(LogSource):
    """The job's output as three growing buffers (output, stdout, stderr)."""

    def __init__(
        self, client: Any, locate: Callable[[], Where | None], is_final: Callable[[], bool]
    ) -> None:
        self._client = client
        self._locate = locate
        self._is_final = is_final
        self._fetched_final = False
        self._where: Where | None = None
        self._lock = threading.Lock()
        self._buffers = {"output": bytearray(), "stdout": bytearray(), "stderr": bytearray()}
        self._last_timestamp = ""
        self._seen_at_last: set[str] = set()
        self._fetched_at = 0.0

    def read(self, stream: str, offset: int, max_bytes: int) -> LogRead:
        with self._lock:
            buffer = self._buffers[stream]
            if offset < 0 or offset >= len(buffer):
                self._fetch()
            start = offset if offset >= 0 else max(0, len(buffer) + offset)
            return LogRead(start, bytes(buffer[start : start + max_bytes]))

    def _fetch(self) -> None:
        # Throttled, except once after the job ended: its last lines are then read at once.
        final_now = not self._fetched_final and self._is_final()
        if not final_now and time.monotonic() - self._fetched_at < MIN_FETCH_SECONDS:
            return
        self._fetched_final = self._fetched_final or final_now
        self._fetched_at = time.monotonic()
        if self._where is None:
            self._where = self._locate()
            if self._where is None:
                return  # not created yet
        where = self._where
        query = (
            f'resource.type="ml_job" AND resource.labels.job_id="{where.job_id}" '
            f'AND resource.labels.task_name:"workerpool{where.pool}-"'
        )
        if self._last_timestamp:
            query += f' AND timestamp>="{self._last_timestamp}"'
        try:
            pager = self._client.list_log_entries(
                request={
                    "resource_names": [f"projects/{where.project}"],
                    "filter": query,
                    "order_by": "timestamp asc",
                    "page_size": PAGE_SIZE,
                },
                retry=None,
                timeout=30,
            )
            entries = list(pager)
        except Exception:  # an outage: the follower tries again on its next read
            return
        for entry in entries:
            stamp = entry.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if stamp == self._last_timestamp and entry.insert_id in self._seen_at_last:
                continue
            if stamp != self._last_timestamp:
                self._last_timestamp = stamp
                self._seen_at_last = set()
            self._seen_at_last.add(entry.insert_id)
            self._append(entry)

    def _append(self, entry: Any) -> None:
        text = entry.text_payload
        if not text and "message" in entry.json_payload:
            text = str(entry.json_payload["message"])
        task = entry.resource.labels.get("task_name", "")
        if task and not task.endswith("-0"):
            text = f"[{task}] {text}"
        line = (text + "\n").encode()
        stream = "stderr" if int(entry.severity) >= ERROR_SEVERITY else "stdout"
        self._buffers[stream] += line
        self._buffers["output"] += line
