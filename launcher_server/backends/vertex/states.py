"""Vertex AI's JobState (0 to 11) as the launcher contract's states.

QUEUED and PENDING are STARTING (waiting for machines); CANCELLING stays active until
Vertex says CANCELLED; PAUSED and UPDATING are still running; EXPIRED (never scheduled in
time) and PARTIALLY_SUCCEEDED (some replicas failed) are failures.
"""

from __future__ import annotations

import re

from xmanager.launcher.v1 import launcher_pb2 as pb

NAMES = (
    "JOB_STATE_UNSPECIFIED",
    "JOB_STATE_QUEUED",
    "JOB_STATE_PENDING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLING",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_PAUSED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_UPDATING",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
)

TO_CONTRACT: dict[int, int] = {
    0: pb.JOB_STATE_STARTING,  # unspecified: created, nothing known yet
    1: pb.JOB_STATE_STARTING,
    2: pb.JOB_STATE_STARTING,
    3: pb.JOB_STATE_RUNNING,
    4: pb.JOB_STATE_SUCCEEDED,
    5: pb.JOB_STATE_FAILED,
    6: pb.JOB_STATE_CANCELLING,
    7: pb.JOB_STATE_CANCELLED,
    8: pb.JOB_STATE_RUNNING,
    9: pb.JOB_STATE_FAILED,
    10: pb.JOB_STATE_RUNNING,
    11: pb.JOB_STATE_FAILED,
}
FINAL = frozenset({4, 5, 7, 9, 11})
_EXIT = re.compile(r"non-zero status of (\d+)")
_REPLICA = re.compile(r"replica workerpool(\d+)-\d+")


def native_name(state: int) -> str:
    return NAMES[state] if 0 <= state < len(NAMES) else f"JOB_STATE_{state}"


def contract_state(state: int) -> int:
    """The contract's state; an unknown future value is treated as still starting."""
    return TO_CONTRACT.get(state, pb.JOB_STATE_STARTING)


def reason(state: int, error_message: str) -> str:
    if error_message:
        return error_message
    if state == 9:
        return "expired: Vertex AI could not schedule the job in time"
    if state == 11:
        return "partially succeeded: some replicas failed"
    if state == 7:
        return "cancelled on Vertex AI"
    return ""


def exit_code(state: int, error_message: str) -> int | None:
    """The chief's exit code when Vertex says it (its message names it); 0 on success."""
    if state == 4:
        return 0
    match = _EXIT.search(error_message)
    return int(match.group(1)) if match else None


def failed_pool(error_message: str) -> int | None:
    """The worker pool whose replica failed, when Vertex's message names it."""
    match = _REPLICA.search(error_message)
    return int(match.group(1)) if match else None
