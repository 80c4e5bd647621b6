"""Executable specs: descriptions of what to build or fetch, before packaging.

Specs are frozen dataclasses; sequence fields are stored as tuples so specs never share mutable
state. `.name` is derived from the path or label as XManager does: its last component (after
the last '/'), with every non-word character replaced by '_' ('/a/b/a.out' -> 'a_out',
'//exp:train' -> 'exp_train', 'gcr.io/p/image:v1' -> 'image_v1').
"""

from __future__ import annotations

import abc
import dataclasses
import os
import re
import sys
from collections.abc import Sequence


def name_from_path(path: str) -> str:
    """The last component of a path, label or image reference, each non-word character '_'."""
    return re.sub(r"\W", "_", os.path.basename(path.rstrip(os.sep)))


def launch_script_path() -> str:
    """The running launch script, absolute: `XM_LAUNCH_SCRIPT` when a launcher set it (`xmanager
    launch`, `bazel run` of an xm_launch target), else `sys.argv[0]`; "" when there is none."""
    script = os.environ.get("XM_LAUNCH_SCRIPT")
    if not script:
        argv: list[str] = getattr(sys, "argv", None) or [""]
        script = argv[0]
    return os.path.abspath(script) if script else ""


def launch_script_dir() -> str:
    """The directory of the running launch script, absolute (the working directory if none)."""
    script = launch_script_path()
    return os.path.dirname(script) if script else os.getcwd()


def resolve_path_relative_to_launcher(path: str) -> str:
    """Resolves a relative `path` against the launch script's directory, like XManager."""
    if os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(launch_script_dir(), path))


def _check_text(owner: str, field: str, value: object, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{owner}.{field} must be a str, got {type(value).__name__}: {value!r}.")
    if not value and not allow_empty:
        raise ValueError(f"{owner}.{field} must not be empty.")


def _str_tuple(owner: str, field: str, values: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(
            f"{owner}.{field} must be a list of str, got {type(values).__name__}: {values!r}."
        )
    for value in values:
        _check_text(owner, field + "[]", value, allow_empty=True)
    return tuple(values)


def _dependency_tuple(
    owner: str, values: Sequence[BinaryDependency]
) -> tuple[BinaryDependency, ...]:
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise TypeError(f"{owner}.dependencies must be a list, got {type(values).__name__}.")
    for value in values:
        if not isinstance(value, BinaryDependency):
            raise TypeError(
                f"{owner}.dependencies holds {value!r} ({type(value).__name__}); expected "
                "xm.BinaryDependency instances."
            )
    return tuple(values)


class ExecutableSpec(abc.ABC):
    """What to package: a binary, a container image, or how to build one."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """A name derived from the spec, usable as a default job name."""


class BinaryDependency(abc.ABC):  # noqa: B024  # A marker base, as in XManager.
    """Something a binary needs at run time, packaged along with it."""


@dataclasses.dataclass(frozen=True)
class Binary(ExecutableSpec):
    """A prebuilt binary at `path` on the machine that runs it."""

    path: str
    dependencies: Sequence[BinaryDependency] = ()

    def __post_init__(self) -> None:
        _check_text("Binary", "path", self.path)
        object.__setattr__(self, "dependencies", _dependency_tuple("Binary", self.dependencies))

    @property
    def name(self) -> str:
        return name_from_path(self.path)


@dataclasses.dataclass(frozen=True)
class BazelBinary(ExecutableSpec):
    """A binary built by Bazel from `label`, e.g. '//exp:train'."""

    label: str
    dependencies: Sequence[BinaryDependency] = ()
    bazel_args: Sequence[str] = ()

    def __post_init__(self) -> None:
        _check_text("BazelBinary", "label", self.label)
        object.__setattr__(
            self, "dependencies", _dependency_tuple("BazelBinary", self.dependencies)
        )
        object.__setattr__(
            self, "bazel_args", _str_tuple("BazelBinary", "bazel_args", self.bazel_args)
        )

    @property
    def name(self) -> str:
        return name_from_path(self.label)


@dataclasses.dataclass(frozen=True)
class Container(ExecutableSpec):
    """A prebuilt image: an image tarball path or a registry/engine reference."""

    image_path: str

    def __post_init__(self) -> None:
        _check_text("Container", "image_path", self.image_path)

    @property
    def name(self) -> str:
        return name_from_path(self.image_path)


@dataclasses.dataclass(frozen=True)
class BazelContainer(ExecutableSpec):
    """An image built by Bazel from `label` (an image tarball target)."""

    label: str
    bazel_args: Sequence[str] = ()

    def __post_init__(self) -> None:
        _check_text("BazelContainer", "label", self.label)
        object.__setattr__(
            self, "bazel_args", _str_tuple("BazelContainer", "bazel_args", self.bazel_args)
        )

    @property
    def name(self) -> str:
        return name_from_path(self.label)


@dataclasses.dataclass(frozen=True)
class ModuleName:
    """A PythonContainer entrypoint: `python -m module_name`."""

    module_name: str

    def __post_init__(self) -> None:
        _check_text("ModuleName", "module_name", self.module_name)


@dataclasses.dataclass(frozen=True)
class CommandList:
    """A PythonContainer entrypoint: commands run in order in the image."""

    commands: Sequence[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "commands", _str_tuple("CommandList", "commands", self.commands))


@dataclasses.dataclass(frozen=True)
class PythonContainer(ExecutableSpec):
    """An image built from the Python project at `path` (relative paths are resolved against the
    launch script's directory when the spec is created)."""

    entrypoint: ModuleName | CommandList
    path: str = "."
    base_image: str | None = None
    docker_instructions: Sequence[str] | None = None
    use_deep_module: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.entrypoint, ModuleName | CommandList):
            raise TypeError(
                "PythonContainer.entrypoint must be xm.ModuleName or xm.CommandList, got "
                f"{type(self.entrypoint).__name__}: {self.entrypoint!r}."
            )
        _check_text("PythonContainer", "path", self.path)
        object.__setattr__(self, "path", resolve_path_relative_to_launcher(self.path))
        if self.base_image is not None:
            _check_text("PythonContainer", "base_image", self.base_image)
        if self.docker_instructions is not None:
            instructions = _str_tuple(
                "PythonContainer", "docker_instructions", self.docker_instructions
            )
            object.__setattr__(self, "docker_instructions", instructions)

    @property
    def name(self) -> str:
        return name_from_path(self.path)


@dataclasses.dataclass(frozen=True)
class Dockerfile(ExecutableSpec):
    """An image built from the context directory `path` (relative paths are resolved against the
    launch script's directory) with `dockerfile` (default: `path`/Dockerfile; left as given)."""

    path: str = "."
    dockerfile: str | None = None

    def __post_init__(self) -> None:
        _check_text("Dockerfile", "path", self.path)
        object.__setattr__(self, "path", resolve_path_relative_to_launcher(self.path))
        if self.dockerfile is not None:
            _check_text("Dockerfile", "dockerfile", self.dockerfile)

    @property
    def name(self) -> str:
        return name_from_path(self.path)
