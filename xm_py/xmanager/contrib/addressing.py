"""Addresses of jobs, known before they start: experiment and work unit ids fix them.

On Kubernetes every replica of a job has a stable DNS name through its work unit's headless
Service; these are the names the launcher's Kubernetes backend gives (docs/kubernetes.md).
"""

from __future__ import annotations

from xmanager.launcher import kubernetes_names as names

DEFAULT_PORT = 2222


def k8s_pod_domain(
    job_name: str,
    experiment_id: int,
    work_unit_id: int,
    service: str = "experiments",
    namespace: str = "default",
    *,
    replica: int = 0,
    port: int = DEFAULT_PORT,
) -> str:
    """'HOST:PORT' of a job's replica on Kubernetes (XManager's signature, our names).

    Args:
      job_name: the job's name in its work unit (the JobGroup key).
      experiment_id: the experiment's id.
      work_unit_id: the work unit's id.
      service: XManager's shared Service name; ignored: each work unit has its own headless
        Service here, so that deleting a unit removes its names too.
      namespace: the executor's namespace.
      replica: the replica index, for jobs with `requirements.replicas` > 1.
      port: appended as ':PORT' (XManager's 2222 by default).
    """
    del service
    host = names.pod_domain(
        names.job_name(experiment_id, work_unit_id, job_name),
        replica,
        experiment_id,
        work_unit_id,
        namespace,
    )
    return f"{host}:{port}"
