"""Running the real Bazel from tests, and finding the images it built."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every image in the workspace except the deliberately broken ones.
IMAGE_QUERY = 'kind("xm_(oci|py)_image rule", //...) except attr(tags, manual, //...)'
QUIET = ["--color=no", "--curses=no", "--noshow_progress"]


@dataclasses.dataclass(frozen=True)
class Image:
    label: str
    tarball: Path
    layout: Path
    digest: Path


def require_bazel() -> str:
    bazel = shutil.which("bazel")
    if bazel is None:
        pytest.skip("bazel is not on PATH (./setup.sh setup installs Bazel 7)")
    return bazel


def run(
    args: Sequence[str],
    *,
    startup: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`bazel [startup] COMMAND ...` in the workspace; on failure the assertion shows its output."""
    command = [require_bazel(), *startup, *args]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-5000:]}"
    return result


def discard_output_base(output_base: Path) -> None:
    """Shuts down the Bazel server of an output base a test made, and deletes it."""
    if output_base.exists():
        subprocess.run(
            [require_bazel(), f"--output_base={output_base}", "shutdown"],
            cwd=ROOT,
            capture_output=True,
            check=False,
            timeout=120,
        )
    subprocess.run(["chmod", "-R", "u+w", str(output_base)], check=False)  # Bazel's are read-only
    shutil.rmtree(output_base, ignore_errors=True)


def image_outputs(label: str, bazel_bin: Path) -> Image:
    package, _, name = label.removeprefix("@@").removeprefix("//").partition(":")
    base = bazel_bin / package / name
    return Image(label, Path(f"{base}.tar"), Path(f"{base}.oci"), Path(f"{base}.digest"))


def build_images(
    labels: Sequence[str], startup: Sequence[str] = (), flags: Sequence[str] = ()
) -> dict[str, Image]:
    run(["build", *QUIET, *flags, *labels], startup=startup)
    bazel_bin = Path(run(["info", *flags, "bazel-bin"], startup=startup).stdout.strip())
    return {label: image_outputs(label, bazel_bin) for label in labels}


def all_image_labels() -> list[str]:
    output = run(["query", *QUIET[:2], IMAGE_QUERY]).stdout
    return sorted(line.strip() for line in output.splitlines() if line.strip())
