"""Job and pod objects -> the launcher's states, with reasons a person can act on."""

from __future__ import annotations

from typing import Any

from launcher_server.backends.kubernetes import states
from launcher_server.jobs import JobKey
from xmanager.launcher.v1 import launcher_pb2 as pb

KEY = JobKey(1, 2, "trainer")


def _job(*conditions: dict[str, Any], parallelism: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "xm-1-2-trainer"},
        "spec": {"parallelism": parallelism},
        "status": {"startTime": "2026-12-01T10:00:00Z", "conditions": list(conditions)},
    }


def _pod(phase: str, state: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "annotations": {}},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "job", "state": state}],
            **status,
        },
    }


def _failed(reason: str, message: str = "") -> dict[str, Any]:
    return {"type": "Failed", "status": "True", "reason": reason, "message": message}


def test_waiting_pods_say_why() -> None:
    pull = _pod("Pending", {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}})
    seen = states.observe(KEY, _job(), [pull], deleted=False, cancelled=False)
    assert seen is not None
    assert (seen.state, seen.native_state) == (pb.JOB_STATE_STARTING, "Pending: ImagePullBackOff")
    assert seen.reason == "ImagePullBackOff: not found"
    unschedulable = _pod(
        "Pending",
        {},
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3"}
        ],
    )
    seen = states.observe(KEY, _job(), [unschedulable], deleted=False, cancelled=False)
    assert seen is not None
    assert seen.reason == "Unschedulable: 0/3"


def test_running_needs_every_replica() -> None:
    running = _pod("Running", {"running": {"startedAt": "2026-12-01T10:00:05Z"}})
    pending = _pod("Pending", {"waiting": {"reason": "ContainerCreating"}})
    seen = states.observe(
        KEY, _job(parallelism=2), [running, pending], deleted=False, cancelled=False
    )
    assert seen is not None
    assert seen.state == pb.JOB_STATE_STARTING
    seen = states.observe(
        KEY, _job(parallelism=2), [running, running], deleted=False, cancelled=False
    )
    assert seen is not None
    assert seen.state == pb.JOB_STATE_RUNNING
    assert seen.start_time is not None


def test_failures_name_their_cause() -> None:
    oom = _pod("Failed", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    seen = states.observe(
        KEY, _job(_failed("PodFailurePolicy")), [oom], deleted=False, cancelled=False
    )
    assert seen is not None
    assert seen.state == pb.JOB_STATE_FAILED
    assert seen.reason.startswith("OOMKilled")
    assert seen.exit_code == 137
    evicted = _pod("Failed", {}, reason="Evicted", message="low on memory")
    seen = states.observe(
        KEY,
        _job(_failed("BackoffLimitExceeded", "Job has reached the specified backoff limit")),
        [evicted],
        deleted=False,
        cancelled=False,
    )
    assert seen is not None
    assert seen.reason == (
        "BackoffLimitExceeded: Job has reached the specified backoff limit; "
        "last pod evicted: low on memory"
    )
    seen = states.observe(
        KEY, _job(_failed("DeadlineExceeded", "too long")), [], deleted=False, cancelled=False
    )
    assert seen is not None
    assert (seen.native_state, seen.reason) == (
        "Failed: DeadlineExceeded",
        "DeadlineExceeded: too long",
    )


def test_complete_and_deleted() -> None:
    done = {"type": "Complete", "status": "True"}
    seen = states.observe(KEY, _job(done), [], deleted=False, cancelled=False)
    assert seen is not None
    assert (seen.state, seen.exit_code) == (pb.JOB_STATE_SUCCEEDED, 0)
    seen = states.observe(KEY, None, [], deleted=True, cancelled=True)
    assert seen is not None
    assert seen.state == pb.JOB_STATE_CANCELLED
    assert states.observe(KEY, None, [], deleted=False, cancelled=False) is None


def test_a_failure_seen_before_its_pod_takes_the_exit_code_from_the_message() -> None:
    message = (
        "Container job for pod default/xm-1-2-trainer-0-abcde failed with exit code 4 matching "
        "FailJob rule at index 1"
    )
    job = _job(_failed("PodFailurePolicy", message))
    assert states.lacks_pod_detail(job, [])
    seen = states.observe(KEY, job, [], deleted=False, cancelled=False)
    assert seen is not None
    assert (seen.reason, seen.exit_code) == ("exited with code 4", 4)
