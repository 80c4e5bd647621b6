"""Work units as the dashboard shows them: flat rows of plain values, ready for JSON.

A unit's hyperparameters are its `args_json` (what the launch script passed to
`experiment.add`), flattened so that nested values get dotted column names.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from xmanager.launcher.v1 import launcher_pb2 as pb

FINAL_STATES = frozenset(
    {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED, pb.JOB_STATE_LOST}
)
ACTIVE_STATES = frozenset({pb.JOB_STATE_PENDING, pb.JOB_STATE_STARTING, pb.JOB_STATE_RUNNING})
# Display names, in life-cycle order (the order of the status bars).
STATE_NAMES: dict[int, str] = {
    pb.JOB_STATE_UNSPECIFIED: "UNKNOWN",
    pb.JOB_STATE_PENDING: "PENDING",
    pb.JOB_STATE_STARTING: "STARTING",
    pb.JOB_STATE_RUNNING: "RUNNING",
    pb.JOB_STATE_SUCCEEDED: "SUCCEEDED",
    pb.JOB_STATE_FAILED: "FAILED",
    pb.JOB_STATE_CANCELLING: "CANCELLING",
    pb.JOB_STATE_CANCELLED: "CANCELLED",
    pb.JOB_STATE_LOST: "LOST",
}
STATE_BY_NAME: dict[str, int] = {name: number for number, name in STATE_NAMES.items()}

Scalar = str | int | float | bool | None


def state_name(state: int) -> str:
    return STATE_NAMES.get(state, "UNKNOWN")


def seconds(timestamp: Timestamp) -> float | None:
    """Unix seconds, or None for an unset timestamp."""
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return None
    return timestamp.seconds + timestamp.nanos / 1e9


def hyperparameters(args_json: str) -> dict[str, Scalar]:
    """`{"a": {"b": 1}, "c": [1, 2]}` -> `{"a.b": 1, "c": "[1, 2]"}`; bad JSON -> {"args": text}."""
    if not args_json:
        return {}
    try:
        value = json.loads(args_json)
    except ValueError:
        return {"args": args_json}
    if not isinstance(value, dict):
        return {"args": _scalar(value)}
    flat: dict[str, Scalar] = {}
    _flatten("", value, flat)
    return flat


def _flatten(prefix: str, value: dict[str, Any], out: dict[str, Scalar]) -> None:
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict) and item:
            _flatten(name + ".", item, out)
        else:
            out[name] = _scalar(item)


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True)


def backend(job: pb.Job) -> str:
    """The backend name the daemon uses ("local", "local_container", "vertex", "kubernetes")."""
    kind = job.executor.WhichOneof("kind")
    if kind == "local":
        return "local_container" if job.artifact.WhichOneof("kind") == "oci_image" else "local"
    return kind or ""


def artifact(job: pb.Job) -> str:
    """A binary's path or an image's digest (else its reference or tarball)."""
    kind = job.artifact.WhichOneof("kind")
    if kind == "local_binary":
        return job.artifact.local_binary.path
    if kind == "oci_image":
        image = job.artifact.oci_image
        return image.digest or image.reference or image.tarball_path
    return job.artifact.bazel_label


def console_link(job: pb.Job) -> dict[str, str] | None:
    """Where to look at the job in its backend's own tools, when it has them."""
    handle = job.backend_handle
    if not handle:
        return None
    kind = job.executor.WhichOneof("kind")
    if kind == "vertex":
        # projects/P/locations/R/customJobs/ID
        parts = handle.split("/")
        if len(parts) == 6 and parts[0] == "projects" and parts[4] == "customJobs":
            project, region, job_id = parts[1], parts[3], parts[5]
            return {
                "href": "https://console.cloud.google.com/vertex-ai/locations/"
                f"{region}/training/{job_id}/cpu?project={project}",
                "label": "Vertex AI console",
            }
    if kind == "kubernetes" and "/" in handle:
        namespace, _, name = handle.partition("/")
        return {"command": f"kubectl -n {namespace} describe job {name}", "label": "kubectl"}
    return None


def job_row(job: pb.Job) -> dict[str, Any]:
    status = job.status
    return {
        "name": job.name,
        "state": state_name(status.state),
        "native_state": status.native_state,
        "reason": status.reason,
        "exit_code": status.exit_code if status.has_exit_code else None,
        "artifact": artifact(job),
        "backend": backend(job),
        "handle": job.backend_handle,
        "link": console_link(job),
        "start": seconds(status.start_time),
        "end": seconds(status.end_time),
    }


def unit_row(unit: pb.WorkUnit, params: dict[str, Scalar] | None = None) -> dict[str, Any]:
    """A work unit's row in the sweep table."""
    status = unit.status
    jobs = [job_row(job) for job in unit.jobs]
    return {
        "id": unit.work_unit_id,
        "state": state_name(status.state),
        "final": status.state in FINAL_STATES,
        "reason": status.reason,
        "exit_code": status.exit_code if status.has_exit_code else None,
        "native_state": status.native_state
        or ", ".join(j["native_state"] for j in jobs if j["native_state"]),
        "params": params if params is not None else hyperparameters(unit.args_json),
        "jobs": jobs,
        "created": seconds(unit.create_time),
        "start": seconds(status.start_time),
        "end": seconds(status.end_time),
        "updated": seconds(status.update_time),
    }


def status_update(unit: pb.WorkUnit) -> dict[str, Any]:
    """What a live update changes in a row (a watch carries no args or artifacts)."""
    status = unit.status
    return {
        "id": unit.work_unit_id,
        "state": state_name(status.state),
        "final": status.state in FINAL_STATES,
        "reason": status.reason,
        "exit_code": status.exit_code if status.has_exit_code else None,
        "native_state": status.native_state,
        "start": seconds(status.start_time),
        "end": seconds(status.end_time),
        "updated": seconds(status.update_time),
    }


def state_counts(experiment: pb.Experiment) -> list[tuple[str, int]]:
    """(state name, count) in life-cycle order, zero counts left out."""
    counts = experiment.work_unit_state_counts
    return [(name, counts[number]) for number, name in STATE_NAMES.items() if counts.get(number)]
