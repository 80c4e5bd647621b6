"""Golden table: requirements -> Vertex machine spec, every row of the machine table covered.

XManager maps some of these wrongly (A100 counts rounded up to another machine, A100 80 GB and
TPU v4+ unsupported, TPU core counts passed as chip counts); the expected values here are
Vertex AI's documented machine types.
"""

from __future__ import annotations

import pytest

from xmanager.cloud import vertex_machines as m
from xmanager.cloud.vertex_machines import MachineSpec as S

GiB = 2**30

# (cpu, memory GiB, accelerator, count, topology) -> expected spec
GOLDEN: list[tuple[tuple[float, float, str, int, str], S]] = [
    # CPU only.
    ((0, 0, "", 0, ""), S("n1-standard-4")),
    ((1, 0, "", 0, ""), S("n1-highmem-2")),
    ((2, 13, "", 0, ""), S("n1-highmem-2")),
    ((4, 0, "", 0, ""), S("n1-standard-4")),
    ((4, 20, "", 0, ""), S("n1-highmem-4")),
    ((8, 0, "", 0, ""), S("n1-standard-8")),
    ((8, 40, "", 0, ""), S("n1-highmem-8")),
    ((16, 8, "", 0, ""), S("n1-highcpu-16")),
    ((16, 32, "", 0, ""), S("n1-standard-16")),
    ((16, 100, "", 0, ""), S("n1-highmem-16")),
    ((32, 16, "", 0, ""), S("n1-highcpu-32")),
    ((32, 64, "", 0, ""), S("n1-standard-32")),
    ((32, 200, "", 0, ""), S("n1-highmem-32")),
    ((64, 32, "", 0, ""), S("n1-highcpu-64")),
    ((64, 128, "", 0, ""), S("n1-standard-64")),
    ((64, 400, "", 0, ""), S("n1-highmem-64")),
    ((96, 64, "", 0, ""), S("n1-highcpu-96")),
    ((96, 300, "", 0, ""), S("n1-standard-96")),
    ((96, 600, "", 0, ""), S("n1-highmem-96")),
    ((0, 400, "", 0, ""), S("n1-highmem-64")),
    # N1 with attached GPUs.
    ((0, 0, "T4", 1, ""), S("n1-highmem-2", "NVIDIA_TESLA_T4", 1)),
    ((8, 0, "T4", 2, ""), S("n1-standard-8", "NVIDIA_TESLA_T4", 2)),
    ((96, 0, "T4", 4, ""), S("n1-highcpu-96", "NVIDIA_TESLA_T4", 4)),
    ((4, 0, "P4", 1, ""), S("n1-standard-4", "NVIDIA_TESLA_P4", 1)),
    ((16, 0, "P4", 4, ""), S("n1-highcpu-16", "NVIDIA_TESLA_P4", 4)),
    ((8, 30, "P100", 1, ""), S("n1-standard-8", "NVIDIA_TESLA_P100", 1)),
    ((32, 0, "P100", 2, ""), S("n1-highcpu-32", "NVIDIA_TESLA_P100", 2)),
    ((8, 0, "V100", 1, ""), S("n1-standard-8", "NVIDIA_TESLA_V100", 1)),
    ((16, 0, "V100", 2, ""), S("n1-highcpu-16", "NVIDIA_TESLA_V100", 2)),
    ((32, 100, "V100", 4, ""), S("n1-standard-32", "NVIDIA_TESLA_V100", 4)),
    ((96, 600, "V100", 8, ""), S("n1-highmem-96", "NVIDIA_TESLA_V100", 8)),
    # A2 (A100 40 GB and 80 GB).
    ((0, 0, "A100", 1, ""), S("a2-highgpu-1g", "NVIDIA_TESLA_A100", 1)),
    ((0, 0, "A100", 2, ""), S("a2-highgpu-2g", "NVIDIA_TESLA_A100", 2)),
    ((0, 0, "A100", 4, ""), S("a2-highgpu-4g", "NVIDIA_TESLA_A100", 4)),
    ((96, 0, "A100", 8, ""), S("a2-highgpu-8g", "NVIDIA_TESLA_A100", 8)),
    ((0, 1000, "A100", 16, ""), S("a2-megagpu-16g", "NVIDIA_TESLA_A100", 16)),
    ((0, 0, "A100_80GIB", 1, ""), S("a2-ultragpu-1g", "NVIDIA_A100_80GB", 1)),
    ((0, 0, "A100_80GIB", 2, ""), S("a2-ultragpu-2g", "NVIDIA_A100_80GB", 2)),
    ((0, 0, "A100_80GIB", 4, ""), S("a2-ultragpu-4g", "NVIDIA_A100_80GB", 4)),
    ((0, 0, "A100_80GIB", 8, ""), S("a2-ultragpu-8g", "NVIDIA_A100_80GB", 8)),
    # A3 (H100, H200), A4 (B200).
    ((0, 0, "H100", 1, ""), S("a3-highgpu-1g", "NVIDIA_H100_80GB", 1)),
    ((0, 0, "H100", 2, ""), S("a3-highgpu-2g", "NVIDIA_H100_80GB", 2)),
    ((0, 0, "H100", 4, ""), S("a3-highgpu-4g", "NVIDIA_H100_80GB", 4)),
    ((0, 0, "H100", 8, ""), S("a3-highgpu-8g", "NVIDIA_H100_80GB", 8)),
    ((0, 0, "H200", 8, ""), S("a3-ultragpu-8g", "NVIDIA_H200_141GB", 8)),
    ((0, 0, "B200", 8, ""), S("a4-highgpu-8g", "NVIDIA_B200", 8)),
    # G2 (L4).
    ((0, 0, "L4", 1, ""), S("g2-standard-4", "NVIDIA_L4", 1)),
    ((8, 0, "L4", 1, ""), S("g2-standard-8", "NVIDIA_L4", 1)),
    ((12, 0, "L4", 1, ""), S("g2-standard-12", "NVIDIA_L4", 1)),
    ((0, 60, "L4", 1, ""), S("g2-standard-16", "NVIDIA_L4", 1)),
    ((32, 0, "L4", 1, ""), S("g2-standard-32", "NVIDIA_L4", 1)),
    ((0, 0, "L4", 2, ""), S("g2-standard-24", "NVIDIA_L4", 2)),
    ((0, 0, "L4", 4, ""), S("g2-standard-48", "NVIDIA_L4", 4)),
    ((0, 0, "L4", 8, ""), S("g2-standard-96", "NVIDIA_L4", 8)),
    # TPU v2/v3: one 8-core device; scripts write tpu_v3=8 (cores) or the 2x2 chip topology.
    ((0, 0, "TPU_V2", 8, ""), S("cloud-tpu", "TPU_V2", 8)),
    ((0, 0, "TPU_V2", 4, "2x2"), S("cloud-tpu", "TPU_V2", 8)),
    ((0, 0, "TPU_V3", 8, ""), S("cloud-tpu", "TPU_V3", 8)),
    ((0, 0, "TPU_V3", 4, "2x2"), S("cloud-tpu", "TPU_V3", 8)),
    # TPU v4 (3-D slices, 4 chips a host).
    *[
        ((0, 0, "TPU_V4", 0, shape), S("ct4p-hightpu-4t", "TPU_V4_POD", 4, shape))
        for shape in ("2x2x1", "2x2x2", "2x2x4", "2x4x4", "4x4x4", "4x4x8", "4x8x8", "8x8x8")
    ],
    ((0, 0, "TPU_V4", 1024, "8x8x16"), S("ct4p-hightpu-4t", "TPU_V4_POD", 4, "8x8x16")),
    ((0, 0, "TPU_V4", 16, ""), S("ct4p-hightpu-4t", "TPU_V4_POD", 4, "2x2x4")),
    # TPU v5e.
    ((0, 0, "TPU_V5E", 1, "1x1"), S("ct5lp-hightpu-1t", "TPU_V5_LITEPOD", 1, "1x1")),
    ((0, 0, "TPU_V5E", 4, "2x2"), S("ct5lp-hightpu-4t", "TPU_V5_LITEPOD", 4, "2x2")),
    ((0, 0, "TPU_V5E", 8, "2x4"), S("ct5lp-hightpu-8t", "TPU_V5_LITEPOD", 8, "2x4")),
    *[
        ((0, 0, "TPU_V5E", 0, shape), S("ct5lp-hightpu-4t", "TPU_V5_LITEPOD", 4, shape))
        for shape in ("4x4", "4x8", "8x8", "8x16", "16x16")
    ],
    # TPU v5p and v6e: Vertex's AcceleratorType has no value; the machine type says it.
    *[
        ((0, 0, "TPU_V5P", 0, shape), S("ct5p-hightpu-4t", "", 0, shape))
        for shape in ("2x2x1", "2x2x2", "2x2x4", "2x4x4", "4x4x4", "4x4x8", "4x8x8", "8x8x8")
    ],
    ((0, 0, "TPU_V5P", 1024, "8x8x16"), S("ct5p-hightpu-4t", "", 0, "8x8x16")),
    ((0, 0, "TPU_V6E", 1, "1x1"), S("ct6e-standard-1t", "", 0, "1x1")),
    ((0, 0, "TPU_V6E", 4, "2x2"), S("ct6e-standard-4t", "", 0, "2x2")),
    ((0, 0, "TPU_V6E", 8, ""), S("ct6e-standard-8t", "", 0, "2x4")),
    *[
        ((0, 0, "TPU_V6E", 0, shape), S("ct6e-standard-4t", "", 0, shape))
        for shape in ("4x4", "4x8", "8x8", "8x16", "16x16")
    ],
]


