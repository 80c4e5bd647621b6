"""The JSON form of `xmanager list --json` and `xmanager show --json` (docs/cli.md).

The schema is versioned: fields may be added within a version, never renamed or removed.
Times are RFC 3339 in UTC, or null when not set; states are names such as "SUCCEEDED".
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import timestamp_pb2

from xmanager.launcher.v1 import launcher_pb2 as pb

SCHEMA_VERSION = 1


def state_name(state: int) -> str:
    """JOB_STATE_RUNNING -> RUNNING."""
    return str(pb.JobState.Name(state)).removeprefix("JOB_STATE_")


def _time(stamp: timestamp_pb2.Timestamp) -> str | None:
    if not stamp.seconds and not stamp.nanos:
        return None
    moment = stamp.ToDatetime(tzinfo=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def work_unit_args(unit: pb.WorkUnit) -> dict[str, Any]:
    """The arguments the work unit was added with (its hyperparameters)."""
    try:
        args = json.loads(unit.args_json or "{}")
    except json.JSONDecodeError:
        return {}
    return args if isinstance(args, dict) else {}


def status(value: pb.JobStatus) -> dict[str, Any]:
    return {
        "state": state_name(value.state),
        "exit_code": value.exit_code if value.has_exit_code else None,
        "reason": value.reason,
        "start_time": _time(value.start_time),
        "end_time": _time(value.end_time),
    }


def artifact(value: pb.Artifact) -> dict[str, Any]:
    """What a job runs: {"kind": "binary", "path", "sha256"} or {"kind": "image", ...}."""
    result: dict[str, Any]
    kind = value.WhichOneof("kind")
    if kind == "local_binary":
        result = {"kind": "binary", "path": value.local_binary.path}
        result["sha256"] = value.local_binary.sha256 or None
    elif kind == "oci_image":
        image = value.oci_image
        result = {
            "kind": "image",
            "reference": image.reference or None,
            "tarball_path": image.tarball_path or None,
            "digest": image.digest or None,
        }
    else:
        result = {"kind": None}
    result["bazel_label"] = value.bazel_label or None
    return result


def job(value: pb.Job) -> dict[str, Any]:
    return {
        "name": value.name,
        "status": status(value.status),
        "artifact": artifact(value.artifact),
        "args": list(value.args),
        "executor": value.executor.WhichOneof("kind"),
        "log": value.log_location or None,
    }


def work_unit(value: pb.WorkUnit) -> dict[str, Any]:
    return {
        "id": value.work_unit_id,
        "args": work_unit_args(value),
        "status": status(value.status),
        "create_time": _time(value.create_time),
        "jobs": [job(j) for j in value.jobs],
    }


def _counts(counts: Mapping[int, int]) -> dict[str, int]:
    return {state_name(state): count for state, count in sorted(counts.items()) if count}


def experiment(value: pb.Experiment) -> dict[str, Any]:
    return {
        "id": value.id,
        "title": value.title,
        "tags": list(value.tags),
        "notes": value.notes,
        "creator": value.creator,
        "create_time": _time(value.create_time),
        "update_time": _time(value.update_time),
        "launch_script": value.launch_script_path or None,
        "work_unit_count": value.work_unit_count,
        "work_units_by_state": _counts(value.work_unit_state_counts),
    }


def listing(experiments: Iterable[pb.Experiment]) -> str:
    """`xmanager list --json`."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "experiments": [experiment(e) for e in experiments],
    }
    return json.dumps(document, indent=2, sort_keys=False)


def details(value: pb.Experiment, units: Iterable[pb.WorkUnit]) -> str:
    """`xmanager show --json`: the experiment with its work units and their jobs."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "experiment": {**experiment(value), "work_units": [work_unit(u) for u in units]},
    }
    return json.dumps(document, indent=2, sort_keys=False)
