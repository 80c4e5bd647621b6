"""`xm.Dockerfile`: built by Docker Engine's build API (docker-py), or by podman when Docker
Engine is absent; exported as an image tarball and then handled like any other image.

The build output streams to the launch script's terminal; a failed build names the failing
step. The tarball is cached under the image's ID, so an unchanged rebuild (all steps cached by
the engine) writes nothing new.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xmanager import xm
from xmanager.oci import image as oci_image
from xmanager.xm_local import image_cache
from xmanager.xm_local.errors import PackagingError

Say = Callable[[str], None]
_STEP = re.compile(r"^(Step \d+/\d+ : .*|STEP \d+/\d+: .*)$")


@dataclasses.dataclass(frozen=True)
class Built:
    path: Path
    digest: str


def build(spec: xm.Dockerfile, say: Say | None = None) -> Built:
    say = say or _print
    context = Path(spec.path)
    if not context.is_dir():
        raise PackagingError(f"xm.Dockerfile(path={spec.path!r}): {context} is not a directory")
    dockerfile = Path(spec.dockerfile) if spec.dockerfile else context / "Dockerfile"
    if not dockerfile.is_absolute() and spec.dockerfile:
        dockerfile = context / dockerfile
    if not dockerfile.is_file():
        raise PackagingError(f"xm.Dockerfile: {dockerfile} does not exist")
    client = _docker_client()
    if client is not None:
        try:
            return _build_docker(client, context, dockerfile, say)
        finally:
            client.close()
    podman = shutil.which("podman")
    if podman is not None:
        return _build_podman(podman, context, dockerfile, say)
    raise PackagingError(
        "xm.Dockerfile needs Docker Engine (its socket, $DOCKER_HOST or /var/run/docker.sock, "
        "was not reachable) or podman (not on PATH); run `./setup.sh setup`, which installs "
        "and starts Docker Engine, or install podman"
    )


def _print(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def _docker_client() -> Any:
    if os.environ.get("XM_DOCKERFILE_BUILDER") == "podman":
        return None
    try:
        import docker  # noqa: PLC0415
    except ImportError:
        return None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception:  # any failure: no usable engine, try podman
        return None
    return client


def _output_path(image_id: str) -> Path:
    return image_cache.subdir("images") / f"dockerfile-{image_id.removeprefix('sha256:')}.tar"


def _build_docker(client: Any, context: Path, dockerfile: Path, say: Say) -> Built:
    tag = f"xm-dockerfile-build:{uuid.uuid4().hex[:12]}"
    step = ""
    image_id = ""
    relative = os.path.relpath(dockerfile, context)
    for chunk in client.api.build(
        path=str(context), dockerfile=relative, tag=tag, rm=True, forcerm=True, decode=True
    ):
        if "stream" in chunk:
            text = str(chunk["stream"])
            for line in text.splitlines():
                if _STEP.match(line.strip()):
                    step = line.strip()
            if text.strip():
                say(text.rstrip("\n"))
        if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
            image_id = str(chunk["aux"]["ID"])
        if "error" in chunk:
            detail = str(chunk.get("error", "")).strip()
            raise PackagingError(
                f"docker build of {dockerfile} failed at {step or 'the start'}: {detail}"
            )
    try:
        if not image_id:
            image_id = str(client.images.get(tag).id)
        out = _output_path(image_id)
        if not out.is_file():
            tmp = out.with_name(f".{out.name}.{os.getpid()}")
            with tmp.open("wb") as f:
                for data in client.api.get_image(image_id):
                    f.write(data)
            os.replace(tmp, out)
    finally:
        client.api.remove_image(tag, noprune=True)
    return Built(out, oci_image.read(out).digest)


def _build_podman(podman: str, context: Path, dockerfile: Path, say: Say) -> Built:
    tag = f"localhost/xm-dockerfile-build:{uuid.uuid4().hex[:12]}"
    command = [podman, "build", "-f", str(dockerfile), "-t", tag, str(context)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    step = ""
    tail: list[str] = []
    for line in process.stdout:
        say(line.rstrip("\n"))
        tail = [*tail[-9:], line]
        if _STEP.match(line.strip()):
            step = line.strip()
    if process.wait() != 0:
        raise PackagingError(
            f"podman build of {dockerfile} failed at {step or 'the start'}:\n{''.join(tail)}"
        )
    try:
        image_id = subprocess.run(
            [podman, "image", "inspect", "--format", "{{.Id}}", tag],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        out = _output_path(image_id)
        if not out.is_file():
            tmp = out.with_name(f".{out.name}.{os.getpid()}")
            subprocess.run(
                [podman, "save", "--format", "docker-archive", "-o", str(tmp), tag],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            os.replace(tmp, out)
    except subprocess.CalledProcessError as error:
        raise PackagingError(f"podman could not export the built image: {error.stderr}") from None
    finally:
        subprocess.run([podman, "rmi", tag], capture_output=True, check=False)
    return Built(out, oci_image.read(out).digest)
