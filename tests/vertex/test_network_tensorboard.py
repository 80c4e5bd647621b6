"""VPC networks and TensorBoard instances: the emulator refuses what Vertex AI refuses, and
`xmanager.cloud.vertex` finds or creates instances through the official async client."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import aiplatform_v1 as aip
from google.cloud.aiplatform_v1.services.tensorboard_service.transports.grpc import (
    TensorboardServiceGrpcTransport,
)

from tests.fakes.vertex import FakeVertex
from tests.vertex.conftest import job_client
from tests.vertex.test_emulator import PARENT, custom_job
from xmanager.cloud import vertex

SERVICE_ACCOUNT = "trainer@test-project.iam.gserviceaccount.com"


def tensorboard_client(address: str) -> aip.TensorboardServiceClient:
    channel = grpc.insecure_channel(address)
    return aip.TensorboardServiceClient(transport=TensorboardServiceGrpcTransport(channel=channel))


@pytest.fixture
def client(simulated_vertex: FakeVertex, monkeypatch: pytest.MonkeyPatch) -> vertex.Client:
    monkeypatch.setenv("XM_VERTEX_ENDPOINT", f"http://{simulated_vertex.address}")
    return vertex.Client(project="test-project", location="us-central1")


def test_get_or_create_creates_once_then_finds_it(
    client: vertex.Client, simulated_vertex: FakeVertex
) -> None:
    async def twice() -> tuple[str, str, str]:
        first = await client.get_or_create_tensorboard('run "A"')
        again = await client.get_or_create_tensorboard('run "A"')
        other = await client.get_or_create_tensorboard("run B")
        return first, again, other

    first, again, other = asyncio.run(twice())
    assert first == again != other
    assert first.startswith(PARENT + "/tensorboards/")
    # One create each, resolved through the long-running operation.
    assert simulated_vertex.calls["CreateTensorboard"] == 2
    assert simulated_vertex.calls["GetOperation"] == 2
    assert {b.display_name for b in simulated_vertex.tensorboards.tensorboards()} == {
        'run "A"',
        "run B",
    }
    # XManager writes the filter as displayName=NAME.
    found = tensorboard_client(simulated_vertex.address).list_tensorboards(
        request={"parent": PARENT, "filter": "displayName=run"}
    )
    assert [b.name for b in found] == []
    found = tensorboard_client(simulated_vertex.address).list_tensorboards(
        request={"parent": PARENT, "filter": 'displayName="run B"'}
    )
    assert [b.name for b in found] == [other]


def test_tensorboard_requests_are_checked(simulated_vertex: FakeVertex) -> None:
    boards = tensorboard_client(simulated_vertex.address)
    with pytest.raises(exceptions.InvalidArgument, match="display_name is required"):
        boards.create_tensorboard(parent=PARENT, tensorboard=aip.Tensorboard())
    with pytest.raises(exceptions.InvalidArgument, match="parent"):
        boards.create_tensorboard(
            parent="projects/x", tensorboard=aip.Tensorboard(display_name="a")
        )
    with pytest.raises(exceptions.InvalidArgument, match="filter"):
        boards.list_tensorboards(request={"parent": PARENT, "filter": "region=x"})
    with pytest.raises(exceptions.InvalidArgument, match="page_token"):
        list(boards.list_tensorboards(request={"parent": PARENT, "page_token": "x"}))
    with pytest.raises(exceptions.NotFound):
        boards.get_tensorboard(name=PARENT + "/tensorboards/1")


def _with_tensorboard(
    board: str, *, service_account: str = SERVICE_ACCOUNT, output: str = "gs://b/run"
) -> aip.CustomJob:
    job = custom_job()
    job.job_spec.tensorboard = board
    job.job_spec.service_account = service_account
    if output:
        job.job_spec.base_output_directory = aip.GcsDestination(output_uri_prefix=output)
    return job


def test_a_job_streams_only_to_an_instance_it_may_use(simulated_vertex: FakeVertex) -> None:
    jobs = job_client(simulated_vertex.address)
    operation: Any = tensorboard_client(simulated_vertex.address).create_tensorboard(
        parent=PARENT, tensorboard=aip.Tensorboard(display_name="exp")
    )
    board = operation.result(timeout=10).name
    with pytest.raises(exceptions.InvalidArgument, match="service_account is required"):
        jobs.create_custom_job(
            parent=PARENT, custom_job=_with_tensorboard(board, service_account="")
        )
    with pytest.raises(exceptions.InvalidArgument, match="base_output_directory"):
        jobs.create_custom_job(parent=PARENT, custom_job=_with_tensorboard(board, output=""))
    with pytest.raises(exceptions.InvalidArgument, match="location"):
        jobs.create_custom_job(
            parent="projects/test-project/locations/europe-west4",
            custom_job=_with_tensorboard(board),
        )
    with pytest.raises(exceptions.InvalidArgument, match="tensorboards"):
        jobs.create_custom_job(parent=PARENT, custom_job=_with_tensorboard("exp"))
    with pytest.raises(exceptions.NotFound, match="Tensorboard"):
        jobs.create_custom_job(
            parent=PARENT, custom_job=_with_tensorboard(PARENT + "/tensorboards/404")
        )
    created = jobs.create_custom_job(parent=PARENT, custom_job=_with_tensorboard(board))
    assert created.job_spec.tensorboard == board


@pytest.mark.parametrize(
    "network",
    [
        "my-vpc",
        "projects/my-project/global/networks/my-vpc",  # the project by id, not number
        "projects/123/regions/us-central1/networks/my-vpc",
        "projects/123/global/networks/My_VPC",
    ],
)
def test_network_needs_vertexs_form(simulated_vertex: FakeVertex, network: str) -> None:
    job = custom_job()
    job.job_spec.network = network
    with pytest.raises(exceptions.InvalidArgument, match=r"job_spec\.network"):
        job_client(simulated_vertex.address).create_custom_job(parent=PARENT, custom_job=job)


def test_network_by_project_number_is_taken(simulated_vertex: FakeVertex) -> None:
    job = custom_job()
    job.job_spec.network = "projects/123456789012/global/networks/research-vpc"
    created = job_client(simulated_vertex.address).create_custom_job(parent=PARENT, custom_job=job)
    assert created.job_spec.network == "projects/123456789012/global/networks/research-vpc"
