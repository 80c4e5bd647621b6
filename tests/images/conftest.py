"""Fixtures of the image suites: the workspace's images, built once per session by real Bazel."""

from __future__ import annotations

import pytest

from tests.images import bazel


@pytest.fixture(scope="session")
def images() -> dict[str, bazel.Image]:
    """Every image target of the workspace (xm_oci_image, xm_py_image), built."""
    labels = bazel.all_image_labels()
    assert "//examples/quickstart:train_image" in labels
    return bazel.build_images(labels)


@pytest.fixture(scope="session")
def quickstart(images: dict[str, bazel.Image]) -> bazel.Image:
    return images["//examples/quickstart:train_image"]
