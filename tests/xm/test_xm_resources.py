"""Resource tables, JobRequirements, Topology and units."""

from __future__ import annotations

from typing import Any

import pytest

from xmanager import xm

RT = xm.ResourceType


# ----- The table ---------------------------------------------------------------------------------


def test_table_rows_match_enum_members() -> None:
    assert len(xm.RESOURCE_TABLE) == len(RT)
    for resource in RT:
        assert resource.info.name == resource.name
        assert isinstance(resource.info, xm.ResourceInfo)


def test_required_names_exist() -> None:
    gpus = ["P4", "T4", "L4", "P100", "V100", "A100", "A100_80GIB", "H100", "H200", "B200", "K80"]
    tpus = ["TPU_V2", "TPU_V3", "TPU_V4", "TPU_V4_LITE", "TPU_V5E", "TPU_V5P", "TPU_V6E"]
    assert [r.name for r in RT if xm.is_gpu(r)] == gpus
    assert [r.name for r in RT if xm.is_tpu(r)] == tpus
    assert not xm.is_gpu(RT.LOCAL_GPU)
    assert RT.LOCAL_GPU.kind is xm.ResourceKind.LOCAL_GPU


@pytest.mark.parametrize(
    ("name", "resource"),
    [
        ("cpu", RT.CPU),
        ("CPU", RT.CPU),
        ("Cpu", RT.CPU),
        ("memory", RT.MEMORY),
        ("ram", RT.MEMORY),
        ("RAM", RT.MEMORY),
        ("ephemeral_storage", RT.EPHEMERAL_STORAGE),
        ("disk", RT.EPHEMERAL_STORAGE),
        ("local_gpu", RT.LOCAL_GPU),
        ("t4", RT.T4),
        ("a100_80gib", RT.A100_80GIB),
        ("tpu_v4", RT.TPU_V4),
        ("TPU_V5E", RT.TPU_V5E),
    ],
)
def test_lookup_is_case_insensitive_with_aliases(name: str, resource: xm.ResourceType) -> None:
    assert RT.from_name(name) is resource


def test_backend_names() -> None:
    assert RT.T4.info.vertex_name == "NVIDIA_TESLA_T4"
    assert RT.A100.info.k8s_name == "nvidia-tesla-a100"
    assert RT.TPU_V3.info.vertex_name == "TPU_V3"
    assert RT.CPU.info.k8s_name == "cpu"
    assert RT.EPHEMERAL_STORAGE.info.k8s_name == "ephemeral-storage"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("a10", "'A100'"), ("cpus", "'cpu'"), ("tpu_v5", "'TPU_V5"), ("memroy", "'memory'")],
)
def test_unknown_name_suggests_closest(name: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match=f"Unknown resource '{name}'") as error:
        xm.JobRequirements({name: 1})
    assert f"Did you mean {suggestion}" in str(error.value)


def test_unknown_name_without_close_match_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="Valid resource names: cpu, memory") as error:
        xm.JobRequirements(zzzzzz=1)
    assert "Did you mean" not in str(error.value)


# ----- JobRequirements ---------------------------------------------------------------------------


def test_keyword_form() -> None:
    requirements = xm.JobRequirements(cpu=4, memory=8 * xm.GiB, T4=1)
    assert requirements.resources == {RT.CPU: 4, RT.MEMORY: 8 * 2**30, RT.T4: 1}
    assert requirements.task_requirements == requirements.resources
    assert requirements.accelerator is RT.T4
    assert requirements.topology is None
    assert requirements.replicas is None
    assert requirements.location is None
    assert requirements.service_tier is None


def test_mapping_form_with_enum_and_str_keys() -> None:
    requirements = xm.JobRequirements({RT.CPU: 2.5, "ram": 1 * xm.GB}, location="us-central1")
    assert requirements.resources == {RT.CPU: 2.5, RT.MEMORY: 10**9}
    assert requirements.location == "us-central1"
    assert requirements.accelerator is None


