"""Requirements to Vertex AI machines: a data table and the one rule that reads it.

Pure (no Google client imports), so the client (`xmanager.cloud.vertex`) and the emulator use
the same table as the daemon. Accelerators are named as in `xm.ResourceType` ("A100", "TPU_V4");
the result names them as Vertex does (`AcceleratorType` enum names).

The rule: GPUs that Vertex sells bundled with a machine family (A100, H100, H200, B200, L4) need
an exact GPU count of that family; the smallest machine of the family with enough vCPUs and memory
wins. GPUs attached to N1 machines (T4, P4, P100, V100) take the smallest N1 machine that fits
and that the GPU count allows. TPUs are chosen by topology. Anything else is refused with the
valid options.
"""

from __future__ import annotations

import dataclasses
import math

GiB = 2**30


class MachineError(ValueError):
    """The requirements fit no Vertex machine; the message names the valid options."""


@dataclasses.dataclass(frozen=True)
class Machine:
    """One Vertex machine type: vCPUs, memory, and its bundled GPUs (if any)."""

    name: str
    vcpus: int
    memory_gib: float
    gpu: str = ""  # canonical GPU name when the GPUs come with the machine
    gpus: int = 0


@dataclasses.dataclass(frozen=True)
class MachineSpec:
    """What goes into a worker pool's `machine_spec`."""

    machine_type: str
    accelerator_type: str = ""  # Vertex's AcceleratorType name; "" for none
    accelerator_count: int = 0
    tpu_topology: str = ""


# N1: CPU-only jobs and the GPUs attached to N1.
N1_MACHINES: tuple[Machine, ...] = (
    Machine("n1-highmem-2", 2, 13),
    Machine("n1-standard-4", 4, 15),
    Machine("n1-highmem-4", 4, 26),
    Machine("n1-standard-8", 8, 30),
    Machine("n1-highmem-8", 8, 52),
    Machine("n1-highcpu-16", 16, 14.4),
    Machine("n1-standard-16", 16, 60),
    Machine("n1-highmem-16", 16, 104),
    Machine("n1-highcpu-32", 32, 28.8),
    Machine("n1-standard-32", 32, 120),
    Machine("n1-highmem-32", 32, 208),
    Machine("n1-highcpu-64", 64, 57.6),
    Machine("n1-standard-64", 64, 240),
    Machine("n1-highmem-64", 64, 416),
    Machine("n1-highcpu-96", 96, 86.4),
    Machine("n1-standard-96", 96, 360),
    Machine("n1-highmem-96", 96, 624),
)
DEFAULT_MACHINE = "n1-standard-4"

# GPUs attached to N1: GPU count -> the most vCPUs an N1 machine may have with that many.
N1_GPU_LIMITS: dict[str, dict[int, int]] = {
    "T4": {1: 48, 2: 48, 4: 96},
    "P4": {1: 24, 2: 48, 4: 96},
    "P100": {1: 16, 2: 32, 4: 96},
    "V100": {1: 12, 2: 24, 4: 48, 8: 96},
}

# Machine families that come with their GPUs.
GPU_MACHINES: tuple[Machine, ...] = (
    Machine("a2-highgpu-1g", 12, 85, "A100", 1),
    Machine("a2-highgpu-2g", 24, 170, "A100", 2),
    Machine("a2-highgpu-4g", 48, 340, "A100", 4),
    Machine("a2-highgpu-8g", 96, 680, "A100", 8),
    Machine("a2-megagpu-16g", 96, 1360, "A100", 16),
    Machine("a2-ultragpu-1g", 12, 170, "A100_80GIB", 1),
    Machine("a2-ultragpu-2g", 24, 340, "A100_80GIB", 2),
    Machine("a2-ultragpu-4g", 48, 680, "A100_80GIB", 4),
    Machine("a2-ultragpu-8g", 96, 1360, "A100_80GIB", 8),
    Machine("a3-highgpu-1g", 26, 234, "H100", 1),
    Machine("a3-highgpu-2g", 52, 468, "H100", 2),
    Machine("a3-highgpu-4g", 104, 936, "H100", 4),
    Machine("a3-highgpu-8g", 208, 1872, "H100", 8),
    Machine("a3-ultragpu-8g", 224, 2952, "H200", 8),
    Machine("a4-highgpu-8g", 224, 3968, "B200", 8),
    Machine("g2-standard-4", 4, 16, "L4", 1),
    Machine("g2-standard-8", 8, 32, "L4", 1),
    Machine("g2-standard-12", 12, 48, "L4", 1),
    Machine("g2-standard-16", 16, 64, "L4", 1),
    Machine("g2-standard-32", 32, 128, "L4", 1),
    Machine("g2-standard-24", 24, 96, "L4", 2),
    Machine("g2-standard-48", 48, 192, "L4", 4),
    Machine("g2-standard-96", 96, 384, "L4", 8),
)

