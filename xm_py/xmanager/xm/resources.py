"""Resource types (a data table), TPU topologies and size units.

To support a new accelerator, add one member to `ResourceType`: its `ResourceInfo` says what
kind of resource it is, its other accepted names, and what Vertex AI and GKE call it.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re

# Units. CPU is counted in vCPUs; memory and disk in bytes.
vCPU = 1.0  # noqa: N816  # XManager's spelling.

KiB = 2**10
MiB = 2**20
GiB = 2**30
TiB = 2**40
PiB = 2**50

KB = 10**3
MB = 10**6
GB = 10**9
TB = 10**12
PB = 10**15


class ResourceKind(enum.Enum):
    """What a resource is; decides which values it accepts."""

    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    GPU = "gpu"
    TPU = "tpu"
    # GPUs of the daemon's own machine, for local jobs; no particular model.
    LOCAL_GPU = "local_gpu"


@dataclasses.dataclass(frozen=True)
class ResourceInfo:
    """One row of the resource table.

    Attributes:
      name: canonical name, as the launcher contract spells it (equal to the enum member name).
      kind: what the resource is.
      aliases: other accepted names (matched case-insensitively, like `name`).
      vertex_name: Vertex AI's accelerator type, or None where Vertex has none.
      k8s_name: for CPU, memory and disk the Kubernetes resource name; for accelerators the GKE
        node label value (`cloud.google.com/gke-accelerator` or `.../gke-tpu-accelerator`);
        None where there is none.
    """

    name: str
    kind: ResourceKind
    aliases: tuple[str, ...] = ()
    vertex_name: str | None = None
    k8s_name: str | None = None


_CPU = ResourceKind.CPU
_GPU = ResourceKind.GPU
_TPU = ResourceKind.TPU


class ResourceType(enum.Enum):
    """Every resource a job can request. The member values are the resource table."""

    CPU = ResourceInfo("CPU", _CPU, k8s_name="cpu")
    MEMORY = ResourceInfo("MEMORY", ResourceKind.MEMORY, ("RAM",), k8s_name="memory")
    EPHEMERAL_STORAGE = ResourceInfo(
        "EPHEMERAL_STORAGE", ResourceKind.DISK, ("DISK",), k8s_name="ephemeral-storage"
    )
    LOCAL_GPU = ResourceInfo("LOCAL_GPU", ResourceKind.LOCAL_GPU)

    P4 = ResourceInfo("P4", _GPU, (), "NVIDIA_TESLA_P4", "nvidia-tesla-p4")
    T4 = ResourceInfo("T4", _GPU, (), "NVIDIA_TESLA_T4", "nvidia-tesla-t4")
    L4 = ResourceInfo("L4", _GPU, (), "NVIDIA_L4", "nvidia-l4")
    P100 = ResourceInfo("P100", _GPU, (), "NVIDIA_TESLA_P100", "nvidia-tesla-p100")
    V100 = ResourceInfo("V100", _GPU, (), "NVIDIA_TESLA_V100", "nvidia-tesla-v100")
    A100 = ResourceInfo("A100", _GPU, (), "NVIDIA_TESLA_A100", "nvidia-tesla-a100")
    A100_80GIB = ResourceInfo("A100_80GIB", _GPU, (), "NVIDIA_A100_80GB", "nvidia-a100-80gb")
    H100 = ResourceInfo("H100", _GPU, (), "NVIDIA_H100_80GB", "nvidia-h100-80gb")
    H200 = ResourceInfo("H200", _GPU, (), "NVIDIA_H200_141GB", "nvidia-h200-141gb")
    B200 = ResourceInfo("B200", _GPU, (), "NVIDIA_B200", "nvidia-b200")
    K80 = ResourceInfo("K80", _GPU, (), "NVIDIA_TESLA_K80", "nvidia-tesla-k80")

    TPU_V2 = ResourceInfo("TPU_V2", _TPU, (), "TPU_V2", None)
    TPU_V3 = ResourceInfo("TPU_V3", _TPU, (), "TPU_V3", None)
    TPU_V4 = ResourceInfo("TPU_V4", _TPU, (), "TPU_V4_POD", "tpu-v4-podslice")
    TPU_V4_LITE = ResourceInfo("TPU_V4_LITE", _TPU, (), None, "tpu-v4-lite-device")
    TPU_V5E = ResourceInfo(
        "TPU_V5E", _TPU, ("TPU_V5_LITE",), "TPU_V5_LITEPOD", "tpu-v5-lite-podslice"
    )
    TPU_V5P = ResourceInfo("TPU_V5P", _TPU, (), None, "tpu-v5p-slice")
    TPU_V6E = ResourceInfo("TPU_V6E", _TPU, (), None, "tpu-v6e-slice")

    @property
    def info(self) -> ResourceInfo:
        info: ResourceInfo = self.value
        return info

    @property
    def kind(self) -> ResourceKind:
        return self.info.kind

    @property
    def is_accelerator(self) -> bool:
        return self.kind in (ResourceKind.GPU, ResourceKind.TPU, ResourceKind.LOCAL_GPU)

    @property
    def display_name(self) -> str:
        """The name used in reprs: lower case for generic resources, as in `cpu=4, T4=1`."""
        if self.kind in (ResourceKind.GPU, ResourceKind.TPU):
            return self.name
        return self.name.lower()

    @classmethod
    def from_name(cls, name: str) -> ResourceType:
        """Looks a resource up by name or alias, case-insensitively.

        Raises:
          ValueError: an unknown name; the message suggests the closest valid names.
        """
        if not isinstance(name, str):
            raise TypeError(
                f"Resource names must be str or xm.ResourceType, got {type(name).__name__}: "
                f"{name!r}."
            )
        found = _BY_NAME.get(name.upper())
        if found is not None:
            return found
        close = difflib.get_close_matches(name.upper(), list(_BY_NAME), n=3, cutoff=0.5)
        hint = (
            f" Did you mean {', '.join(repr(c.lower() if _is_generic(c) else c) for c in close)}?"
            if close
            else ""
        )
        valid = ", ".join(rt.display_name for rt in cls)
        raise ValueError(f"Unknown resource {name!r}.{hint} Valid resource names: {valid}.")

    def __str__(self) -> str:
        return self.name


def _is_generic(name: str) -> bool:
    return _BY_NAME[name].kind not in (ResourceKind.GPU, ResourceKind.TPU)


_BY_NAME: dict[str, ResourceType] = {
    key.upper(): resource
    for resource in ResourceType
    for key in (resource.info.name, *resource.info.aliases)
}

# The table as plain data, for clients that map resources to their backends.
RESOURCE_TABLE: tuple[ResourceInfo, ...] = tuple(resource.info for resource in ResourceType)


def is_gpu(resource: ResourceType) -> bool:
    """Whether `resource` is a GPU model (not `LOCAL_GPU`, which names no model)."""
    return resource.kind is ResourceKind.GPU


def is_tpu(resource: ResourceType) -> bool:
    return resource.kind is ResourceKind.TPU


_TOPOLOGY_RE = re.compile(r"[1-9][0-9]*(x[1-9][0-9]*)*")


class InvalidTpuTopologyError(ValueError):
    """A TPU topology that is not positive integers joined by 'x' (XManager's name)."""


@dataclasses.dataclass(frozen=True)
class Topology:
    """A TPU slice shape such as '2x2' or '4x4x8': chip counts per dimension joined by 'x'."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOPOLOGY_RE.fullmatch(self.name):
            raise InvalidTpuTopologyError(
                f"Invalid TPU topology {self.name!r}: expected positive integers joined by 'x', "
                "such as '8', '2x2' or '4x4x8'."
            )

    @property
    def dimensions(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.name.split("x"))

    @property
    def chip_count(self) -> int:
        return math.prod(self.dimensions)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"xm.Topology({self.name!r})"


class ResourceDict(dict[ResourceType, float | int]):
    """Amounts of countable resources by ResourceType (XManager's internal mapping type, which
    `JobRequirements` and executors use; launch scripts rarely need it)."""
