"""The building blocks of work units: executables, executors, packageables, jobs and groups."""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeAlias, Union

from xmanager.xm import validation
from xmanager.xm.args import SequentialArgs, UserArgs
from xmanager.xm.executables import ExecutableSpec
from xmanager.xm.roles import AuxiliaryUnitRole, Importance


class Constraint(abc.ABC):  # noqa: B024  # A marker base for placement constraints.
    """A placement constraint on the jobs of a JobGroup (interpreted by backends)."""


@dataclasses.dataclass
class Executable(abc.ABC):
    """A packaged, runnable artifact (see `xmanager.xm.artifacts` for the concrete kinds).

    `args` and `env_vars` come from the Packageable and are given before the Job's own.
    """

    name: str
    args: SequentialArgs = dataclasses.field(default_factory=SequentialArgs, kw_only=True)
    env_vars: dict[str, str] = dataclasses.field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Executable name must be a non-empty str, got {self.name!r}.")
        self.args = SequentialArgs.from_collection(self.args)
        self.env_vars = validation.validate_env_vars(
            self.env_vars, owner=f"executable {self.name!r}"
        )


@dataclasses.dataclass
class ExecutorSpec(abc.ABC):  # noqa: B024  # Concrete specs are plain dataclasses.
    """What packaging targets: the kind of runtime environment, without its parameters."""


@dataclasses.dataclass
class Executor(abc.ABC):
    """Where and how a job runs. Subclasses set `Spec` to their ExecutorSpec class, so that
    `MyExecutor.Spec()` makes the spec to package for it."""

    Spec: ClassVar[type[ExecutorSpec]]


def _check_instance(owner: str, field: str, value: object, expected: type[Any], hint: str) -> None:
    if not isinstance(value, expected):
        raise TypeError(
            f"{owner}.{field} must be an xm.{expected.__name__}, got {type(value).__name__}: "
            f"{value!r}.{hint}"
        )


@dataclasses.dataclass(init=False)
class Packageable:
    """An executable spec to package for an executor spec, with its default args and env."""

    executable_spec: ExecutableSpec
    executor_spec: ExecutorSpec
    args: SequentialArgs
    env_vars: dict[str, str]

    def __init__(
        self,
        executable_spec: ExecutableSpec,
        executor_spec: ExecutorSpec,
        args: UserArgs | None = None,
        env_vars: Mapping[str, str] | None = None,
    ) -> None:
        _check_instance("Packageable", "executable_spec", executable_spec, ExecutableSpec, "")
        hint = " Use e.g. xm_local.Local.Spec()." if isinstance(executor_spec, Executor) else ""
        _check_instance("Packageable", "executor_spec", executor_spec, ExecutorSpec, hint)
        self.executable_spec = executable_spec
        self.executor_spec = executor_spec
        self.args = SequentialArgs.from_collection(args)
        self.env_vars = validation.validate_env_vars(env_vars, owner="a Packageable")


@dataclasses.dataclass(init=False)
class Job:
    """One program to run: a packaged executable on an executor, with args and env vars.

    Adding a Job to an experiment never modifies it: the same Job may be added many times, each
    time with other args.
    """

    executable: Executable
    executor: Executor
    name: str | None
    args: SequentialArgs
    env_vars: dict[str, str]

    def __init__(
        self,
        executable: Executable,
        executor: Executor,
        name: str | None = None,
        args: UserArgs | None = None,
        env_vars: Mapping[str, str] | None = None,
    ) -> None:
        hint = (
            " Package it first: [executable] = experiment.package([packageable])."
            if isinstance(executable, Packageable | ExecutableSpec)
            else ""
        )
        _check_instance("Job", "executable", executable, Executable, hint)
        _check_instance("Job", "executor", executor, Executor, "")
        if name is not None:
            validation.validate_job_name(name)
        self.executable = executable
        self.executor = executor
        self.name = name
        self.args = SequentialArgs.from_collection(args)
        owner = f"job {name!r}" if name else "a job"
        self.env_vars = validation.validate_env_vars(env_vars, owner=owner)


class JobGroup:
    """Jobs started together as one work unit, keyed by job name; groups may nest.

    The same Job or JobGroup object may appear under several keys and in many groups.
    """

    def __init__(
        self, *, constraints: Sequence[Constraint] | None = None, **jobs: Job | JobGroup
    ) -> None:
        for key, job in jobs.items():
            validation.validate_job_name(key, what="JobGroup key")
            if not isinstance(job, Job | JobGroup):
                raise TypeError(
                    f"JobGroup entry {key!r} must be an xm.Job or xm.JobGroup, got "
                    f"{type(job).__name__}: {job!r}. Job generators cannot be grouped; add them "
                    "to the experiment directly."
                )
        self.jobs: dict[str, Job | JobGroup] = dict(jobs)
        self.constraints: tuple[Constraint, ...] = tuple(constraints or ())

    def __repr__(self) -> str:
        entries = ", ".join(f"{key}={job!r}" for key, job in self.jobs.items())
        if self.constraints:
            entries += f", constraints={list(self.constraints)!r}"
        return f"xm.JobGroup({entries})"


# An `async def` function called as `generator(work_unit, **args)`; it adds jobs to the unit.
JobGeneratorType: TypeAlias = Callable[..., Awaitable[None]]
JobType: TypeAlias = Union[Job, JobGroup, JobGeneratorType]  # noqa: UP007  # Name kept for users.


def is_coroutine_fn(candidate: object) -> bool:
    """Whether calling `candidate` returns a coroutine: an `async def` function, a partial of
    one, or an object whose `__call__` is one."""
    while isinstance(candidate, functools.partial):
        candidate = candidate.func
    if inspect.iscoroutinefunction(candidate):
        return True
    call = getattr(type(candidate), "__call__", None)  # noqa: B004  # Not checking callability.
    return call is not None and inspect.iscoroutinefunction(call)


class AuxiliaryUnitJob:
    """A job (or group, or generator) to run as an auxiliary unit of the experiment."""

    def __init__(
        self,
        job: JobType,
        *,
        importance: Importance = Importance.NORMAL,
        termination_delay_secs: float = 30,
    ) -> None:
        if isinstance(job, AuxiliaryUnitJob):
            raise TypeError("AuxiliaryUnitJob cannot wrap another AuxiliaryUnitJob.")
        self.job = job
        self.role = AuxiliaryUnitRole(
            importance=importance, termination_delay_secs=termination_delay_secs
        )

    @property
    def importance(self) -> Importance:
        return self.role.importance

    @property
    def termination_delay_secs(self) -> float:
        return self.role.termination_delay_secs

    def __repr__(self) -> str:
        return (
            f"xm.AuxiliaryUnitJob({self.job!r}, importance=xm.Importance.{self.importance.name}, "
            f"termination_delay_secs={self.termination_delay_secs!r})"
        )
