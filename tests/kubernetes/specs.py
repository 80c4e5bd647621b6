"""Launcher jobs for the Kubernetes tests, and the schema check every sent manifest passes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kubernetes_validate

from launcher_server.backends.kubernetes import manifests
from xmanager.launcher.v1 import launcher_pb2 as pb

SCHEMA_VERSION = kubernetes_validate.latest_version()
DIGEST = "sha256:" + "ab" * 32


def validate(manifest: Mapping[str, Any]) -> None:
    """Raises kubernetes_validate.ValidationError unless the API server's schema accepts it."""
    kubernetes_validate.validate(dict(manifest), SCHEMA_VERSION, strict=True)


def image_job(
    name: str = "trainer",
    *,
    reference: str = "127.0.0.1:5000/trainer:latest",
    digest: str = DIGEST,
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    executor: pb.KubernetesExecutor | None = None,
    requirements: pb.ResourceRequirements | None = None,
) -> pb.Job:
    job = pb.Job(
        name=name,
        artifact=pb.Artifact(oci_image=pb.OciImage(reference=reference, digest=digest)),
        args=list(args),
        env=dict(env or {}),
    )
    job.executor.kubernetes.CopyFrom(executor or pb.KubernetesExecutor(namespace="default"))
    if requirements is not None:
        job.requirements.CopyFrom(requirements)
    return job


def request(job: pb.Job, env: Mapping[str, str] | None = None) -> manifests.JobRequest:
    return manifests.JobRequest(job.name, job, tuple(job.args), dict(env or job.env))
