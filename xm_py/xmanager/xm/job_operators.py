"""Turning what a launch script adds (a Job, a JobGroup or a generator, plus args) into what a
client launches. Nothing here modifies its inputs: jobs and groups are copied.

Rules:
  * A lone Job takes `{'args': {...}, 'env_vars': {...}}`, as XManager's: 'args' merged into
    its own args (`merge_args`), 'env_vars' over its own; its name is its own `name`, else its
    executable's name made into a valid job name.
  * A JobGroup takes nested args, `{'agent': {'args': {...}, 'env_vars': {...}}}`, nesting like
    the group; each job in it is named by its key (the leaf key, not the path), and two leaves
    with the same key in one work unit are an error.
  * A job generator takes args as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Mapping
from typing import Any

from xmanager.xm import validation
from xmanager.xm.args import SequentialArgs, UserArgs, merge_args
from xmanager.xm.job_blocks import (
    AuxiliaryUnitJob,
    Job,
    JobGeneratorType,
    JobGroup,
    is_coroutine_fn,
)

_JOB_ENTRY_KEYS = ("args", "env_vars")


def _copy_job(
    job: Job, name: str, args: UserArgs | None, env_vars: Mapping[str, str] | None
) -> Job:
    return dataclasses.replace(
        job,
        name=name,
        args=merge_args(job.args, args),
        env_vars={**job.env_vars, **validation.validate_env_vars(env_vars, owner=f"job {name!r}")},
    )


def default_job_name(job: Job) -> str:
    """The name of a lone job: its own, else derived from its executable's name."""
    if job.name is not None:
        return job.name
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", job.executable.name).lstrip(".-")[:63]
    return name or "job"


def _apply_job_entry(job: Job, key: str, entry: object, path: str) -> Job:
    if entry is None:
        return _copy_job(job, key, None, None)
    if not isinstance(entry, Mapping):
        raise TypeError(
            f"Args for job {path!r} of a JobGroup must be a mapping like "
            f"{{'args': {{...}}, 'env_vars': {{...}}}}, got {type(entry).__name__}: {entry!r}."
        )
    unknown = [name for name in entry if name not in _JOB_ENTRY_KEYS]
    if unknown:
        raise ValueError(
            f"Unknown key(s) {unknown} in the args for job {path!r}; a job's entry may only "
            "have 'args' and 'env_vars'."
        )
    return _copy_job(job, key, entry.get("args"), entry.get("env_vars"))


def _apply_group_args(group: JobGroup, args: object, path: str) -> JobGroup:
    where = f"JobGroup {path!r}" if path else "the JobGroup"
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise TypeError(
            f"Args for {where} must be a mapping nested like the group, e.g. "
            f"{{'agent': {{'args': {{...}}}}}}, got {type(args).__name__}: {args!r}."
        )
    unknown = [key for key in args if key not in group.jobs]
    if unknown:
        raise ValueError(
            f"Unknown job name(s) {unknown} in the args for {where}; valid job names: "
            f"{list(group.jobs)}. For a JobGroup, args are nested by job name: "
            "{'agent': {'args': {...}, 'env_vars': {...}}}."
        )
    children: dict[str, Job | JobGroup] = {}
    for key, child in group.jobs.items():
        child_path = f"{path}.{key}" if path else key
        if isinstance(child, JobGroup):
            children[key] = _apply_group_args(child, args.get(key), child_path)
        else:
            children[key] = _apply_job_entry(child, key, args.get(key), child_path)
    return JobGroup(**children, constraints=group.constraints)


def _flatten(group: JobGroup, path: str, found: dict[str, tuple[str, Job]]) -> None:
    for key, child in group.jobs.items():
        child_path = f"{path}.{key}" if path else key
        if isinstance(child, JobGroup):
            _flatten(child, child_path, found)
        elif key in found:
            raise ValueError(
                f"Two jobs are named {key!r} in one work unit (at {found[key][0]!r} and "
                f"{child_path!r}); the jobs of nested JobGroups are named by their own keys, "
                "which must be unique across the work unit."
            )
        else:
            found[key] = (child_path, child)


def flatten_jobs(group: JobGroup) -> dict[str, Job]:
    """The jobs of a (possibly nested) group keyed by their leaf key, in order.

    Raises:
      ValueError: two leaves share a key, or the group has no job at all.
    """
    found: dict[str, tuple[str, Job]] = {}
    _flatten(group, "", found)
    if not found:
        raise ValueError("A JobGroup must contain at least one job.")
    return {key: job for key, (_, job) in found.items()}


def record_args(args: UserArgs | None) -> dict[str, Any]:
    """The args to record for a unit (its hyperparameters) as a dict; positionals keyed "0", "1"."""
    if args is None:
        return {}
    if isinstance(args, Mapping):
        return dict(args)
    return SequentialArgs.from_collection(args).to_dict()


def _lone_job_entry(args: UserArgs | None) -> Mapping[str, Any]:
    """Checks the args of a lone Job: only 'args' and 'env_vars', as XManager allows."""
    if args is None:
        return {}
    if not isinstance(args, Mapping) or isinstance(args, SequentialArgs):
        raise TypeError(
            "Args for an xm.Job must be a mapping like {'args': {...}, 'env_vars': {...}}, got "
            f"{type(args).__name__}: {args!r}."
        )
    unknown = sorted(str(key) for key in args if key not in _JOB_ENTRY_KEYS)
    if unknown:
        raise ValueError(
            f"Arguments {unknown} are not supported by xm.Job: only 'args' and 'env_vars' are "
            "allowed, e.g. experiment.add(job, args={'args': {'lr': 0.1}, 'env_vars': {...}})."
        )
    return args