def _spec(cpu: float, mem: float, accelerator: str, count: int, topology: str) -> S:
    return m.machine_spec(
        cpu=cpu,
        memory_bytes=int(mem * GiB),
        accelerator=accelerator,
        count=count,
        topology=topology,
    )


@pytest.mark.parametrize(("want", "expected"), GOLDEN, ids=[str(w) for w, _ in GOLDEN])
def test_golden(want: tuple[float, float, str, int, str], expected: S) -> None:
    assert _spec(*want) == expected


def test_golden_covers_every_row() -> None:
    produced = {spec.machine_type for _, spec in GOLDEN}
    assert {machine.name for machine in m.N1_MACHINES} <= produced
    assert {machine.name for machine in m.GPU_MACHINES} <= produced
    for gpu in m.N1_GPU_LIMITS:
        covered = {want[3] for want, _ in GOLDEN if want[2] == gpu}
        assert covered, gpu
    for name, family in m.TPU_FAMILIES.items():
        shapes = {spec.tpu_topology or "2x2" for want, spec in GOLDEN if want[2] == name}
        assert set(family.topologies) <= shapes, name


def test_golden_specs_are_valid_pairs() -> None:
    for _, spec in GOLDEN:
        assert (
            m.check_pair(
                spec.machine_type, spec.accelerator_type, spec.accelerator_count, spec.tpu_topology
            )
            == ""
        ), spec


