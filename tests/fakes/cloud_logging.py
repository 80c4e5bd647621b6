"""A Cloud Logging emulator: `google.logging.v2.LoggingServiceV2/ListLogEntries` over gRPC.

Serves the entries the Vertex AI emulator writes for its jobs' containers, as Vertex AI does:
resource type "ml_job" with labels job_id, task_name and project_id, one entry per output line
(stdout INFO, stderr ERROR). Filters: resource.type, resource.labels.*, labels.*, severity,
timestamp and insert_id comparisons (see tests.fakes.filters); order_by "timestamp asc|desc".
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from typing import Any

import grpc
from google.api import monitored_resource_pb2
from google.cloud.logging_v2 import types as logging_types

from tests.fakes import filters

SERVICE = "google.logging.v2.LoggingServiceV2"
MAX_PAGE = 1000


def rfc3339(moment: Any) -> str:
    return str(moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


class LogStore:
    """Entries of every job, in insertion order (timestamps never go backwards)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, str]] = []
        self._last = datetime.datetime.fromtimestamp(0, datetime.UTC)

    def write(
        self, project: str, job_id: str, task_name: str, text: str, *, stderr: bool = False
    ) -> None:
        with self._lock:
            now = max(datetime.datetime.now(datetime.UTC), self._last)
            self._last = now
            self._entries.append(
                {
                    "log_name": f"projects/{project}/logs/{task_name}",
                    "resource.type": "ml_job",
                    "resource.labels.job_id": job_id,
                    "resource.labels.task_name": task_name,
                    "resource.labels.project_id": project,
                    "severity": "ERROR" if stderr else "INFO",
                    "timestamp": rfc3339(now),
                    "insert_id": f"{len(self._entries):012d}",
                    "text_payload": text,
                }
            )

    def query(self, projects: set[str], parsed: filters.Filter) -> list[dict[str, str]]:
        with self._lock:
            entries = list(self._entries)
        return [
            entry
            for entry in entries
            if entry["resource.labels.project_id"] in projects and filters.matches(parsed, entry)
        ]


def _entry_message(entry: dict[str, str]) -> logging_types.LogEntry:
    labels = {
        key.removeprefix("resource.labels."): value
        for key, value in entry.items()
        if key.startswith("resource.labels.")
    }
    return logging_types.LogEntry(
        log_name=entry["log_name"],
        resource=monitored_resource_pb2.MonitoredResource(type="ml_job", labels=labels),
        text_payload=entry["text_payload"],
        timestamp=datetime.datetime.strptime(entry["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.UTC
        ),
        severity=entry["severity"],
        insert_id=entry["insert_id"],
    )


def _field_allowed(name: str) -> bool:
    return name in (
        "resource.type",
        "severity",
        "timestamp",
        "insert_id",
        "log_name",
        "logName",
    ) or (name.startswith(("resource.labels.", "labels.")))


class LoggingService:
    """The ListLogEntries method; `before_call` injects faults and counts calls."""

    def __init__(self, store: LogStore, before_call: Callable[[str, Any], None]) -> None:
        self.store = store
        self._before_call = before_call

    def list_log_entries(
        self, request: logging_types.ListLogEntriesRequest, context: grpc.ServicerContext
    ) -> logging_types.ListLogEntriesResponse:
        self._before_call("ListLogEntries", context)
        projects: set[str] = set()
        for name in request.resource_names:
            parts = name.split("/")
            if len(parts) != 2 or parts[0] != "projects" or not parts[1]:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"resource_names: {name!r} is not projects/PROJECT_ID (the only form served)",
                )
            projects.add(parts[1])
        if not projects:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "resource_names is required")
        try:
            parsed = filters.parse(request.filter.replace("logName", "log_name"), _field_allowed)
        except filters.FilterError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"filter: {error}")
        order = (request.order_by or "timestamp asc").strip()
        if order not in ("timestamp asc", "timestamp desc", "timestamp"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"order_by {order!r} not supported")
        entries = self.store.query(projects, parsed)
        if order == "timestamp desc":
            entries.reverse()
        page_size = min(request.page_size or 50, MAX_PAGE)
        offset = int(request.page_token or 0)
        page = entries[offset : offset + page_size]
        next_token = str(offset + page_size) if offset + page_size < len(entries) else ""
        return logging_types.ListLogEntriesResponse(
            entries=[_entry_message(entry) for entry in page], next_page_token=next_token
        )

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ListLogEntries": grpc.unary_unary_rpc_method_handler(
                    self.list_log_entries,
                    request_deserializer=logging_types.ListLogEntriesRequest.deserialize,
                    response_serializer=logging_types.ListLogEntriesResponse.serialize,
                )
            },
        )
