"""The client side: xm_local.Vertex as XManager 0.8.5 scripts write it, and xmanager.cloud."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xmanager import xm, xm_local
from xmanager.cloud import auth, build_image, utils, vertex
from xmanager.contrib import tensorboard, tpu
from xmanager.xm_local import job_proto

IMAGE = xm.ImageArtifact(name="trainer", image_ref="127.0.0.1:5000/trainer:latest")


@pytest.fixture(autouse=True)
def _clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "GOOGLE_CLOUD_PROJECT",
        "CLOUDSDK_CORE_PROJECT",
        "GOOGLE_CLOUD_REGION",
        "CLOUDSDK_COMPUTE_REGION",
        "GOOGLE_CLOUD_BUCKET_NAME",
        "CLUSTER_SPEC",
        "CLOUDSDK_ACTIVE_CONFIG_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setattr(vertex, "_default_client", None)


def test_executor_as_xmanager_writes_it() -> None:
    executor = xm_local.Vertex(
        requirements=xm.JobRequirements(cpu=8, t4=1),
        tensorboard=xm_local.TensorboardCapability(name="projects/p/locations/l/tensorboards/1"),
    )
    assert executor.tensorboard is not None
    assert executor.tensorboard.base_output_directory is None
    assert xm_local.Caip is xm_local.Vertex
    assert xm_local.CaipSpec is xm_local.VertexSpec
    assert xm_local.Vertex.Spec(push_image_tag="r/i:t").push_image_tag == "r/i:t"  # type: ignore[call-arg,attr-defined]


def test_settings_from_environment_then_gcloud(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert utils.get_project() is None
    assert utils.get_default_region() == "us-central1"
    config = tmp_path / "gcloud" / "configurations"
    config.mkdir(parents=True)
    (config / "config_default").write_text(
        "[core]\nproject = from-gcloud\n[compute]\nregion = europe-west4\n"
    )
    assert utils.get_project() == "from-gcloud"
    assert auth.get_project_name() == "from-gcloud"
    assert utils.get_default_region() == "europe-west4"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    monkeypatch.setenv("GOOGLE_CLOUD_REGION", "asia-east1")
    assert utils.get_project() == "from-env"
    assert utils.get_default_region() == "asia-east1"
    assert auth.get_service_account() == "xmanager@from-env.iam.gserviceaccount.com"


def test_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="GOOGLE_CLOUD_BUCKET_NAME"):
        auth.get_bucket()
    monkeypatch.setenv("GOOGLE_CLOUD_BUCKET_NAME", "my-bucket")
    assert auth.get_bucket() == "my-bucket"


def test_cluster_spec_helpers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert utils.get_master_address_port() == ("127.0.0.1", "29500")
    assert utils.get_world_size_rank() == (1, 0)
    specs = utils.create_cluster_specs(["chief:2222", "worker:2222"])
    monkeypatch.setenv("CLUSTER_SPEC", specs[1])
    assert utils.get_master_address_port() == ("chief", "2222")
    assert utils.get_world_size_rank() == (2, 1)
    binding = utils.get_workerpool_address("workerpool0")
    assert utils.map_workerpool_address_args([f"--addr={binding}", "x"]) == [
        "--addr=chief:2222",
        "x",
    ]
    monkeypatch.setenv("PEER", binding)
    script = tmp_path / "env.sh"
    utils.create_workerpool_address_env_vars_script(str(script))
    assert "export PEER=chief:2222" in script.read_text()
    assert json.loads(specs[1])["task"] == {"type": "workerpool1", "index": 0}


def test_machine_helpers() -> None:
    job = xm.Job(IMAGE, xm_local.Vertex(requirements=xm.JobRequirements(a100=4)))
    spec = vertex.get_machine_spec(job)
    assert spec["machine_type"] == "a2-highgpu-4g"
    assert spec["accelerator_type"].name == "NVIDIA_TESLA_A100"
    assert spec["accelerator_count"] == 4
    tpu_job = xm.Job(IMAGE, xm_local.Vertex(requirements=xm.JobRequirements(tpu_v5e="4x4")))
    assert vertex.get_machine_spec(tpu_job)["tpu_topology"] == "4x4"
    assert vertex.cpu_ram_to_machine_type(None, None) == "n1-standard-4"
    assert vertex.cpu_ram_to_machine_type(16, 100 * xm.GiB) == "n1-highmem-16"
    assert vertex.aip_v1_gpu_accelerator_type_str(xm.ResourceType.A100_80GIB) == "NVIDIA_A100_80GB"
    with pytest.raises(ValueError, match="1, 2, 4, 8, 16"):
        vertex.get_machine_spec(
            xm.Job(IMAGE, xm_local.Vertex(requirements=xm.JobRequirements(a100=3)))
        )


def test_default_client_goes_with_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_BUCKET_NAME", "bkt")
    vertex.set_default_client(vertex.Client(project="proj-1", location="europe-west4"))
    assert vertex.get_default_client().parent == "projects/proj-1/locations/europe-west4"
    executor = xm_local.Vertex(
        requirements=xm.JobRequirements(replicas=2),
        tensorboard=xm_local.TensorboardCapability(name="projects/p/locations/l/tensorboards/1"),
    )
    message = job_proto.executor_to_proto(executor).vertex
    assert (message.project, message.region) == ("proj-1", "europe-west4")
    assert message.output_directory == "gs://bkt"
    assert message.tensorboard == "projects/p/locations/l/tensorboards/1"
    # Vertex needs a service account for TensorBoard: XManager's, as its scripts expect.
    assert message.service_account == "xmanager@proj-1.iam.gserviceaccount.com"
    assert message.replica_count == 2
    monkeypatch.setenv("XM_GCP_SERVICE_ACCOUNT_NAME", "trainer")
    assert job_proto.executor_to_proto(executor).vertex.service_account.startswith("trainer@")
    named = xm_local.Vertex(tensorboard=executor.tensorboard, service_account="me@p.iam")
    assert job_proto.executor_to_proto(named).vertex.service_account == "me@p.iam"
    assert not job_proto.executor_to_proto(xm_local.Vertex()).vertex.service_account
    with pytest.raises(NotImplementedError, match=r"experiment\.add"):
        vertex.get_default_client().launch("x", [])


def test_network_is_checked_and_sent() -> None:
    peered = "projects/123456789012/global/networks/research-vpc"
    executor = xm_local.Vertex(xm.JobRequirements(cpu=4), None, network=peered)
    assert job_proto.executor_to_proto(executor).vertex.network == peered
    assert job_proto.executor_to_proto(xm_local.Vertex()).vertex.network == ""
    with pytest.raises(ValueError, match=r"Vertex\.network: 'research-vpc' is not .*bare name"):
        xm_local.Vertex(network="research-vpc")


def test_tensorboard_settings_must_agree() -> None:
    board = xm_local.TensorboardCapability(name="tb", base_output_directory="bucket/dir")
    assert vertex.tensorboard_settings([xm_local.Vertex(tensorboard=board)]) == (
        "tb",
        "gs://bucket/dir",
    )
    with pytest.raises(ValueError, match="same tensorboard settings"):
        vertex.tensorboard_settings([xm_local.Vertex(tensorboard=board), xm_local.Vertex()])


def test_contrib_modules() -> None:
    args = tensorboard.TensorboardProvider.get_tensorboard_job_args("gs://b/logs", port=7000)
    assert args["logdir"] == "gs://b/logs"
    assert args["port"] == 7000
    with pytest.raises(RuntimeError, match="nonnegative"):
        tensorboard.TensorboardProvider.get_tensorboard_packageable(-1)
    assert tpu.tpuvm_docker_instructions()
    assert callable(build_image.build)
    assert callable(build_image.push)
