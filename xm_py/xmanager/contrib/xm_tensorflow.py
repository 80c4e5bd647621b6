"""Distributed TensorFlow job groups with `TF_CONFIG`, as XManager's `xm_tensorflow`.

    builder = MultiWorkerMirroredStrategyBuilder(
        experiment, worker_executable, xm_local.Kubernetes(...), num_workers=3)
    experiment.add(builder.gen_job_group(), args=hparams)

Each job gets the `TF_CONFIG` of its task; the cluster lists every task's stable address
(`addressing.k8s_pod_domain`). Supported: tf.distribute.MultiWorkerMirroredStrategy and
tf.distribute.ParameterServerStrategy, on the Kubernetes executor.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from xmanager import xm, xm_local
from xmanager.contrib import addressing

JobGroupGenerator = Callable[..., Awaitable[Any]]


def _namespace(executor: xm.Executor) -> str:
    return executor.namespace if isinstance(executor, xm_local.Kubernetes) else "default"


def _require_kubernetes(strategy: str, *executors: xm.Executor) -> None:
    for executor in executors:
        if not isinstance(executor, xm_local.Kubernetes):
            raise NotImplementedError(
                f"{strategy} is not supported for executor_type `{type(executor)}`: use "
                "xm_local.Kubernetes"
            )


def _generator(build: Callable[[Any, Mapping[str, Any]], xm.JobGroup]) -> JobGroupGenerator:
    async def _gen_job_group(work_unit: Any, **hparams: Any) -> Any:
        return work_unit.add(build(work_unit, hparams))

    return _gen_job_group


@dataclasses.dataclass
class MultiWorkerMirroredStrategyBuilder:
    """N identical workers, `TF_CONFIG` task type 'worker'."""

    experiment: xm.Experiment
    worker_executable: xm.Executable
    worker_executor: xm.Executor
    worker_name: str = "worker"
    num_workers: int = 1

    def create_job_group(self, work_unit: Any, hparams: Mapping[str, Any]) -> xm.JobGroup:
        _require_kubernetes("MultiWorkerMirrored", self.worker_executor)
        return self.create_kubernetes_job_group(work_unit, hparams)

    def gen_job_group(self) -> JobGroupGenerator:
        """For `experiment.add(builder.gen_job_group(), args=hparams)`."""
        return _generator(self.create_job_group)

    def create_kubernetes_job_group(
        self, work_unit: Any, hparams: Mapping[str, Any]
    ) -> xm.JobGroup:
        namespace = _namespace(self.worker_executor)
        names = [f"{self.worker_name}-{i}" for i in range(self.num_workers)]
        domains = [
            addressing.k8s_pod_domain(
                name,
                self.experiment.experiment_id,
                work_unit.work_unit_id,
                namespace=namespace,
            )
            for name in names
        ]
        jobs: dict[str, xm.Job] = {}
        for index, name in enumerate(names):
            tf_config = {
                "cluster": {"worker": domains},
                "task": {"type": "worker", "index": index},
            }
            jobs[name] = xm.Job(
                executable=self.worker_executable,
                executor=self.worker_executor,
                args=dict(hparams),
                env_vars={"TF_CONFIG": json.dumps(tf_config)},
            )
        return xm.JobGroup(**jobs)  # type: ignore[arg-type]  # keyword jobs, no constraints


@dataclasses.dataclass
class ParameterServerStrategyBuilder:
    """A chief, parameter servers and workers, each with its `TF_CONFIG` task."""

    experiment: xm.Experiment
    chief_executable: xm.Executable
    chief_executor: xm.Executor
    worker_executable: xm.Executable
    worker_executor: xm.Executor
    ps_executable: xm.Executable
    ps_executor: xm.Executor
    chief_name: str = "chief"
    worker_name: str = "worker"
    ps_name: str = "ps"
    num_workers: int = 1
    num_ps: int = 1

    def create_job_group(self, work_unit: Any, hparams: Mapping[str, Any]) -> xm.JobGroup:
        _require_kubernetes(
            "ParameterServerStrategy", self.chief_executor, self.worker_executor, self.ps_executor
        )
        return self.create_kubernetes_job_group(work_unit, hparams)

    def gen_job_group(self) -> JobGroupGenerator:
        """For `experiment.add(builder.gen_job_group(), args=hparams)`."""
        return _generator(self.create_job_group)

    def create_kubernetes_job_group(
        self, work_unit: Any, hparams: Mapping[str, Any]
    ) -> xm.JobGroup:
        namespace = _namespace(self.chief_executor)

        def domain(name: str) -> str:
            return addressing.k8s_pod_domain(
                name, self.experiment.experiment_id, work_unit.work_unit_id, namespace=namespace
            )

        ps_names = [f"{self.ps_name}-{i}" for i in range(self.num_ps)]
        worker_names = [f"{self.worker_name}-{i}" for i in range(self.num_workers)]
        cluster = {
            "chief": [domain(self.chief_name)],
            "worker": [domain(n) for n in worker_names],
            "ps": [domain(n) for n in ps_names],
        }

        def tf_config(task_type: str, index: int) -> str:
            return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})

        # As XManager: the chief gets no hyperparameters, the others do.
        jobs: dict[str, xm.Job] = {
            self.chief_name: xm.Job(
                executable=self.chief_executable,
                executor=self.chief_executor,
                env_vars={"TF_CONFIG": tf_config("chief", 0)},
            )
        }
        for index, name in enumerate(ps_names):
            jobs[name] = xm.Job(
                executable=self.ps_executable,
                executor=self.ps_executor,
                args=dict(hparams),
                env_vars={"TF_CONFIG": tf_config("ps", index)},
            )
        for index, name in enumerate(worker_names):
            jobs[name] = xm.Job(
                executable=self.worker_executable,
                executor=self.worker_executor,
                args=dict(hparams),
                env_vars={"TF_CONFIG": tf_config("worker", index)},
            )
        return xm.JobGroup(**jobs)  # type: ignore[arg-type]  # keyword jobs, no constraints