# Vertex's AcceleratorType names for GPUs.
GPU_ACCELERATORS: dict[str, str] = {
    "T4": "NVIDIA_TESLA_T4",
    "P4": "NVIDIA_TESLA_P4",
    "P100": "NVIDIA_TESLA_P100",
    "V100": "NVIDIA_TESLA_V100",
    "A100": "NVIDIA_TESLA_A100",
    "A100_80GIB": "NVIDIA_A100_80GB",
    "H100": "NVIDIA_H100_80GB",
    "H200": "NVIDIA_H200_141GB",
    "B200": "NVIDIA_B200",
    "L4": "NVIDIA_L4",
}


@dataclasses.dataclass(frozen=True)
class TpuFamily:
    """One TPU version on Vertex: topology -> machine type, and chips per host."""

    accelerator_type: str  # "" where Vertex's AcceleratorType has no value (the machine says it)
    topologies: dict[str, str]  # topology -> machine type
    chips_per_host: int  # accelerator_count of each host (legacy v2/v3: cores of the device)
    legacy_count: int = 0  # v2/v3: the core count XManager scripts write (tpu_v3=8)


def _multi_host(machine: str, *topologies: str) -> dict[str, str]:
    return dict.fromkeys(topologies, machine)


_V4_SHAPES = ("2x2x1", "2x2x2", "2x2x4", "2x4x4", "4x4x4", "4x4x8", "4x8x8", "8x8x8", "8x8x16")
_LITE_SHAPES = ("4x4", "4x8", "8x8", "8x16", "16x16")

TPU_FAMILIES: dict[str, TpuFamily] = {
    # Legacy TPU nodes: one v2-8 / v3-8 device (4 chips, 8 cores) on machine type cloud-tpu.
    "TPU_V2": TpuFamily("TPU_V2", {"2x2": "cloud-tpu"}, 8, legacy_count=8),
    "TPU_V3": TpuFamily("TPU_V3", {"2x2": "cloud-tpu"}, 8, legacy_count=8),
    "TPU_V4": TpuFamily("TPU_V4_POD", _multi_host("ct4p-hightpu-4t", *_V4_SHAPES), 4),
    "TPU_V5E": TpuFamily(
        "TPU_V5_LITEPOD",
        {
            "1x1": "ct5lp-hightpu-1t",
            "2x2": "ct5lp-hightpu-4t",
            "2x4": "ct5lp-hightpu-8t",
            **_multi_host("ct5lp-hightpu-4t", *_LITE_SHAPES),
        },
        4,
    ),
    "TPU_V5P": TpuFamily("", _multi_host("ct5p-hightpu-4t", *_V4_SHAPES), 4),
    "TPU_V6E": TpuFamily(
        "",
        {
            "1x1": "ct6e-standard-1t",
            "2x2": "ct6e-standard-4t",
            "2x4": "ct6e-standard-8t",
            **_multi_host("ct6e-standard-4t", *_LITE_SHAPES),
        },
        4,
    ),
}

# Single-host machines whose accelerator_count is their own chip count, not chips_per_host.
_SINGLE_HOST_CHIPS = {
    "ct5lp-hightpu-1t": 1,
    "ct5lp-hightpu-8t": 8,
    "ct6e-standard-1t": 1,
    "ct6e-standard-8t": 8,
}


def _gib(memory_bytes: int) -> float:
    return memory_bytes / GiB


def _fits(machine: Machine, cpu: float, memory_bytes: int) -> bool:
    return machine.vcpus >= cpu and machine.memory_gib * GiB >= memory_bytes


def _want(cpu: float, memory_bytes: int) -> str:
    parts = []
    if cpu:
        parts.append(f"{cpu:g} vCPUs")
    if memory_bytes:
        parts.append(f"{_gib(memory_bytes):g} GiB of memory")
    return " and ".join(parts) or "no particular size"


