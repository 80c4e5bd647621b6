"""XManager's local launcher API: experiments run by the launcher daemon.

    from xmanager import xm, xm_local

    with xm_local.create_experiment(experiment_title='sweep') as experiment:
        ...

The executors are pure configuration; the daemon client (gRPC) is imported only when an
experiment is first created or looked up, so that importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from xmanager.xm_local.executors import (
    Caip,
    CaipSpec,
    DockerOptions,
    Kubernetes,
    KubernetesSpec,
    Local,
    LocalSpec,
    TensorboardCapability,
    TpuCapability,
    Vertex,
    VertexSpec,
)

if TYPE_CHECKING:
    from xmanager.xm_local.experiment import (
        LocalExperiment,
        LocalWorkUnit,
        create_experiment,
        get_experiment,
        list_experiments,
    )
    from xmanager.xm_local.packaging import PackagingError
    from xmanager.xm_local.submitter import WorkUnitRejectedError

_LAZY = {
    "LocalExperiment": "xmanager.xm_local.experiment",
    "LocalWorkUnit": "xmanager.xm_local.experiment",
    "create_experiment": "xmanager.xm_local.experiment",
    "get_experiment": "xmanager.xm_local.experiment",
    "list_experiments": "xmanager.xm_local.experiment",
    "PackagingError": "xmanager.xm_local.packaging",
    "WorkUnitRejectedError": "xmanager.xm_local.submitter",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xmanager.xm_local' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Caip",
    "CaipSpec",
    "DockerOptions",
    "Kubernetes",
    "KubernetesSpec",
    "Local",
    "LocalExperiment",
    "LocalSpec",
    "LocalWorkUnit",
    "PackagingError",
    "TensorboardCapability",
    "TpuCapability",
    "Vertex",
    "VertexSpec",
    "WorkUnitRejectedError",
    "create_experiment",
    "get_experiment",
    "list_experiments",
]