@pytest.mark.parametrize(
    ("want", "message"),
    [
        ((8, 0, "A100", 16, ""), "fits no machine"),
        ((0, 0, "A100", 3, ""), "1, 2, 4, 8, 16"),
        ((0, 0, "A100_80GIB", 16, ""), "1, 2, 4, 8"),
        ((0, 0, "H100", 3, ""), "a3-highgpu-1g"),
        ((0, 0, "L4", 3, ""), "1, 2, 4, 8"),
        ((64, 0, "L4", 1, ""), "g2-standard-32"),
        ((2, 0, "L4", 1, ""), "g2-standard-4 (4 vCPUs"),
        ((0, 0, "T4", 8, ""), "1 or 2 or 4"),
        ((16, 0, "V100", 1, ""), "at most 12 vCPUs"),
        ((128, 0, "", 0, ""), "n1-highmem-96"),
        ((0, 1000, "", 0, ""), "fits no N1 machine"),
        ((0, 0, "TPU_V4", 0, "3x3x3"), "'2x2x1'"),
        ((0, 0, "TPU_V5E", 0, "3x5"), "'16x16'"),
        ((0, 0, "TPU_V3", 32, ""), "8 (cores) or '2x2'"),
        ((0, 0, "TPU_V6E", 7, ""), "give a topology"),
        ((0, 0, "K80", 1, ""), "not offered by Vertex"),
    ],
)
def test_impossible_combinations_name_valid_options(
    want: tuple[float, float, str, int, str], message: str
) -> None:
    with pytest.raises(m.MachineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _spec(*want)


def test_pinned_machine_type() -> None:
    assert m.machine_spec(machine_type="n1-standard-16") == S("n1-standard-16")
    assert m.machine_spec(machine_type="e2-standard-8") == S("e2-standard-8")
    assert m.machine_spec(accelerator="T4", count=1, machine_type="n1-standard-16") == S(
        "n1-standard-16", "NVIDIA_TESLA_T4", 1
    )
    assert m.machine_spec(accelerator="A100", count=1, machine_type="a2-highgpu-1g") == S(
        "a2-highgpu-1g", "NVIDIA_TESLA_A100", 1
    )
    with pytest.raises(m.MachineError, match="a2-highgpu-2g"):
        m.machine_spec(accelerator="A100", count=2, machine_type="n1-standard-8")
    with pytest.raises(m.MachineError, match="does not match"):
        m.machine_spec(machine_type="a2-highgpu-1g")


def test_check_pair_refuses_mismatches() -> None:
    assert m.check_pair("n1-standard-4", "NVIDIA_TESLA_A100", 1, "")
    assert m.check_pair("a2-highgpu-1g", "NVIDIA_TESLA_A100", 2, "")
    assert m.check_pair("n1-standard-96", "NVIDIA_TESLA_V100", 1, "")
    assert m.check_pair("ct5lp-hightpu-4t", "TPU_V5_LITEPOD", 4, "3x3")
    assert m.check_pair("cloud-tpu", "TPU_V3", 8, "2x2")
    assert m.check_pair("nonsense", "", 0, "")
