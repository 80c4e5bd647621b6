"""Packaging outside `bazel run`: the client builds labels with `bazel build` and reads their
outputs from the Build Event Protocol."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.images import bazel
from tests.support.daemon import ROOT
from xmanager import xm, xm_local
from xmanager.xm_local import packaging

pytestmark = pytest.mark.bazel


def test_bazel_binary_built_with_bazel_build(monkeypatch: pytest.MonkeyPatch) -> None:
    bazel.require_bazel()
    monkeypatch.delenv(packaging.MANIFEST_ENV, raising=False)
    monkeypatch.delenv("BUILD_WORKSPACE_DIRECTORY", raising=False)
    monkeypatch.setenv("XM_LAUNCH_SCRIPT", str(ROOT / "tests" / "launch" / "unlisted.py"))
    [binary] = packaging.package(
        [xm.bazel_binary(xm_local.Local.Spec(), label="//tests/launch:hello", args=["a b"])]
    )
    assert isinstance(binary, xm.BinaryArtifact)
    path = Path(binary.path)
    assert path.name == "hello"
    assert "/bazel-out/" in str(path)
    assert binary.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    run = subprocess.run([path, "a b"], capture_output=True, text=True, check=True, env={})
    assert run.stdout == "hello from Bazel: a b\n"
