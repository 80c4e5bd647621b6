"""Shorthands that build a Packageable from an executor spec and an executable spec's fields.

As XManager's: the executor spec and the executable spec's fields may be given by position, in
XManager's order; `args` and `env_vars` are keyword-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xmanager.xm import executables
from xmanager.xm.args import UserArgs
from xmanager.xm.job_blocks import ExecutorSpec, Packageable


def binary(
    executor_spec: ExecutorSpec,
    path: str,
    dependencies: Sequence[executables.BinaryDependency] = (),
    *,
    args: UserArgs | None = None,
    env_vars: Mapping[str, str] | None = None,
) -> Packageable:
    """A prebuilt binary; see `xm.Binary`."""
    return Packageable(executables.Binary(path, dependencies), executor_spec, args, env_vars)


def bazel_binary(
    executor_spec: ExecutorSpec,
    label: str,
    dependencies: Sequence[executables.BinaryDependency] = (),
    bazel_args: Sequence[str] = (),
    *,
    args: UserArgs | None = None,
    env_vars: Mapping[str, str] | None = None,
) -> Packageable:
    """A binary built by Bazel; see `xm.BazelBinary`."""
    spec = executables.BazelBinary(label, dependencies, bazel_args)
    return Packageable(spec, executor_spec, args, env_vars)


def container(
    executor_spec: ExecutorSpec,
    image_path: str,
    *,
    args: UserArgs | None = None,
    env_vars: Mapping[str, str] | None = None,
) -> Packageable:
    """A prebuilt image; see `xm.Container`."""
    return Packageable(executables.Container(image_path), executor_spec, args, env_vars)


def bazel_container(
    executor_spec: ExecutorSpec,
    label: str,
    bazel_args: Sequence[str] = (),
    *,
    args: UserArgs | None = None,
    env_vars: Mapping[str, str] | None = None,
) -> Packageable:
    """An image built by Bazel; see `xm.BazelContainer`."""
    spec = executables.BazelContainer(label, bazel_args)
    return Packageable(spec, executor_spec, args, env_vars)


def python_container(  # noqa: PLR0917  # XManager's positional order
    executor_spec: ExecutorSpec,
    entrypoint: executables.ModuleName | executables.CommandList,
    path: str = ".",
    base_image: str | None = None,
    docker_instructions: Sequence[str] | None = None,
    use_deep_module: bool = False,
    *,
    args: UserArgs | None = None,
    env_vars: Mapping[str, str] | None = None,
) -> Packageable:
    """An image built from a Python project; see `xm.PythonContainer`."""
    spec = executables.PythonContainer(
        entrypoint, path, base_image, docker_instructions, use_deep_module
    )
    return Packageable(spec, executor_spec, args, env_vars)


def dockerfile_container(
    executor_spec: ExecutorSpec,
    path: str = ".",
    dockerfile: str | None = None,
    *,
    args: UserArgs | None = None,
    env_vars: Mapping[str, str] | None = None,
) -> Packageable:
    """An image built from a Dockerfile; see `xm.Dockerfile`."""
    return Packageable(executables.Dockerfile(path, dockerfile), executor_spec, args, env_vars)
