"""XManager's `xmanager.contrib.tpu`: Dockerfile steps for images that run on TPU VMs.

Differs from XManager: XManager pins 2021 nightly builds that no longer match any TPU runtime;
this installs the current `libtpu` from PyPI. Request TPUs with `xm.JobRequirements(tpu_v5e='2x2')`
and friends on `xm_local.Vertex`.
"""

from __future__ import annotations


def tpuvm_docker_instructions() -> list[str]:
    """Dockerfile instructions adding the TPU runtime library to a Python image."""
    return ["RUN python -m pip install --no-cache-dir libtpu"]
