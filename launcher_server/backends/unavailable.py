"""Placeholder for a backend this build cannot run, so that clients get a clear refusal."""

from __future__ import annotations

import datetime
from pathlib import Path

from launcher_server.backends.base import (
    Backend,
    BackendUnavailableError,
    JobKey,
    JobObservation,
    LaunchSpec,
)
from xmanager.launcher.v1 import launcher_pb2 as pb


class UnavailableBackend(Backend):
    """Refuses every job with the reason given; reports old jobs of this kind as LOST."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self._reason = reason

    def availability(self) -> tuple[bool, str]:
        return False, self._reason

    def start(self, spec: LaunchSpec) -> str:
        raise BackendUnavailableError(self._reason)

    def cancel(self, key: JobKey, handle: str, grace_period: datetime.timedelta) -> None:
        return None

    def reattach(self, key: JobKey, handle: str, job_dir: Path) -> JobObservation:
        return JobObservation(key, pb.JOB_STATE_LOST, reason=f"cannot re-attach: {self._reason}")
