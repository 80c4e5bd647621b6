"""Test infrastructure for the Kubernetes backend: a loopback registry, pushed test images, and
the emulated cluster (API emulator plus a node agent on Docker Engine)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes

from tests.containers import images
from tests.fakes.kubernetes.emulator import Emulator
from tests.fakes.node_agent.agent import NodeAgent

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def missing_reason() -> str | None:
    """Why the end-to-end cluster cannot run here, or None."""
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (./setup.sh setup installs it)"
    reason = images.busybox_missing_reason()
    if reason is not None:
        return reason
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as error:
        return f"Docker Engine is not reachable ({error}); start it with ./setup.sh setup"
    return None


@contextlib.contextmanager
def registry() -> Iterator[str]:
    """A CNCF distribution registry on loopback; yields 'localhost:PORT'."""
    root = Path(tempfile.mkdtemp(prefix="xm-k8s-registry-"))
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("docker-registry did not start") from None
                time.sleep(0.1)
        yield f"localhost:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def push(registry_host: str, name: str, root: Path, layer: bytes, **config: Any) -> str:
    """Pushes a busybox image with `config`; returns 'HOST/NAME@sha256:...'."""
    tarball = root / f"{name}.tar"
    images.write_image_tarball(tarball, fmt="oci", layer=layer, **config)
    digest_file = root / f"{name}.digest"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"--digestfile={digest_file}",
            f"oci-archive:{tarball}",
            f"docker://{registry_host}/{name}:latest",
        ],
        check=True,
        capture_output=True,
    )
    return f"{registry_host}/{name}@{digest_file.read_text().strip()}"


def push_layout(layout: Path, destination: str) -> None:
    """Copies an OCI layout directory (as Bazel writes one) to `destination` (HOST/NAME:TAG)."""
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{layout}",
            f"docker://{destination}",
        ],
        check=True,
        capture_output=True,
    )


class Cluster:
    """The emulated cluster: API server, controllers, one node agent running on Docker."""

    def __init__(self, root: Path, node_labels: dict[str, str] | None = None) -> None:
        self.root = root
        self.emulator = Emulator().start()
        self.kubeconfig = self.emulator.server.write_kubeconfig(root / "kubeconfig")
        self.agent_client = kubernetes.config.new_client_from_config(str(self.kubeconfig))  # type: ignore[no-untyped-call]
        self.node = f"node-{free_port()}"
        self.agent = NodeAgent(
            self.agent_client,
            self.node,
            labels=node_labels,
            allocatable={"nvidia.com/gpu": "1"},
        ).start()

    def client(self) -> Any:
        return kubernetes.config.new_client_from_config(str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def fault(self, **body: Any) -> None:
        request = urllib.request.Request(
            f"{self.emulator.url}/_emulator/faults",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=5).close()

    def evict(self, namespace: str, name: str) -> None:
        request = urllib.request.Request(
            f"{self.emulator.url}/_emulator/evict",
            data=json.dumps({"namespace": namespace, "name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=5).close()

    def requests(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.emulator.url}/_emulator/requests", timeout=5) as r:
            counts: dict[str, int] = json.loads(r.read())
            return counts

    def close(self) -> None:
        self.agent.stop()
        self.emulator.stop()


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)
