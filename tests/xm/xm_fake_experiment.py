"""A minimal in-memory implementation of the abstract experiment API, for tests only."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from xmanager import xm


@dataclasses.dataclass
class Launch:
    """What one `_launch_job_group` call received, rendered as a client would."""

    jobs: dict[str, xm.Job]
    argv: dict[str, list[str]]
    env: dict[str, dict[str, str]]
    args: dict[str, Any]
    identity: str
    job_group: xm.JobGroup


class _FakeUnitMixin:
    """Shared behaviour of fake work units and auxiliary units."""

    experiment: FakeExperiment

    def _init_fake(self) -> None:
        self.launches: list[Launch] = []
        self.stops: list[dict[str, Any]] = []
        self.final_status = xm.ExperimentUnitStatus(xm.WorkUnitState.SUCCEEDED)

    async def _launch_job_group(
        self, job_group: xm.JobGroup, args: Mapping[str, Any], identity: str
    ) -> None:
        await asyncio.sleep(0)  # Behave like real I/O: yield to the loop once.
        jobs = xm.flatten_jobs(job_group)
        for name in jobs:
            if name in self.experiment.failing_job_names:
                raise RuntimeError(f"backend refused job {name!r}")
        self.launches.append(
            Launch(
                jobs=jobs,
                argv={name: xm.job_args(job).to_list() for name, job in jobs.items()},
                env={name: xm.job_env_vars(job) for name, job in jobs.items()},
                args=dict(args),
                identity=identity,
                job_group=job_group,
            )
        )

    async def _wait_until_complete(self) -> xm.ExperimentUnitStatus:
        await asyncio.sleep(0)
        return self.final_status

    def get_status(self) -> xm.ExperimentUnitStatus:
        if not self.launches:
            return xm.ExperimentUnitStatus(xm.WorkUnitState.PENDING)
        return self.final_status

    def stop(
        self,
        *,
        mark_as_failed: bool = False,
        mark_as_completed: bool = False,
        message: str | None = None,
    ) -> None:
        self.stops.append(
            {
                "mark_as_failed": mark_as_failed,
                "mark_as_completed": mark_as_completed,
                "message": message,
            }
        )


class FakeWorkUnit(_FakeUnitMixin, xm.WorkUnit):
    def __init__(
        self,
        experiment: FakeExperiment,
        work_unit_id: int,
        args: Mapping[str, Any] | None,
        role: xm.ExperimentUnitRole,
        identity: str,
    ) -> None:
        super().__init__(experiment, args, role, identity)
        self._work_unit_id = work_unit_id
        self._init_fake()

    @property
    def work_unit_id(self) -> int:
        return self._work_unit_id


class FakeAuxiliaryUnit(_FakeUnitMixin, xm.AuxiliaryUnit):
    def __init__(
        self,
        experiment: FakeExperiment,
        args: Mapping[str, Any] | None,
        role: xm.ExperimentUnitRole,
        identity: str,
    ) -> None:
        super().__init__(experiment, args, role, identity)
        self._init_fake()


class FakeExperiment(xm.Experiment):
    """Keeps units in memory and records what a real client would send."""

    def __init__(self, title: str = "", *, failing_job_names: Sequence[str] = ()) -> None:
        super().__init__()
        self.context.annotations.set_title(title)
        self.failing_job_names = set(failing_job_names)
        self._work_units: dict[int, FakeWorkUnit] = {}
        self.auxiliary_units: list[FakeAuxiliaryUnit] = []
        self.exit_calls: list[bool] = []
        self.entered = 0

    @property
    def experiment_id(self) -> int:
        return 7

    @property
    def work_unit_count(self) -> int:
        return len(self._work_units)

    @property
    def work_units(self) -> Mapping[int, FakeWorkUnit]:
        return dict(self._work_units)

    async def _on_enter(self) -> None:
        self.entered += 1

    async def _create_experiment_unit(
        self, args: Mapping[str, Any] | None, role: xm.ExperimentUnitRole, identity: str
    ) -> xm.ExperimentUnit:
        if isinstance(role, xm.AuxiliaryUnitRole):
            auxiliary = FakeAuxiliaryUnit(self, args, role, identity)
            self.auxiliary_units.append(auxiliary)
            return auxiliary
        work_unit_id = len(self._work_units) + 1
        unit = FakeWorkUnit(self, work_unit_id, args, role, identity)
        self._work_units[work_unit_id] = unit
        return unit

    async def _wait_for_local_jobs(self, is_exit_abrupt: bool) -> None:
        self.exit_calls.append(is_exit_abrupt)

    @classmethod
    def package(cls, packageables: Sequence[xm.Packageable] = ()) -> Sequence[xm.Executable]:
        executables: list[xm.Executable] = []
        for packageable in packageables:
            spec = packageable.executable_spec
            common: dict[str, Any] = {"args": packageable.args, "env_vars": packageable.env_vars}
            if isinstance(spec, xm.Binary):
                executables.append(xm.BinaryArtifact(spec.name, spec.path, **common))
            elif isinstance(spec, xm.BazelBinary):
                executables.append(
                    xm.BinaryArtifact(spec.name, f"/bazel-bin/{spec.name}", **common)
                )
            else:
                executables.append(
                    xm.ImageArtifact(spec.name, image_ref=f"fake/{spec.name}:latest", **common)
                )
        return executables
