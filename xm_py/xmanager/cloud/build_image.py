"""XManager's `xmanager.cloud.build_image`, through this launcher's packaging (never Cloud Build).

`build` packages a PythonContainer the way `experiment.package` does and returns the image
reference; `push` pushes a local image with Docker Engine and returns it by digest.
Differences from XManager: `project`, `bucket` and `pull_image` are accepted and ignored (no
Cloud Build), and a Dockerfile build (`build_by_dockerfile`) uses the local Docker Engine.
"""

from __future__ import annotations

from xmanager import xm


def build(  # noqa: PLR0917  # XManager's signature
    py_executable: xm.PythonContainer,
    args: xm.SequentialArgs,
    env_vars: dict[str, str],
    image_name: str | None = None,
    project: str | None = None,
    bucket: str | None = None,
    pull_image: bool = False,
) -> str:
    """Builds the image of `py_executable`; returns its reference (tarball path or name)."""
    from xmanager.xm_local import executors, packaging  # noqa: PLC0415

    spec = executors.VertexSpec(push_image_tag=image_name)
    [executable] = packaging.package(
        [xm.Packageable(py_executable, spec, args=args, env_vars=env_vars)]
    )
    assert isinstance(executable, xm.ImageArtifact)
    return executable.image_ref or executable.image_path or ""


def build_by_dockerfile(  # noqa: PLR0917  # XManager's signature
    path: str,
    dockerfile: str,
    image_name: str,
    project: str | None = None,
    bucket: str | None = None,
    pull_image: bool = False,
) -> str:
    """`docker build` of the context `path` with `dockerfile`, tagged `image_name`."""
    import docker  # noqa: PLC0415

    docker.from_env().images.build(path=path, dockerfile=dockerfile, tag=image_name, rm=True)
    return image_name


def push(image: str) -> str:
    """Pushes a local image; returns 'repository@sha256:...'."""
    import docker  # noqa: PLC0415
    from docker.utils import parse_repository_tag  # noqa: PLC0415

    client = docker.from_env()
    repository, tag = parse_repository_tag(image)
    for line in client.images.push(repository, tag=tag or "latest", stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(f"pushing {image} failed: {line['error']}")
    for digest in client.images.get(image).attrs.get("RepoDigests", []):
        if str(digest).startswith(repository + "@"):
            return str(digest)
    return image
