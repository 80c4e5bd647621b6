"""XManager's `xmanager.cloud.vertex`: the Vertex AI client object and machine helpers.

A script may call `set_default_client(Client(project=..., location=...))`; the project and
region then go with every `xm_local.Vertex` job it adds (the daemon creates the CustomJobs).
The machine helpers use the launcher's machine table, which differs from XManager's where
XManager is wrong: A100 counts are exact (no rounding up to another machine), A100 80 GB, H100,
L4 and TPU v4/v5e/v5p/v6e are supported.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from xmanager import xm
from xmanager.cloud import auth, utils
from xmanager.cloud import vertex_machines as machines
from xmanager.xm import resources
from xmanager.xm_local import executors

_DEFAULT_LOCATION = utils.DEFAULT_REGION
_INSECURE = "http://"
_default_client: Client | None = None


class Client:
    """Where Vertex AI jobs go: a project and a location (region)."""

    def __init__(self, project: str | None = None, location: str = _DEFAULT_LOCATION) -> None:
        self.location = location
        self.project = project or auth.get_project_name()
        self.parent = f"projects/{self.project}/locations/{self.location}"

    def launch(self, name: str, jobs: Sequence[xm.Job]) -> str:
        raise NotImplementedError(
            "Vertex AI jobs are created by the launcher daemon: add them to an experiment "
            "(experiment.add(job)) with executor xm_local.Vertex."
        )

    def get_tensorboard_settings(self, jobs: Sequence[xm.Job]) -> tuple[str, str]:
        """(TensorBoard resource name, base output directory) shared by all `jobs`."""
        return tensorboard_settings([job.executor for job in jobs])

    def _endpoint(self) -> str:
        """$XM_VERTEX_ENDPOINT (http://HOST:PORT: an emulator, insecure and without
        credentials), else the location's regional endpoint."""
        return os.environ.get("XM_VERTEX_ENDPOINT") or f"{self.location}-aiplatform.googleapis.com"

    def _job_client(self) -> Any:
        from google.cloud import aiplatform_v1  # noqa: PLC0415  # heavy

        endpoint = self._endpoint()
        if endpoint.startswith(_INSECURE):
            import grpc  # noqa: PLC0415
            from google.cloud.aiplatform_v1.services.job_service.transports.grpc import (  # noqa: PLC0415
                JobServiceGrpcTransport,
            )

            channel = grpc.insecure_channel(endpoint.removeprefix(_INSECURE))
            return aiplatform_v1.JobServiceClient(
                transport=JobServiceGrpcTransport(channel=channel)
            )
        return aiplatform_v1.JobServiceClient(client_options={"api_endpoint": endpoint})

    def _tensorboard_client(self) -> Any:
        """A TensorboardServiceAsyncClient; make it inside the event loop that uses it."""
        from google.cloud import aiplatform_v1  # noqa: PLC0415

        endpoint = self._endpoint()
        if endpoint.startswith(_INSECURE):
            import grpc  # noqa: PLC0415
            from google.cloud.aiplatform_v1.services.tensorboard_service.transports import (  # noqa: PLC0415
                grpc_asyncio,
            )

            channel = grpc.aio.insecure_channel(endpoint.removeprefix(_INSECURE))
            return aiplatform_v1.TensorboardServiceAsyncClient(
                transport=grpc_asyncio.TensorboardServiceGrpcAsyncIOTransport(channel=channel)
            )
        from google.api_core.client_options import ClientOptions  # noqa: PLC0415

        return aiplatform_v1.TensorboardServiceAsyncClient(
            client_options=ClientOptions(api_endpoint=endpoint)
        )

    def get_state(self, job_name: str) -> Any:
        """The CustomJob's `aiplatform_v1.JobState`."""
        return self._job_client().get_custom_job(name=job_name).state

    def cancel(self, job_name: str) -> None:
        self._job_client().cancel_custom_job(name=job_name)

    async def wait_for_job(self, job_name: str) -> None:
        final = {4, 5, 7, 9, 11}
        while int(await asyncio.to_thread(self.get_state, job_name)) not in final:
            await asyncio.sleep(10)

    async def get_or_create_tensorboard(self, name: str) -> str:
        """The resource name of the TensorBoard instance displayed as `name`, created if none."""
        from google.cloud import aiplatform_v1  # noqa: PLC0415

        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        async with self._tensorboard_client() as client:
            pager = await client.list_tensorboards(
                aiplatform_v1.ListTensorboardsRequest(
                    parent=self.parent, filter=f'display_name="{quoted}"'
                )
            )
            async for tensorboard in pager:
                return str(tensorboard.name)
        return await self.create_tensorboard(name)

    async def create_tensorboard(self, name: str) -> str:
        """Creates a TensorBoard instance displayed as `name`; its resource name once created."""
        from google.cloud import aiplatform_v1  # noqa: PLC0415

        async with self._tensorboard_client() as client:
            operation = await client.create_tensorboard(
                parent=self.parent, tensorboard=aiplatform_v1.Tensorboard(display_name=name)
            )
            created: Any = await operation.result()
        return str(created.name)


