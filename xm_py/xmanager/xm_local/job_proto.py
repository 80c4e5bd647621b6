"""Launch-script jobs (xm.Job with an executor) as launcher-contract messages (pb.Job)."""

from __future__ import annotations

import functools

from xmanager import xm
from xmanager.launcher import contract
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.xm import resources
from xmanager.xm_local import executors


def job_to_proto(job: xm.Job, name: str) -> pb.Job:
    """The contract's Job: artifact, argv tokens, env, executor and requirements."""
    executable = job.executable
    env = {**executable.env_vars, **job.env_vars}
    for variable in env:
        reserved = contract.reserved_env_error(variable)
        if reserved is not None:
            raise ValueError(f"job {name!r}: env_vars: {reserved}")
    message = pb.Job(
        name=name,
        artifact=artifact_to_proto(executable),
        # The executable's default args first, then the job's (already merged with the add's).
        args=xm.merge_args(executable.args, job.args).to_list(),
        env=env,
    )
    executor = job.executor
    message.executor.CopyFrom(executor_to_proto(executor))
    requirements = getattr(executor, "requirements", None)
    if isinstance(requirements, xm.JobRequirements):
        message.requirements.CopyFrom(requirements_to_proto(requirements))
    return message


def artifact_to_proto(executable: xm.Executable) -> pb.Artifact:
    if isinstance(executable, xm.BinaryArtifact):
        return pb.Artifact(
            local_binary=pb.LocalBinary(path=executable.path, sha256=executable.sha256)
        )
    if isinstance(executable, xm.ImageArtifact):
        image = pb.OciImage(digest=executable.digest)
        if executable.image_path is not None:
            image.tarball_path = executable.image_path
        else:
            image.reference = executable.image_ref or ""
        return pb.Artifact(oci_image=image)
    raise TypeError(
        f"cannot launch executable {executable!r}: package it with experiment.package() "
        "(binaries and container images are supported)"
    )


@functools.singledispatch
def executor_to_proto(executor: xm.Executor) -> pb.Executor:
    """The contract's form of an executor. Each executor kind registers its own conversion
    (`@executor_to_proto.register`), so adding one touches no other."""
    raise TypeError(
        f"unsupported executor {type(executor).__name__}: use xm_local.Local, xm_local.Vertex "
        "or xm_local.Kubernetes"
    )


@executor_to_proto.register
def _local_to_proto(executor: executors.Local) -> pb.Executor:
    local = pb.LocalExecutor(
        stream_output=executor.experimental_stream_output,
        clean_environment=executor.clean_environment,
    )
    options = executor.docker_options
    if options is not None:
        local.docker_options.CopyFrom(
            pb.DockerOptions(
                ports=options.ports, volumes=options.volumes, interactive=options.interactive
            )
        )
    local_gpus = executor.requirements.resources.get(resources.ResourceType.LOCAL_GPU)
    local.gpus = int(local_gpus or 0)
    return pb.Executor(local=local)


@executor_to_proto.register
def _kubernetes_to_proto(executor: executors.Kubernetes) -> pb.Executor:
    kubernetes = pb.KubernetesExecutor(
        namespace=executor.namespace,
        context=executor.context or "",
        service_account=executor.service_account or "",
        node_selector=executor.node_selector,
        priority_class=executor.priority_class or "",
        image_pull_secrets=executor.image_pull_secrets,
        active_deadline_seconds=executor.active_deadline_seconds or 0,
        cloud_provider=executor.cloud_provider or "",
        backoff_limit=executor.backoff_limit,
        tpu_runtime_version=(
            executor.tpu_capability.tpu_runtime_version if executor.tpu_capability else ""
        ),
    )
    for toleration in executor.tolerations:
        kubernetes.tolerations.add(
            key=str(toleration.get("key", "")),
            operator=str(toleration.get("operator", "")),
            value=str(toleration.get("value", "")),
            effect=str(toleration.get("effect", "")),
            toleration_seconds=int(toleration.get("tolerationSeconds", 0) or 0),
        )
    return pb.Executor(kubernetes=kubernetes)


@executor_to_proto.register
def _vertex_executor_to_proto(executor: executors.Vertex) -> pb.Executor:
    return pb.Executor(vertex=_vertex_to_proto(executor))


def _vertex_to_proto(executor: executors.Vertex) -> pb.VertexExecutor:
    # Project and region from a client the script set with xmanager.cloud.vertex's
    # set_default_client (imported only when a script imported it); else the daemon's defaults.
    import sys  # noqa: PLC0415

    cloud_vertex = sys.modules.get("xmanager.cloud.vertex")
    client = cloud_vertex.configured_client() if cloud_vertex is not None else None
    output_directory = executor.output_directory or ""
    service_account = executor.service_account or ""
    if executor.tensorboard is not None:
        from xmanager.cloud import auth, utils  # noqa: PLC0415
        from xmanager.cloud import vertex as cloud  # noqa: PLC0415

        _, output_directory = cloud.tensorboard_settings([executor])
        project = (client.project if client is not None else None) or utils.get_project()
        if not service_account and project:
            # Vertex streams to a TensorBoard only from a job with a service account; XManager
            # runs its jobs as xmanager@PROJECT ($XM_GCP_SERVICE_ACCOUNT_NAME), so an unchanged
            # script's job does here too (the account is not created: see docs/vertex.md).
            service_account = auth.service_account_of(project)
    vertex = pb.VertexExecutor(
        project=(client.project or "") if client is not None else "",
        region=executor.region or (client.location if client is not None else ""),
        machine_type=executor.machine_type or "",
        service_account=service_account,
        output_directory=output_directory,
        api_endpoint=executor.endpoint or "",
        network=executor.network or "",
        tensorboard=executor.tensorboard.name if executor.tensorboard else "",
        replica_count=executor.requirements.replicas or 0,
    )
    accelerator = executor.requirements.accelerator
    if accelerator is not None:
        vertex.accelerator_type = accelerator.info.vertex_name or accelerator.name
        vertex.accelerator_count = int(executor.requirements.resources[accelerator])
    return vertex


def requirements_to_proto(requirements: xm.JobRequirements) -> pb.ResourceRequirements:
    message = pb.ResourceRequirements(
        replicas=requirements.replicas or 0, location=requirements.location or ""
    )
    for resource, value in requirements.resources.items():
        kind = resource.kind
        if kind is resources.ResourceKind.CPU:
            message.cpu = float(value)
        elif kind is resources.ResourceKind.MEMORY:
            message.memory_bytes = int(value)
        elif kind is resources.ResourceKind.DISK:
            message.ephemeral_storage_bytes = int(value)
        elif resource is requirements.accelerator:
            message.accelerator.type = resource.display_name
            topology = requirements.topology
            if topology is not None:
                message.accelerator.count = topology.chip_count
                message.accelerator.topology = str(topology)
            else:
                message.accelerator.count = int(value)
        else:
            message.other[resource.display_name] = float(value)
    return message