def work_unit_args(job: object, args: UserArgs | None) -> dict[str, Any]:
    """The args to record for a unit (its hyperparameters), as XManager shows them: the args
    given to `add`, else those of its jobs ({'args': {...}, 'env_vars': {...}}, nested by job
    name for a JobGroup, empty parts left out; nothing for a job generator)."""
    if args is not None:
        return record_args(args)
    if isinstance(job, Job):
        deduced = {"args": job.args.to_dict(kwargs_only=True), "env_vars": dict(job.env_vars)}
        return {key: value for key, value in deduced.items() if value}
    if isinstance(job, JobGroup):
        return {key: work_unit_args(child, None) for key, child in job.jobs.items()}
    return {}


def prepare_job_group(job: Job | JobGroup, args: UserArgs | None) -> JobGroup:
    """Copies a Job or JobGroup with `args` applied and names filled in, checked for launch.

    The result is a JobGroup (a lone Job becomes a group of one, keyed by its name) whose jobs'
    `name` equal their keys; `flatten_jobs` lists them.
    """
    if isinstance(job, Job):
        name = default_job_name(job)
        entry = _lone_job_entry(args)
        return JobGroup(
            **{name: _copy_job(job, name, entry.get("args"), entry.get("env_vars"))},
            constraints=None,
        )
    if isinstance(args, SequentialArgs) or (args is not None and not isinstance(args, Mapping)):
        raise TypeError(
            "Args for a JobGroup must be a mapping nested by job name, e.g. "
            f"{{'agent': {{'args': {{...}}}}}}, got {type(args).__name__}: {args!r}."
        )
    group = _apply_group_args(job, args, "")
    flatten_jobs(group)
    return group


def generator_kwargs(generator: JobGeneratorType, args: UserArgs | None) -> dict[str, Any]:
    """Checks a job generator and returns the keyword arguments to call it with."""
    if not is_coroutine_fn(generator):
        raise TypeError(
            f"{generator!r} is not a job generator: job generators must be `async def` "
            "functions taking (work_unit, **kwargs)."
        )
    if args is None:
        args = {}
    if not isinstance(args, Mapping) or isinstance(args, SequentialArgs):
        raise TypeError(
            "Args for a job generator are passed as keyword arguments, so they must be a "
            f"mapping of str, got {type(args).__name__}: {args!r}."
        )
    for key in args:
        if not isinstance(key, str) or not key.isidentifier():
            raise TypeError(
                f"Args for a job generator are keyword arguments; {key!r} is not a valid "
                "keyword argument name."
            )
    kwargs = dict(args)
    try:
        signature = inspect.signature(generator)
    except (TypeError, ValueError):
        return kwargs  # Not introspectable; the call itself will complain if it must.
    try:
        signature.bind(None, **kwargs)
    except TypeError as error:
        name = getattr(generator, "__qualname__", repr(generator))
        raise TypeError(
            f"Job generator {name} cannot be called as {name}(work_unit, **args) with args "
            f"{sorted(kwargs)}: {error}."
        ) from None
    return kwargs


# What `prepare` returns: a JobGroup ready to launch, or a job generator with its arguments.
Prepared = JobGroup | tuple[JobGeneratorType, dict[str, Any]]


def prepare(job: object, args: UserArgs | None) -> Prepared:
    """Checks `job` and `args` and returns the JobGroup to launch, or the generator and its
    keyword arguments.

    Raises:
      TypeError: an unsupported job kind, or args of the wrong shape for it.
      ValueError: bad names, unknown job names in nested args, duplicate job names.
    """
    if isinstance(job, AuxiliaryUnitJob):
        raise TypeError(
            "An xm.AuxiliaryUnitJob is added to the experiment (experiment.add), not to a unit."
        )
    if isinstance(job, Job | JobGroup):
        return prepare_job_group(job, args)
    if callable(job):
        return job, generator_kwargs(job, args)
    raise TypeError(
        f"Cannot add {job!r} ({type(job).__name__}): expected an xm.Job, an xm.JobGroup or a job "
        "generator (an `async def` function taking (work_unit, **kwargs))."
    )


def get_args_for_all_jobs(job: object, args: Mapping[str, Any]) -> dict[str, Any]:
    """The `add` args that give every job of `job` (a Job or a nested JobGroup) the same
    keyword args `args`, as XManager's: {'args': args} for a Job, nested by job name."""
    if isinstance(job, JobGroup):
        return {key: get_args_for_all_jobs(child, args) for key, child in job.jobs.items()}
    return {"args": dict(args)}


def job_args(job: Job) -> SequentialArgs:
    """The full arguments of a job: its executable's args, then the job's own (merged)."""
    return merge_args(job.executable.args, job.args)


def job_env_vars(job: Job) -> dict[str, str]:
    """The environment of a job: its executable's variables, overridden by the job's own."""
    return {**job.executable.env_vars, **job.env_vars}
