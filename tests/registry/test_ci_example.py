"""examples/ci/build_and_push.sh, as CI runs it, against the registry on loopback: every image
target built, every xm_oci_push target pushed with the tag."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import requests

from tests.images import bazel
from tests.registry.conftest import Registry

SCRIPT = bazel.ROOT / "examples" / "ci" / "build_and_push.sh"


def test_ci_example_builds_and_pushes(plain_registry: Registry, tmp_path: Path) -> None:
    bazel.require_bazel()
    env = {
        **os.environ,
        "REGISTRY": plain_registry.host,
        "TAG": "ci-test",
        "XM_BAZEL_DISK_CACHE": str(tmp_path / "disk-cache"),
        "DOCKER_CONFIG": str(tmp_path / "no-docker-config"),
    }
    env.pop("CI", None)
    result = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=1200, check=False
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert "pushed" in result.stdout
    answer = requests.get(
        f"http://{plain_registry.host}/v2/my-project/quickstart-train/manifests/ci-test",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    assert answer.status_code == 200
    digest = (bazel.ROOT / "bazel-bin/examples/quickstart/train_image.digest").read_text()
    assert answer.headers["Docker-Content-Digest"] == digest.strip()
