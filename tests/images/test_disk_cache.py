"""A build whose disk cache lost what an earlier build left in it still succeeds.

Bazel 7 downloads only top-level outputs from a cache: an intermediate output that was a cache hit
exists for the output base only as a digest. When the cache no longer holds that digest (the cache
was deleted, trimmed, or the build names another one, as examples/ci/build_and_push.sh does), an
action that reads it failed with "Failed to fetch blobs because they do not exist remotely". The
workspace's .bazelrc lets Bazel rerun the actions whose outputs were lost instead.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.images import bazel

pytestmark = [pytest.mark.bazel]

PACKAGE = "//tests/images/cache_chain"


def test_a_build_survives_a_cache_that_lost_an_intermediate_output(tmp_path: Path) -> None:
    bazel.require_bazel()
    # An output base of its own: the test cleans it, which the workspace's must never be.
    output_base = Path(tempfile.mkdtemp(prefix="xm-cache-"))
    cache = tmp_path / "disk-cache"
    startup = [f"--output_base={output_base}"]
    flags = [*bazel.QUIET, f"--disk_cache={cache}", "--symlink_prefix=/"]
    try:
        bazel.run(["build", *flags, f"{PACKAGE}:first"], startup=startup)
        bazel.run(["clean"], startup=startup)
        from_cache = bazel.run(["build", *flags, f"{PACKAGE}:first"], startup=startup)
        assert "disk cache hit" in from_cache.stderr  # `shared` is now only a digest
        shutil.rmtree(cache)

        result = bazel.run(["build", *flags, f"{PACKAGE}:second"], startup=startup, check=False)

        assert result.returncode == 0, result.stderr[-5000:]
        bin_dir = Path(bazel.run(["info", *flags, "bazel-bin"], startup=startup).stdout.strip())
        assert (bin_dir / "tests/images/cache_chain/second.txt").read_text() == "shared\nsecond\n"
    finally:
        bazel.discard_output_base(output_base)
