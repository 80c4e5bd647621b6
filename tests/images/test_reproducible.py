"""Reproducibility: two clean builds of the quickstart image, with different output bases, umask
and time zone, give byte-identical digests (and layers, config and tarball).

Each build runs in a fresh Bazel server and output base with the disk cache off, so every action
really runs; the repository cache is shared (.bazelrc), so nothing is downloaded twice. The two
builds run at the same time; afterwards their servers are shut down and output bases deleted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.images import bazel

pytestmark = [pytest.mark.bazel, pytest.mark.slow]

TARGET = "//examples/quickstart:train_image"
SETTINGS = [(0o022, "UTC"), (0o077, "Pacific/Chatham")]


def _bin_dir(output_base: Path) -> Path:
    return output_base / "execroot" / "_main" / "bazel-out" / "k8-fastbuild" / "bin"


def _outputs(output_base: Path) -> dict[str, str]:
    """sha256 of each output of the image (and its layers), by name."""
    found = {}
    for path in sorted((_bin_dir(output_base) / "examples" / "quickstart").glob("train_image.*")):
        if path.is_file():
            found[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.mark.timeout(900)
def test_two_clean_builds_are_byte_identical() -> None:
    bazel_path = bazel.require_bazel()
    scratch = Path(tempfile.mkdtemp(prefix="xm-repro-"))
    bases = [scratch / f"output_base_{n}" for n in range(len(SETTINGS))]
    processes = []
    try:
        for base, (umask, tz) in zip(bases, SETTINGS, strict=True):
            command = [
                "sh",
                "-c",
                f'umask {umask:03o} && exec "$0" "$@"',
                bazel_path,
                f"--output_base={base}",
                "build",
                *bazel.QUIET,
                "--disk_cache=",
                "--symlink_prefix=/",  # leave the workspace's bazel-* symlinks alone
                f"--action_env=TZ={tz}",
                TARGET,
            ]
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=bazel.ROOT,
                    env={**os.environ, "TZ": tz},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for process in processes:
            _, stderr = process.communicate(timeout=840)
            assert process.returncode == 0, stderr[-5000:]
            assert "disk cache hit" not in stderr  # every action ran
        digests = [
            (
                base
                / "execroot/_main/bazel-out/k8-fastbuild/bin/examples/quickstart/train_image.digest"
            ).read_bytes()
            for base in bases
        ]
        assert digests[0].startswith(b"sha256:")
        assert digests[0] == digests[1]
        outputs = [_outputs(base) for base in bases]
        assert "train_image.tar" in outputs[0]
        assert outputs[0] == outputs[1]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        for base in bases:
            bazel.discard_output_base(base)
        shutil.rmtree(scratch, ignore_errors=True)
