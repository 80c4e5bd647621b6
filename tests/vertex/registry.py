"""A real OCI registry on loopback (Debian's docker-registry) and pushing test images to it."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.containers import images


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def loopback_registry(root: Path) -> Iterator[str]:
    """Runs a registry storing under `root`; yields its address (127.0.0.1:PORT)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed (./setup.sh setup installs it)")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "error"},
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1).close()
                break
            except OSError as error:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(
                        f"docker-registry did not start; see {root}/registry.log"
                    ) from error
                time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def push_image(
    registry: str,
    repository: str,
    workdir: Path,
    *,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = ("sh",),
) -> str:
    """Writes a busybox test image, pushes it with skopeo; returns REGISTRY/REPO@sha256:..."""
    tarball = workdir / f"{repository.replace('/', '_')}.tar"
    images.write_image_tarball(tarball, fmt="oci", entrypoint=entrypoint, cmd=cmd)
    digest_file = workdir / "digest"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"--digestfile={digest_file}",
            f"oci-archive:{tarball}",
            f"docker://{registry}/{repository}:latest",
        ],
        check=True,
        capture_output=True,
    )
    return f"{registry}/{repository}@{digest_file.read_text().strip()}"
