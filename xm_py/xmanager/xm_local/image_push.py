"""Pushing a packaged image for Vertex AI and Kubernetes, which pull from a registry.

XManager's semantics: `Vertex.Spec(push_image_tag=...)` / `Kubernetes.Spec(push_image_tag=...)`
push the image at packaging time to that reference; without one, a built image goes to
`gcr.io/<project>/<name>:<timestamp>` (the project from `$GOOGLE_CLOUD_PROJECT`,
`$CLOUDSDK_CORE_PROJECT` or application-default credentials). Unlike XManager, the job then
names the image by the pushed manifest's digest (`registry/repository@sha256:...`), never by the
mutable tag, and the digest is recorded with the job.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

from xmanager import xm
from xmanager.oci.progress import PushProgress
from xmanager.xm_local import executors
from xmanager.xm_local.errors import PackagingError


def wants_push(executor_spec: xm.ExecutorSpec) -> bool:
    return isinstance(executor_spec, executors.VertexSpec | executors.KubernetesSpec)


def default_tag(name: str) -> str:
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("CLOUDSDK_CORE_PROJECT")
    if not project:
        try:
            import google.auth  # noqa: PLC0415
            import google.auth.exceptions  # noqa: PLC0415

            _, project = google.auth.default()
        except (ImportError, google.auth.exceptions.GoogleAuthError):
            project = None
    if not project:
        raise PackagingError(
            f"the image of {name} must be pushed for a remote executor, and no push_image_tag "
            "was given nor a Google Cloud project found for the default gcr.io/PROJECT/NAME:TAG; "
            "pass executor_spec=...Spec(push_image_tag='registry/repository:tag') or set "
            "$GOOGLE_CLOUD_PROJECT"
        )
    tag = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S-%f")
    return f"gcr.io/{project}/{name}:{tag}"


def push_artifact(artifact: xm.ImageArtifact, executor_spec: xm.ExecutorSpec) -> xm.ImageArtifact:
    """The artifact pushed (when its spec asks for it) and named by digest."""
    if not wants_push(executor_spec) or artifact.image_path is None:
        return artifact
    tag = getattr(executor_spec, "push_image_tag", None) or default_tag(artifact.name)
    from xmanager.oci import registry  # noqa: PLC0415  # requests, only when pushing

    progress = PushProgress()
    try:
        result = registry.push(Path(artifact.image_path), tag, progress=progress)
    except registry.RegistryError as error:
        raise PackagingError(f"pushing {artifact.name} to {tag}: {error}") from None
    finally:
        progress.close()
    return dataclasses.replace(
        artifact, image_path=None, image_ref=result.reference, digest=result.digest
    )
