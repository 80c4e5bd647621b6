"""A launcher job's state from its batch/v1 Job and pods, with the reason a person needs.

Pod conditions and container states say why a job waits or failed: an image that cannot be
pulled, no node that fits (the scheduler's message), OOMKilled, an eviction, a deadline, a
backoff limit, an exit code. The native state keeps Kubernetes' own words.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

from launcher_server.jobs import JobKey, JobObservation
from xmanager.launcher import kubernetes_names as names
from xmanager.launcher.v1 import launcher_pb2 as pb

Obj = Mapping[str, Any]
_EXIT_CODE = re.compile(r"failed with exit code (\d+)")
_IMAGE_PROBLEMS = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
)


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _conditions(obj: Obj) -> list[Obj]:
    return list((obj.get("status") or {}).get("conditions") or [])


def _true(obj: Obj, type_: str) -> Obj | None:
    for condition in _conditions(obj):
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition
    return None


def _container(pod: Obj) -> Obj:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == names.CONTAINER_NAME:
            return dict(status)
    return dict(statuses[0]) if statuses else {}


def replica(pod: Obj) -> int:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return int(annotations.get(names.COMPLETION_INDEX_ANNOTATION, "0"))


def pod_failure(pod: Obj) -> tuple[str, int | None]:
    """Why a pod failed, and its container's exit code when it has one."""
    status = pod.get("status") or {}
    if status.get("reason") == "Evicted":
        return f"evicted: {status.get('message', '')}".strip(), None
    terminated = (_container(pod).get("state") or {}).get("terminated")
    if terminated is None:
        if _true(pod, "DisruptionTarget"):
            return "disrupted (preempted or its node was drained)", None
        return status.get("message") or status.get("reason") or "failed", None
    code = int(terminated.get("exitCode", 0))
    if terminated.get("reason") == "OOMKilled":
        return f"OOMKilled: the container exceeded its memory limit (exit code {code})", code
    if code > 128:
        return f"killed by signal {code - 128} (exit code {code})", code
    return f"exited with code {code}", code


def _waiting(pods: Sequence[Obj]) -> tuple[str, str]:
    """(native state, reason) of the most telling waiting pod."""
    for pod in pods:
        for condition in _conditions(pod):
            if condition.get("type") == "PodScheduled" and condition.get("reason") == (
                "Unschedulable"
            ):
                return "Pending: Unschedulable", f"Unschedulable: {condition.get('message', '')}"
    for pod in pods:
        waiting = (_container(pod).get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in _IMAGE_PROBLEMS:
            return f"Pending: {reason}", f"{reason}: {waiting.get('message', '')}".rstrip(": ")
    for pod in pods:
        waiting = (_container(pod).get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return f"Pending: {waiting['reason']}", ""
    return "Pending", ""


def lacks_pod_detail(job: Obj, pods: Sequence[Obj]) -> bool:
    """A failed Job whose failed pod this watcher has not seen yet (a separate watch)."""
    return _true(job, "Failed") is not None and not any(
        (p.get("status") or {}).get("phase") == "Failed" for p in pods
    )


def observe(
    key: JobKey, job: Obj | None, pods: Sequence[Obj], *, deleted: bool, cancelled: bool
) -> JobObservation | None:
    """The job's observation now; None when nothing is known yet (not created)."""
    if job is None:
        if deleted:
            if cancelled:
                return JobObservation(
                    key, pb.JOB_STATE_CANCELLED, "Deleted", "cancelled by request", end_time=_now()
                )
            return JobObservation(
                key,
                pb.JOB_STATE_CANCELLED,
                "Deleted",
                "the Job was deleted on the cluster, not through the launcher",
                end_time=_now(),
            )
        return None
    status = job.get("status") or {}
    start = parse_time(status.get("startTime"))
    running_since = [
        parse_time(((_container(p).get("state") or {}).get("running") or {}).get("startedAt"))
        for p in pods
    ]
    started = min((t for t in running_since if t is not None), default=start)
    complete = _true(job, "Complete")
    if complete is not None:
        end = parse_time(status.get("completionTime")) or parse_time(
            complete.get("lastTransitionTime")
        )
        return JobObservation(key, pb.JOB_STATE_SUCCEEDED, "Complete", "", 0, start, end)
    failed = _true(job, "Failed")
    if failed is not None:
        condition_reason = failed.get("reason", "")
        failed_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        detail, code = pod_failure(failed_pods[-1]) if failed_pods else ("", None)
        if not failed_pods:
            # The pod's own status may not be seen yet: the Job controller's message says.
            match = _EXIT_CODE.search(str(failed.get("message", "")))
            if match is not None:
                code = int(match.group(1))
                detail = f"exited with code {code}"
        if condition_reason == "PodFailurePolicy" and detail:
            reason = detail
        else:
            reason = f"{condition_reason}: {failed.get('message', '')}".strip(": ")
            if detail:
                reason += f"; last pod {detail}"
        end = parse_time(failed.get("lastTransitionTime"))
        return JobObservation(
            key, pb.JOB_STATE_FAILED, f"Failed: {condition_reason}", reason, code, start, end
        )
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return None  # being deleted: the scheduler already says CANCELLING
    replicas = int((job.get("spec") or {}).get("parallelism") or 1)
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    running = [p for p in live if (p.get("status") or {}).get("phase") == "Running"]
    if len(running) >= replicas:
        return JobObservation(key, pb.JOB_STATE_RUNNING, "Running", start_time=started)
    native, reason = _waiting(live)
    if running:
        native = f"Running {len(running)}/{replicas}; {native}"
    return JobObservation(key, pb.JOB_STATE_STARTING, native, reason)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
