"""The launch-script API, compatible with DeepMind XManager's `xmanager.xm`.

`from xmanager import xm`, then `xm.Job`, `xm.JobGroup`, `xm.JobRequirements`, ... This package
is pure: it imports only the standard library and does no I/O (see docs/xm_api.md).
"""

from xmanager.xm import job_operators
from xmanager.xm.args import SequentialArgs, ShellSafeArg, UserArgs, merge_args
from xmanager.xm.artifacts import BinaryArtifact, ImageArtifact
from xmanager.xm.core import (
    AuxiliaryUnit,
    Experiment,
    ExperimentUnit,
    WorkUnit,
)
from xmanager.xm.errors import (
    DebugInterrupt,
    ExperimentUnitError,
    ExperimentUnitFailedError,
    ExperimentUnitNotCompletedError,
    NotFoundError,
    ReloadError,
)
from xmanager.xm.executables import (
    BazelBinary,
    BazelContainer,
    Binary,
    BinaryDependency,
    CommandList,
    Container,
    Dockerfile,
    ExecutableSpec,
    ModuleName,
    PythonContainer,
)
from xmanager.xm.futures import ExperimentFuture
from xmanager.xm.job_blocks import (
    AuxiliaryUnitJob,
    Constraint,
    Executable,
    Executor,
    ExecutorSpec,
    Job,
    JobGeneratorType,
    JobGroup,
    JobType,
    Packageable,
    is_coroutine_fn,
)
from xmanager.xm.job_operators import flatten_jobs, get_args_for_all_jobs, job_args, job_env_vars
from xmanager.xm.launched import JobConfig, LaunchedJob
from xmanager.xm.loops import run_in_asyncio_loop
from xmanager.xm.metadata import ContextAnnotations, MetadataContext
from xmanager.xm.packageables import (
    bazel_binary,
    bazel_container,
    binary,
    container,
    dockerfile_container,
    python_container,
)
from xmanager.xm.requirements import JobRequirements, ResourceQuantity, ServiceTier
from xmanager.xm.resource_groups import AcceleratorType, Architecture, GpuType, TpuType
from xmanager.xm.resources import (
    GB,
    KB,
    MB,
    PB,
    RESOURCE_TABLE,
    TB,
    GiB,
    InvalidTpuTopologyError,
    KiB,
    MiB,
    PiB,
    ResourceDict,
    ResourceInfo,
    ResourceKind,
    ResourceType,
    TiB,
    Topology,
    is_gpu,
    is_tpu,
    vCPU,
)
from xmanager.xm.roles import AuxiliaryUnitRole, ExperimentUnitRole, Importance, WorkUnitRole
from xmanager.xm.status import ExperimentUnitStatus, WorkUnitState, WorkUnitStatus

# XManager's name for what `add` returns (awaitable, with .result()).
WorkUnitCompletedAwaitable = ExperimentFuture

__all__ = [
    "GB",
    "KB",
    "MB",
    "PB",
    "RESOURCE_TABLE",
    "TB",
    "AcceleratorType",
    "Architecture",
    "AuxiliaryUnit",
    "AuxiliaryUnitJob",
    "AuxiliaryUnitRole",
    "BazelBinary",
    "BazelContainer",
    "Binary",
    "BinaryArtifact",
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
    "ExperimentFuture",
    "ExperimentUnit",
    "ExperimentUnitError",
    "ExperimentUnitFailedError",
    "ExperimentUnitNotCompletedError",
    "ExperimentUnitRole",
    "ExperimentUnitStatus",
    "GiB",
    "GpuType",
    "ImageArtifact",
    "Importance",
    "InvalidTpuTopologyError",
    "Job",
    "JobConfig",
    "JobGeneratorType",
    "JobGroup",
    "JobRequirements",
    "JobType",
    "KiB",
    "LaunchedJob",
    "MetadataContext",
    "MiB",
    "ModuleName",
    "NotFoundError",
    "Packageable",
    "PiB",
    "PythonContainer",
    "ReloadError",
    "ResourceDict",
    "ResourceInfo",
    "ResourceKind",
    "ResourceQuantity",
    "ResourceType",
    "SequentialArgs",
    "ServiceTier",
    "ShellSafeArg",
    "TiB",
    "Topology",
    "TpuType",
    "UserArgs",
    "WorkUnit",
    "WorkUnitCompletedAwaitable",
    "WorkUnitRole",
    "WorkUnitState",
    "WorkUnitStatus",
    "bazel_binary",
    "bazel_container",
    "binary",
    "container",
    "dockerfile_container",
    "flatten_jobs",
    "get_args_for_all_jobs",
    "is_coroutine_fn",
    "is_gpu",
    "is_tpu",
    "job_args",
    "job_env_vars",
    "job_operators",
    "merge_args",
    "python_container",
    "run_in_asyncio_loop",
    "vCPU",
]
