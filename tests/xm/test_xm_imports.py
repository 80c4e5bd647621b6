"""Importing the launch-script API must stay cheap and pure: standard library only."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

XM_PY = pathlib.Path(__file__).resolve().parents[2] / "xm_py"

FORBIDDEN = (
    "grpc",
    "google.protobuf",
    "docker",
    "kubernetes",
    "google.cloud",
    "sqlalchemy",
    "rich",
    "absl",
    "attr",
    "attrs",
)

# Only modules that the import added count: site hooks (e.g. namespace-package .pth files) may
# have loaded `google.cloud` before any of our code runs.
IMPORT_XM = """
import json, sys
before = set(sys.modules)
import xmanager.xm
print(json.dumps(sorted(set(sys.modules) - before)))
"""

# `xmanager.xm_local` loads the daemon client (grpc) lazily, on first use of an experiment
# function: `from xmanager import xm, xm_local` and its executors stay pure.
IMPORT_EXECUTORS = """
import json, sys
before = set(sys.modules)
from xmanager import xm, xm_local
xm_local.Local(requirements=xm.JobRequirements(cpu=1))
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _modules_after(script: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(XM_PY)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    modules: list[str] = json.loads(result.stdout)
    return modules


def _offending(modules: list[str]) -> list[str]:
    return [
        name
        for name in modules
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN)
    ]


def _ours_beyond_xm(modules: list[str], *allowed: str) -> list[str]:
    """Modules of this project other than `xmanager`, `xmanager.xm[.*]` and `allowed`."""
    return [
        name
        for name in modules
        if name.startswith("xmanager.")
        and name != "xmanager.xm"
        and not name.startswith("xmanager.xm.")
        and name not in allowed
    ]


def test_importing_xm_pulls_in_only_the_standard_library() -> None:
    modules = _modules_after(IMPORT_XM)
    assert "xmanager.xm" in modules
    assert _offending(modules) == []
    # Nor any other part of this project (the daemon client, generated protos, the CLI).
    assert _ours_beyond_xm(modules) == []


def test_executors_module_imports_only_xm() -> None:
    modules = _modules_after(IMPORT_EXECUTORS)
    assert "xmanager.xm_local.executors" in modules
    assert _offending(modules) == []
    assert _ours_beyond_xm(modules, "xmanager.xm_local", "xmanager.xm_local.executors") == []