def _smallest(machines: list[Machine]) -> Machine:
    return min(machines, key=lambda m: (m.vcpus, m.memory_gib))


def _cpu_only(cpu: float, memory_bytes: int) -> MachineSpec:
    if not cpu and not memory_bytes:
        return MachineSpec(DEFAULT_MACHINE)
    fitting = [m for m in N1_MACHINES if _fits(m, cpu, memory_bytes)]
    if not fitting:
        raise MachineError(
            f"{_want(cpu, memory_bytes)} fits no N1 machine; the largest are n1-standard-96 "
            "(96 vCPUs, 360 GiB) and n1-highmem-96 (96 vCPUs, 624 GiB)"
        )
    return MachineSpec(_smallest(fitting).name)


def _bundled_gpu(gpu: str, count: int, cpu: float, memory_bytes: int) -> MachineSpec:
    family = [m for m in GPU_MACHINES if m.gpu == gpu]
    counts = sorted({m.gpus for m in family})
    same_count = [m for m in family if m.gpus == count]
    if not same_count:
        raise MachineError(
            f"{gpu}={count}: Vertex sells {gpu} GPUs only in machines with "
            f"{', '.join(map(str, counts))} of them ({', '.join(m.name for m in family)})"
        )
    fitting = [m for m in same_count if _fits(m, cpu, memory_bytes)]
    # These machines' vCPUs come with the GPUs: a request for fewer vCPUs than any of them has
    # is a misunderstanding (e.g. cpu=8 with 16 A100s would get 96), not a minimum to round up.
    if cpu and cpu < min(m.vcpus for m in same_count):
        fitting = []
    if not fitting:
        options = ", ".join(f"{m.name} ({m.vcpus} vCPUs, {m.memory_gib:g} GiB)" for m in same_count)
        raise MachineError(
            f"{gpu}={count} with {_want(cpu, memory_bytes)} fits no machine; with {count} "
            f"{gpu} Vertex offers {options}"
        )
    machine = _smallest(fitting)
    return MachineSpec(machine.name, GPU_ACCELERATORS[gpu], count)


def _n1_gpu(gpu: str, count: int, cpu: float, memory_bytes: int) -> MachineSpec:
    limits = N1_GPU_LIMITS[gpu]
    if count not in limits:
        raise MachineError(
            f"{gpu}={count}: N1 machines take {' or '.join(map(str, sorted(limits)))} {gpu} GPUs"
        )
    fitting = [m for m in N1_MACHINES if m.vcpus <= limits[count] and _fits(m, cpu, memory_bytes)]
    if not fitting:
        raise MachineError(
            f"{gpu}={count} with {_want(cpu, memory_bytes)} fits no machine: with {count} "
            f"{gpu} an N1 machine has at most {limits[count]} vCPUs"
        )
    return MachineSpec(_smallest(fitting).name, GPU_ACCELERATORS[gpu], count)


def _tpu(tpu: str, count: int, topology: str) -> MachineSpec:
    family = TPU_FAMILIES[tpu]
    shapes = list(family.topologies)
    if not topology:
        if family.legacy_count and count == family.legacy_count:
            topology = shapes[0]
        else:
            by_chips = [s for s in shapes if math.prod(map(int, s.split("x"))) == count]
            if not by_chips:
                legacy = f"{family.legacy_count} (cores) or " if family.legacy_count else ""
                raise MachineError(
                    f"{tpu}={count}: give a topology; valid for {tpu}: {legacy}"
                    f"{', '.join(repr(s) for s in shapes)}"
                )
            topology = by_chips[0]
    machine = family.topologies.get(topology)
    if machine is None:
        raise MachineError(
            f"{tpu} topology {topology!r} is not offered by Vertex; valid topologies: "
            f"{', '.join(repr(s) for s in shapes)}"
        )
    per_host = _SINGLE_HOST_CHIPS.get(machine, family.chips_per_host)
    if family.legacy_count:
        # Legacy TPU nodes are addressed without a topology (Vertex rejects one there).
        return MachineSpec(machine, family.accelerator_type, per_host)
    return MachineSpec(
        machine, family.accelerator_type, per_host if family.accelerator_type else 0, topology
    )


