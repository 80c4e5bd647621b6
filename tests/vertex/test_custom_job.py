"""Building a work unit's CustomJob: pools, image by digest, labels, display name."""

from __future__ import annotations

import pytest

from launcher_server.backends.vertex import custom_job
from launcher_server.jobs import JobKey, LaunchSpec
from tests.fakes import vertex_checks
from xmanager.cloud import vertex_names
from xmanager.launcher.v1 import launcher_pb2 as pb

DIGEST = "sha256:" + "ab" * 32


def spec(name: str, *, replicas: int = 0, reference: str = "r.io/p/img:v1") -> LaunchSpec:
    job = pb.Job(
        name=name,
        artifact=pb.Artifact(oci_image=pb.OciImage(reference=reference, digest=DIGEST)),
        args=["--a=1", "two words", ""],
        executor=pb.Executor(
            vertex=pb.VertexExecutor(
                service_account="sa@p.iam.gserviceaccount.com",
                output_directory="gs://b/out",
                tensorboard="projects/my-project/locations/us-central1/tensorboards/1",
            )
        ),
    )
    job.requirements.replicas = replicas
    job.requirements.accelerator.type = "V100"
    job.requirements.accelerator.count = 2
    return LaunchSpec(
        key=JobKey(12, 345, name),
        job=job,
        args=tuple(job.args),
        env={"XM_JOB_NAME": name, "A": "b c"},
        experiment_title="My Experiment: LR sweep " + "x" * 200,
    )


def test_pools_labels_and_name() -> None:
    job = custom_job.build(
        [spec("chief"), spec("worker", replicas=3)], launcher="s0123", title="T" * 300
    )
    assert vertex_checks.check_custom_job("projects/my-project/locations/us-central1", job) is None
    assert job.labels == {"xm-launcher": "s0123", "xm-experiment": "12", "xm-work-unit": "345"}
    assert len(job.display_name) == 128
    assert job.display_name.endswith("_345")
    chief, worker = job.job_spec.worker_pool_specs
    assert chief.replica_count == 1
    assert worker.replica_count == 3
    assert chief.container_spec.image_uri == f"r.io/p/img@{DIGEST}"
    assert list(chief.container_spec.args) == ["--a=1", "two words", ""]
    assert {e.name: e.value for e in chief.container_spec.env} == {
        "XM_JOB_NAME": "chief",
        "A": "b c",
    }
    assert chief.machine_spec.machine_type == "n1-highmem-2"
    assert chief.machine_spec.accelerator_count == 2
    assert job.job_spec.service_account == "sa@p.iam.gserviceaccount.com"
    assert job.job_spec.base_output_directory.output_uri_prefix == "gs://b/out"
    assert job.job_spec.tensorboard == "projects/my-project/locations/us-central1/tensorboards/1"
    assert job.job_spec.network == ""  # not peered unless asked
    assert custom_job.pool_of(job, "worker") == 1


def test_network_is_the_chiefs_else_the_daemons() -> None:
    peered = "projects/123456789012/global/networks/research-vpc"
    default = "projects/42/global/networks/default"
    chief, worker = spec("chief"), spec("worker")
    chief.job.executor.vertex.network = peered
    job = custom_job.build([chief, worker], launcher="s", title="t", default_network=default)
    assert job.job_spec.network == peered
    assert vertex_checks.check_custom_job("projects/my-project/locations/us-central1", job) is None
    job = custom_job.build([spec("chief")], launcher="s", title="t", default_network=default)
    assert job.job_spec.network == default


def test_image_uri_forms() -> None:
    assert custom_job.image_uri(spec("a", reference="localhost:5000/x:tag").artifact) == (
        f"localhost:5000/x@{DIGEST}"
    )
    by_digest = pb.Artifact(oci_image=pb.OciImage(reference=f"r/x@{DIGEST}"))
    assert custom_job.image_uri(by_digest) == f"r/x@{DIGEST}"
    tarball = pb.Artifact(oci_image=pb.OciImage(tarball_path="/tmp/i.tar"))
    assert "push_image_tag" in (custom_job.image_problem(tarball) or "")


def test_refusals() -> None:
    with pytest.raises(ValueError, match="exactly 1 replica"):
        custom_job.build([spec("chief", replicas=2)], launcher="s", title="t")
    with pytest.raises(ValueError, match="at most 4 worker pools"):
        custom_job.build([spec(f"j{i}") for i in range(5)], launcher="s", title="t")


def test_resource_names() -> None:
    assert vertex_names.network_problem("projects/123/global/networks/my-vpc") is None
    assert "bare name" in (vertex_names.network_problem("my-vpc") or "")
    assert "by its number" in (
        vertex_names.network_problem("projects/my-project/global/networks/my-vpc") or ""
    )
    assert vertex_names.network_problem("projects/123/global/networks/My_VPC") is not None
    board = "projects/my-project/locations/europe-west4/tensorboards/7"
    assert vertex_names.tensorboard_problem(board) is None
    assert vertex_names.tensorboard_region(board) == "europe-west4"
    assert vertex_names.tensorboard_problem("my-board") is not None
