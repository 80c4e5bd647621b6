"""Every public name of XManager 0.8.5's `xm` and `xm_local` that a launch script can touch
exists here, and the callables accept the same calls (written from XManager's source and docs;
XManager itself is never imported)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from xmanager import xm, xm_local

XM_NAMES = [
    "AcceleratorType",
    "Architecture",
    "AuxiliaryUnit",
    "AuxiliaryUnitJob",
    "AuxiliaryUnitRole",
    "BazelBinary",
    "BazelContainer",
    "Binary",
    "BinaryDependency",
    "CommandList",
    "Constraint",
    "Container",
    "ContextAnnotations",
    "DebugInterrupt",
    "Dockerfile",
    "Executable",
    "ExecutableSpec",
    "Executor",
    "ExecutorSpec",
    "Experiment",
    "ExperimentUnit",
    "ExperimentUnitError",
    "ExperimentUnitFailedError",
    "ExperimentUnitNotCompletedError",
    "ExperimentUnitRole",
    "ExperimentUnitStatus",
    "GpuType",
    "Importance",
    "InvalidTpuTopologyError",
    "Job",
    "JobConfig",
    "JobGeneratorType",
    "JobGroup",
    "JobRequirements",
    "JobType",
    "LaunchedJob",
    "MetadataContext",
    "ModuleName",
    "NotFoundError",
    "Packageable",
    "PythonContainer",
    "ReloadError",
    "ResourceDict",
    "ResourceQuantity",
    "ResourceType",
    "SequentialArgs",
    "ServiceTier",
    "ShellSafeArg",
    "Topology",
    "TpuType",
    "UserArgs",
    "WorkUnit",
    "WorkUnitCompletedAwaitable",
    "WorkUnitRole",
    "bazel_binary",
    "bazel_container",
    "binary",
    "container",
    "dockerfile_container",
    "get_args_for_all_jobs",
    "job_operators",
    "merge_args",
    "python_container",
    "run_in_asyncio_loop",
    "vCPU",
    "KiB",
    "MiB",
    "GiB",
    "TiB",
    "PiB",
    "KB",
    "MB",
    "GB",
    "TB",
    "PB",
]

XM_LOCAL_NAMES = [
    "Caip",
    "CaipSpec",
    "DockerOptions",
    "Kubernetes",
    "KubernetesSpec",
    "Local",
    "LocalSpec",
    "TensorboardCapability",
    "TpuCapability",
    "Vertex",
    "VertexSpec",
    "create_experiment",
    "get_experiment",
    "list_experiments",
]


@pytest.mark.parametrize("name", XM_NAMES)
def test_xm_has(name: str) -> None:
    assert hasattr(xm, name), f"xm.{name} is missing"


@pytest.mark.parametrize("name", XM_LOCAL_NAMES)
def test_xm_local_has(name: str) -> None:
    assert hasattr(xm_local, name), f"xm_local.{name} is missing"


# XManager's parameters: (positional-or-keyword, keyword-only). Ours must accept every call
# XManager accepts: the same positional order, and every keyword.
SIGNATURES: dict[str, tuple[list[str], list[str]]] = {
    "xm.binary": (["executor_spec", "path", "dependencies"], ["args", "env_vars"]),
    "xm.bazel_binary": (
        ["executor_spec", "label", "dependencies", "bazel_args"],
        ["args", "env_vars"],
    ),
    "xm.container": (["executor_spec", "image_path"], ["args", "env_vars"]),
    "xm.bazel_container": (["executor_spec", "label", "bazel_args"], ["args", "env_vars"]),
    "xm.python_container": (
        [
            "executor_spec",
            "entrypoint",
            "path",
            "base_image",
            "docker_instructions",
            "use_deep_module",
        ],
        ["args", "env_vars"],
    ),
    "xm.dockerfile_container": (["executor_spec", "path", "dockerfile"], ["args", "env_vars"]),
    "xm.Job": (["executable", "executor", "name", "args", "env_vars"], []),
    "xm.Packageable": (["executable_spec", "executor_spec", "args", "env_vars"], []),
    "xm.merge_args": ([], []),
    "xm.get_args_for_all_jobs": (["job", "args"], []),
    "xm.run_in_asyncio_loop": (["f"], []),
    "xm.LaunchedJob": (["name", "address", "logs"], []),
    "xm.ModuleName": (["module_name"], []),
    "xm.CommandList": (["commands"], []),
    "xm.Dockerfile": (["path", "dockerfile"], []),
    "xm.PythonContainer": (
        ["entrypoint", "path", "base_image", "docker_instructions", "use_deep_module"],
        [],
    ),
    "xm.Container": (["image_path"], []),
    "xm.Binary": (["path", "dependencies"], []),
    "xm.BazelContainer": (["label", "bazel_args"], []),
    "xm.BazelBinary": (["label", "dependencies", "bazel_args"], []),
    "xm.JobGroup": ([], ["constraints"]),
    "xm.AuxiliaryUnitJob": (["job"], ["importance", "termination_delay_secs"]),
    "xm.AuxiliaryUnitRole": (["importance", "termination_delay_secs"], []),
    "xm.Topology": (["name"], []),
    "xm.JobRequirements": (
        ["resources"],
        ["architecture", "location", "replicas", "service_tier"],
    ),
    "xm.ShellSafeArg": (["arg"], []),
    "xm.ExperimentUnitError": (["message"], ["work_unit"]),
    "xm_local.DockerOptions": (["ports", "volumes", "mount_gcs_path", "interactive"], []),
    "xm_local.Local": (["requirements", "docker_options", "experimental_stream_output"], []),
    "xm_local.Vertex": (["requirements", "tensorboard"], []),
    "xm_local.Kubernetes": (["requirements", "cloud_provider", "tpu_capability"], []),
    "xm_local.VertexSpec": (["push_image_tag"], []),
    "xm_local.KubernetesSpec": (["push_image_tag"], []),
    "xm_local.create_experiment": (["experiment_title"], []),
    "xm_local.get_experiment": (["experiment_id"], []),
    "xm_local.TensorboardCapability": (["name", "base_output_directory"], []),
    "xm_local.TpuCapability": (["tpu_runtime_version"], []),
}


def _resolve(dotted: str) -> Callable[..., Any]:
    module, name = dotted.split(".")
    target: Callable[..., Any] = getattr({"xm": xm, "xm_local": xm_local}[module], name)
    return target


@pytest.mark.parametrize("dotted", sorted(SIGNATURES))
def test_signature_accepts_xmanagers_calls(dotted: str) -> None:
    positional, keyword_only = SIGNATURES[dotted]
    parameters = list(inspect.signature(_resolve(dotted)).parameters.values())
    ours = [p for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for index, name in enumerate(positional):
        where = (
            f"{dotted}: XManager's parameter {index} is {name!r}, ours: {[p.name for p in ours]}"
        )
        assert index < len(ours), where
        assert ours[index].name == name, where
        assert ours[index].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, (dotted, name)
    names = {p.name for p in ours}
    for name in keyword_only:
        assert name in names, f"{dotted}: no keyword {name!r}"


def test_run_in_asyncio_loop_behaves_as_xmanagers() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    @xm.run_in_asyncio_loop
    async def add(a: int, *, b: int = 1) -> int:
        """Adds."""
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return a + b

    assert add(1, b=2) == 3
    assert add(4) == 5
    assert add.__name__ == "add"
    assert add.__doc__ == "Adds."
    assert loops[0] is not loops[1]  # a new loop for each call

    @xm.run_in_asyncio_loop
    async def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        fail()

    async def inside_a_loop() -> None:
        with pytest.raises(RuntimeError, match="inside a running event loop"):
            add(1)

    asyncio.run(inside_a_loop())


def test_resource_subsets_hold_resource_types() -> None:
    assert xm.GpuType.V100 is xm.ResourceType.V100
    assert xm.ResourceType.V100 in xm.GpuType
    assert xm.ResourceType.TPU_V3 in xm.TpuType
    assert xm.ResourceType.LOCAL_GPU in xm.AcceleratorType
    assert xm.ResourceType.CPU not in xm.AcceleratorType
    assert set(xm.GpuType) | set(xm.TpuType) < set(xm.AcceleratorType)
    with pytest.raises(xm.InvalidTpuTopologyError):
        xm.Topology("2by2")


def test_get_args_for_all_jobs() -> None:
    job = xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local())
    group = xm.JobGroup(a=job, inner=xm.JobGroup(b=job))
    assert xm.get_args_for_all_jobs(group, {"lr": 1}) == {
        "a": {"args": {"lr": 1}},
        "inner": {"b": {"args": {"lr": 1}}},
    }
    assert xm.get_args_for_all_jobs(job, {"lr": 1}) == {"args": {"lr": 1}}


# Methods and properties a launch script calls, by class (from XManager's source).
METHODS: dict[str, list[str]] = {
    "xm.Experiment": [
        "experiment_id",
        "package",
        "package_async",
        "add",
        "work_unit_count",
        "work_units",
        "context",
        "__enter__",
        "__exit__",
        "__aenter__",
        "__aexit__",
    ],
    "xm.ExperimentUnit": [
        "experiment_id",
        "identity",
        "add",
        "wait_until_complete",
        "stop",
        "get_status",
        "experiment_unit_name",
        "get_full_job_name",
        "context",
        "launched_jobs",
    ],
    "xm.WorkUnit": ["work_unit_id", "wait_until_complete"],
    "xm.AuxiliaryUnit": ["auxiliary_unit_id"],
    "xm.ExperimentUnitStatus": ["is_active", "is_completed", "is_failed", "message"],
    "xm.SequentialArgs": ["from_collection", "rewrite_args", "remove_args", "to_list", "to_dict"],
    "xm.JobRequirements": ["service_tier", "merge"],
    "xm.Topology": ["chip_count", "name"],
    "xm.ContextAnnotations": ["title", "set_title"],
    "xm.MetadataContext": ["creator", "annotations"],
    "xm.Executor": ["Spec"],
}


@pytest.mark.parametrize("dotted", sorted(METHODS))
def test_classes_have_xmanagers_methods(dotted: str) -> None:
    cls = _resolve(dotted)
    assert isinstance(cls, type)

    def has(name: str) -> bool:
        # A method or property, or an attribute declared on the class (set per instance).
        return hasattr(cls, name) or any(
            name in getattr(klass, "__annotations__", {}) for klass in cls.__mro__
        )

    missing = [name for name in METHODS[dotted] if not has(name)]
    assert not missing, f"{dotted} lacks {missing}"


def test_sequential_args_rewrite_and_remove() -> None:
    args = xm.SequentialArgs.from_collection(["%DIR%/a", 3]) + {"out": "%DIR%/o", "n": 1}
    rewritten = args.rewrite_args(lambda text: text.replace("%DIR%", "/tmp"))
    assert rewritten.to_list() == ["/tmp/a", "3", "--out=/tmp/o", "--n=1"]
    assert args.to_list() == ["%DIR%/a", "3", "--out=%DIR%/o", "--n=1"]
    assert args.remove_args("out").to_list() == ["%DIR%/a", "3", "--n=1"]
    assert args.remove_args("%DIR%/a").to_list() == ["3", "--out=%DIR%/o", "--n=1"]


def test_launched_jobs_and_error_fields() -> None:
    error = xm.ExperimentUnitError("boom", work_unit=None)
    assert str(error) == "boom"
    assert error.work_unit is None
    assert xm.ShellSafeArg(arg="$HOME").arg == "$HOME"
    requirements = xm.JobRequirements(cpu=1, architecture=xm.Architecture.ARM)
    assert requirements.architecture is xm.Architecture.ARM
    assert "architecture=xm.Architecture.ARM" in repr(requirements)
    assert requirements.merge(xm.JobRequirements(cpu=2)).architecture is xm.Architecture.ARM