def machine_spec(
    *,
    cpu: float = 0,
    memory_bytes: int = 0,
    accelerator: str = "",
    count: int = 0,
    topology: str = "",
    machine_type: str = "",
) -> MachineSpec:
    """The worker pool's machine for one replica's requirements.

    `accelerator` is a canonical resource name ("A100", "TPU_V4") or "" for none; `count` is its
    device count (TPU chips, or cores for v2/v3 as XManager scripts write them); `machine_type`
    pins the machine (its accelerator must then match). Raises MachineError.
    """
    if accelerator in TPU_FAMILIES:
        spec = _tpu(accelerator, count, topology)
    elif accelerator in N1_GPU_LIMITS:
        spec = _n1_gpu(accelerator, count, cpu, memory_bytes)
    elif accelerator in GPU_ACCELERATORS:
        spec = _bundled_gpu(accelerator, count, cpu, memory_bytes)
    elif accelerator:
        valid = ", ".join([*GPU_ACCELERATORS, *TPU_FAMILIES])
        raise MachineError(f"accelerator {accelerator} is not offered by Vertex AI; use {valid}")
    else:
        spec = _cpu_only(cpu, memory_bytes)
    if machine_type and machine_type != spec.machine_type:
        return _pinned(machine_type, spec)
    return spec


def _pinned(machine_type: str, chosen: MachineSpec) -> MachineSpec:
    """An explicit machine type: allowed when it can carry the requested accelerator."""
    if chosen.accelerator_type and machine_type.startswith("n1-"):
        if any(m.name == machine_type for m in N1_MACHINES) and chosen.machine_type.startswith(
            "n1-"
        ):
            return dataclasses.replace(chosen, machine_type=machine_type)
    elif not chosen.accelerator_type and not chosen.tpu_topology:
        if any(m.name == machine_type for m in N1_MACHINES):
            return MachineSpec(machine_type)
        # Other CPU families (e2, n2, c2, ...) are Vertex's to check.
        if "-" in machine_type and not machine_type.startswith(("a2-", "a3-", "a4-", "g2-", "ct")):
            return MachineSpec(machine_type)
    raise MachineError(
        f"machine type {machine_type!r} does not match the requirements, which need "
        f"{chosen.machine_type!r}; drop the machine type or change the requirements"
    )


def check_pair(machine_type: str, accelerator_type: str, count: int, topology: str) -> str:
    """What Vertex says about a machine spec as sent: "" when valid, else the problem.

    Used by the emulator to enforce the pairs the table allows.
    """
    if accelerator_type in ("", "ACCELERATOR_TYPE_UNSPECIFIED"):
        accelerator_type = ""
    n1 = {m.name for m in N1_MACHINES}
    by_vertex_gpu = {v: k for k, v in GPU_ACCELERATORS.items()}
    if not accelerator_type:
        if machine_type in n1 or machine_type.split("-", maxsplit=1)[0] in (
            "e2",
            "n2",
            "c2",
            "n2d",
        ):
            return "" if not topology else "tpu_topology needs a TPU machine type"
        for family in TPU_FAMILIES.values():
            if not family.accelerator_type and machine_type in family.topologies.values():
                if topology in family.topologies:
                    return ""
                return f"machine type {machine_type} needs a valid tpu_topology"
        return f"machine type {machine_type!r} needs an accelerator or is unknown"
    gpu = by_vertex_gpu.get(accelerator_type)
    if gpu in N1_GPU_LIMITS:
        limits = N1_GPU_LIMITS[gpu]
        machine = next((m for m in N1_MACHINES if m.name == machine_type), None)
        if machine is None or count not in limits or machine.vcpus > limits[count]:
            return f"{accelerator_type} x{count} cannot be attached to {machine_type}"
        return ""
    if gpu:
        ok = any(m.name == machine_type and m.gpu == gpu and m.gpus == count for m in GPU_MACHINES)
        return "" if ok else f"{machine_type} does not come with {count} {accelerator_type}"
    for family in TPU_FAMILIES.values():
        if family.accelerator_type == accelerator_type:
            if machine_type not in family.topologies.values():
                return f"{accelerator_type} needs machine type {set(family.topologies.values())}"
            if family.legacy_count:
                return "" if count == family.legacy_count and not topology else "bad TPU count"
            return "" if topology in family.topologies else f"bad tpu_topology {topology!r}"
    return f"unknown accelerator type {accelerator_type!r}"
