"""XManager's `xmanager.contrib.tensorboard`: a TensorBoard job next to an experiment's jobs.

For Vertex AI jobs, `xm_local.TensorboardCapability` streams to a managed TensorBoard instead;
this helper runs TensorBoard itself as an auxiliary job with whatever executor is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xmanager import xm


class TensorboardProvider:
    """The packageable and arguments of a TensorBoard job."""

    DEFAULT_TENSORBOARD_PORT = 6006

    @staticmethod
    def get_tensorboard_packageable(timeout_secs: int) -> xm.PythonContainer:
        """A container running TensorBoard for `timeout_secs` (0: no time limit)."""
        if timeout_secs < 0:
            raise RuntimeError("`timeout_secs` must be a nonnegative number")
        return xm.PythonContainer(
            base_image="tensorflow/tensorflow",
            entrypoint=xm.CommandList([f"timeout {timeout_secs}s tensorboard"]),
        )

    @staticmethod
    def get_tensorboard_job_args(
        log_dir: str,
        port: int | None = None,
        additional_args: Mapping[str, Any] | None = None,
    ) -> Mapping[str, Any]:
        """TensorBoard's flags: the log directory, the port, reachable from outside a container."""
        args: dict[str, Any] = {
            "logdir": log_dir,
            "port": port or TensorboardProvider.DEFAULT_TENSORBOARD_PORT,
            "host": "0.0.0.0",
            # Fast loading breaks with GKE Workload Identity; callers can turn it back on.
            "load_fast": "false",
        }
        args.update(additional_args or {})
        return args


def add_tensorboard(
    experiment: xm.Experiment,
    logdir: str,
    executor: xm.Executor,
    timeout_secs: int = 60 * 60 * 24,
    args: Mapping[str, Any] | None = None,
) -> None:
    """Adds an auxiliary unit running TensorBoard on `logdir` with `executor`."""
    provider = TensorboardProvider
    [executable] = experiment.package(
        [
            xm.Packageable(
                provider.get_tensorboard_packageable(timeout_secs=timeout_secs),
                executor.Spec(),
            )
        ]
    )
    job = xm.Job(
        executable,
        executor,
        args=provider.get_tensorboard_job_args(logdir, additional_args=args),
        name="tensorboard",
    )
    experiment.add(xm.AuxiliaryUnitJob(job, termination_delay_secs=0))