def set_default_client(client: Client) -> None:
    global _default_client  # noqa: PLW0603  # XManager's module-level default
    _default_client = client


def get_default_client() -> Client:
    global _default_client  # noqa: PLW0603
    if _default_client is None:
        _default_client = Client()
    return _default_client


def configured_client() -> Client | None:
    """The client a script set with `set_default_client` (or created), without creating one."""
    return _default_client


def register() -> None:
    """XManager registers its launch method here; the daemon does that job in this launcher."""


def tensorboard_settings(executor_list: Sequence[xm.Executor]) -> tuple[str, str]:
    """(TensorBoard name, base output directory) of a job group; all must agree."""
    boards = [getattr(executor, "tensorboard", None) for executor in executor_list]
    if all(board is None for board in boards):
        return "", ""
    first = boards[0]
    for i, board in enumerate(boards):
        if board is None or first is None or board != first:
            raise ValueError(
                "Jobs in this job group must have the same tensorboard settings: jobs[0] has "
                f"{first!r}, jobs[{i}] has {board!r}."
            )
    assert first is not None
    output_dir = first.base_output_directory
    if output_dir is None:
        bucket = utils.get_bucket_name()
        output_dir = f"gs://{bucket}" if bucket else ""
    elif not output_dir.startswith("gs://"):
        output_dir = "gs://" + output_dir
    return first.name, output_dir


def aip_v1_gpu_accelerator_type_str(gpu_type: resources.ResourceType) -> str:
    """Vertex's AcceleratorType name of a GPU model."""
    name = machines.GPU_ACCELERATORS.get(gpu_type.name)
    if name is None:
        raise ValueError(
            f"Unsupported GPU type {gpu_type}. Supported types are: "
            f"{', '.join(machines.GPU_ACCELERATORS)}"
        )
    return name


def get_machine_spec(job: xm.Job) -> dict[str, Any]:
    """The machine spec (machine_type, accelerator_type, accelerator_count[, tpu_topology]) the
    daemon will use for `job`'s requirements. Raises ValueError naming valid options."""
    executor = job.executor
    if not isinstance(executor, executors.Vertex):
        raise TypeError(f"get_machine_spec needs an xm_local.Vertex job, got {executor!r}")
    spec = machine_spec_of(executor.requirements, executor.machine_type or "")
    result: dict[str, Any] = {"machine_type": spec.machine_type}
    if spec.accelerator_type:
        from google.cloud import aiplatform_v1  # noqa: PLC0415

        accelerator_types: Any = aiplatform_v1.AcceleratorType
        result["accelerator_type"] = accelerator_types[spec.accelerator_type]
        result["accelerator_count"] = spec.accelerator_count
    if spec.tpu_topology:
        result["tpu_topology"] = spec.tpu_topology
    return result


def machine_spec_of(
    requirements: xm.JobRequirements, machine_type: str = ""
) -> machines.MachineSpec:
    quantities = requirements.resources
    accelerator = requirements.accelerator
    topology = requirements.topology
    count = 0
    if accelerator is not None:
        count = topology.chip_count if topology else int(quantities[accelerator])
    return machines.machine_spec(
        cpu=float(quantities.get(resources.ResourceType.CPU, 0) or 0),
        memory_bytes=int(quantities.get(resources.ResourceType.MEMORY, 0) or 0),
        accelerator=accelerator.name if accelerator is not None else "",
        count=count,
        topology=str(topology) if topology else "",
        machine_type=machine_type,
    )


def cpu_ram_to_machine_type(cpu: float | None, ram: int | None) -> str:
    """The smallest N1 machine with at least `cpu` vCPUs and `ram` bytes."""
    return machines.machine_spec(cpu=cpu or 0, memory_bytes=int(ram or 0)).machine_type