def test_resources_property_is_a_copy() -> None:
    requirements = xm.JobRequirements(cpu=1)
    requirements.resources[RT.CPU] = 100
    assert requirements.resources == {RT.CPU: 1}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"T4": 1, "A100": 1},
        {"T4": 1, "TPU_V3": 8},
        {"local_gpu": 1, "V100": 1},
        {"TPU_V4": "2x2", "TPU_V5E": 4},
    ],
)
def test_at_most_one_accelerator(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at most one accelerator"):
        xm.JobRequirements(**kwargs)


def test_same_resource_twice() -> None:
    with pytest.raises(ValueError, match="given twice"):
        xm.JobRequirements({"memory": 1}, ram=2)
    with pytest.raises(ValueError, match="given twice"):
        xm.JobRequirements({"cpu": 1}, CPU=2)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"cpu": 0}, ValueError),
        ({"cpu": -1}, ValueError),
        ({"cpu": float("nan")}, ValueError),
        ({"memory": float("inf")}, ValueError),
        ({"memory": 0}, ValueError),
        ({"T4": 0}, ValueError),
        ({"T4": 1.5}, ValueError),
        ({"local_gpu": -2}, ValueError),
        ({"TPU_V3": 0}, ValueError),
        ({"TPU_V4": "4x"}, ValueError),
        ({"TPU_V4": "0x4"}, ValueError),
        ({"cpu": "4"}, TypeError),
        ({"cpu": True}, TypeError),
        ({"T4": "2x2"}, TypeError),
        ({"memory": None}, TypeError),
    ],
)
def test_bad_quantities(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        xm.JobRequirements(**kwargs)


def test_whole_float_gpu_count_becomes_int() -> None:
    assert xm.JobRequirements(T4=2.0).resources[RT.T4] == 2
    assert isinstance(xm.JobRequirements(T4=2.0).resources[RT.T4], int)


@pytest.mark.parametrize("replicas", [0, -1, True, 1.5, "2"])
def test_bad_replicas(replicas: Any) -> None:
    with pytest.raises(ValueError, match="replicas"):
        xm.JobRequirements(replicas=replicas)


def test_service_tier() -> None:
    assert xm.JobRequirements(service_tier="batch").service_tier is xm.ServiceTier.BATCH
    tier = xm.JobRequirements(service_tier=xm.ServiceTier.FREEBIE).service_tier
    assert tier is xm.ServiceTier.FREEBIE
    with pytest.raises(ValueError, match="PROD, BATCH, FREEBIE"):
        xm.JobRequirements(service_tier="gold")


def test_bad_location() -> None:
    with pytest.raises(ValueError, match="location"):
        xm.JobRequirements(location="")


# ----- TPUs and topologies -----------------------------------------------------------------------


def test_tpu_topology_string() -> None:
    requirements = xm.JobRequirements(TPU_V4="4x4", replicas=2)
    assert requirements.resources == {RT.TPU_V4: 16}
    assert requirements.accelerator is RT.TPU_V4
    assert requirements.topology == xm.Topology("4x4")
    assert requirements.topology is not None
    assert requirements.topology.dimensions == (4, 4)
    assert requirements.replicas == 2


def test_tpu_count_and_topology_object() -> None:
    assert xm.JobRequirements(TPU_V3=8).topology == xm.Topology("8")
    requirements = xm.JobRequirements(tpu_v5e=xm.Topology("2x4"))
    assert requirements.resources == {RT.TPU_V5E: 8}


def test_topology() -> None:
    topology = xm.Topology("2x2x4")
    assert topology.dimensions == (2, 2, 4)
    assert topology.chip_count == 16
    assert topology.name == "2x2x4"
    assert str(topology) == "2x2x4"
    assert repr(topology) == "xm.Topology('2x2x4')"
    assert topology == xm.Topology("2x2x4")
    assert hash(topology) == hash(xm.Topology("2x2x4"))
    assert xm.Topology("8").chip_count == 8


@pytest.mark.parametrize("name", ["", "x", "4x", "x4", "4*4", "0", "4x0", "a", "4 x 4", "04"])
def test_bad_topology(name: str) -> None:
    with pytest.raises(ValueError, match="Invalid TPU topology"):
        xm.Topology(name)


# ----- merge, equality, repr ---------------------------------------------------------------------


def test_merge_other_wins() -> None:
    base = xm.JobRequirements(cpu=2, memory=4 * xm.GiB, T4=1, location="a", replicas=3)
    merged = base.merge(xm.JobRequirements(cpu=8, A100=2))
    assert merged.resources == {RT.CPU: 8, RT.MEMORY: 4 * xm.GiB, RT.A100: 2}
    assert merged.accelerator is RT.A100
    assert merged.location == "a"
    assert merged.replicas == 3
    # Inputs unchanged.
    assert base.resources == {RT.CPU: 2, RT.MEMORY: 4 * xm.GiB, RT.T4: 1}


def test_merge_keeps_accelerator_and_topology() -> None:
    base = xm.JobRequirements(TPU_V4="2x4", cpu=1)
    merged = base.merge(xm.JobRequirements(cpu=2, location="b", service_tier="prod"))
    assert merged.topology == xm.Topology("2x4")
    assert merged.resources == {RT.TPU_V4: 8, RT.CPU: 2}
    assert merged.location == "b"
    assert merged.service_tier is xm.ServiceTier.PROD


def test_equality() -> None:
    assert xm.JobRequirements(cpu=1, T4=1) == xm.JobRequirements({"t4": 1, "CPU": 1})
    assert xm.JobRequirements(cpu=1) != xm.JobRequirements(cpu=2)
    assert xm.JobRequirements(cpu=1) != xm.JobRequirements(cpu=1, replicas=2)
    assert xm.JobRequirements(TPU_V4="4x4") != xm.JobRequirements(TPU_V4=16)
    assert xm.JobRequirements() == xm.JobRequirements()


@pytest.mark.parametrize(
    ("requirements", "text"),
    [
        (
            xm.JobRequirements(cpu=4, memory=8 * xm.GiB, T4=1),
            "xm.JobRequirements(cpu=4, memory=8 * xm.GiB, T4=1)",
        ),
        (
            xm.JobRequirements(TPU_V4="4x4", replicas=2, location="us", service_tier="batch"),
            "xm.JobRequirements(TPU_V4='4x4', location='us', replicas=2, "
            "service_tier=xm.ServiceTier.BATCH)",
        ),
        (
            xm.JobRequirements(disk=1536 * xm.MiB, cpu=0.5),
            "xm.JobRequirements(ephemeral_storage=1536 * xm.MiB, cpu=0.5)",
        ),
        (xm.JobRequirements(memory=1000, TPU_V3=8), "xm.JobRequirements(memory=1000, TPU_V3=8)"),
        (xm.JobRequirements(), "xm.JobRequirements()"),
    ],
)
def test_repr(requirements: xm.JobRequirements, text: str) -> None:
    assert repr(requirements) == text


def test_units() -> None:
    assert xm.vCPU == 1.0
    assert (xm.KiB, xm.MiB, xm.GiB, xm.TiB, xm.PiB) == (2**10, 2**20, 2**30, 2**40, 2**50)
    assert (xm.KB, xm.MB, xm.GB, xm.TB, xm.PB) == (10**3, 10**6, 10**9, 10**12, 10**15)
