r"""Multi-worker TensorFlow on Kubernetes, as XManager's cifar10_tensorflow_k8s_multiworker.

The launch script is XManager's, except for the packaging: the trainer image is given as a
reference (this launcher does not build xm.PythonContainer), pushed to a registry the cluster
pulls from.

Usage:

xmanager launch examples/kubernetes_multiworker/launcher.py -- \
  --xm_wrap_late_bindings --image=registry.example/trainer@sha256:...
"""

import itertools

from absl import app, flags

from xmanager import xm, xm_local
from xmanager.contrib import xm_tensorflow

_IMAGE = flags.DEFINE_string("image", None, "The trainer image (registry/repository@digest).")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 3, "Workers of each trial.")
_GPU = flags.DEFINE_bool("gpu", True, "Each worker asks for a T4 GPU (as XManager's example).")


def main(_: list[str]) -> None:
    with xm_local.create_experiment(experiment_title="kubernetes_multiworker") as experiment:
        spec = xm.Container(image_path=str(_IMAGE.value))
        [executable] = experiment.package(
            [
                xm.Packageable(
                    executable_spec=spec,
                    executor_spec=xm_local.Kubernetes.Spec(),
                    args={},
                ),
            ]
        )

        learning_rates = [0.001]
        trials = [{"learning_rate": lr} for (lr,) in itertools.product(learning_rates)]

        requirements = xm.JobRequirements(t4=1) if _GPU.value else xm.JobRequirements()
        builder = xm_tensorflow.MultiWorkerMirroredStrategyBuilder(
            experiment=experiment,
            worker_executable=executable,
            worker_executor=xm_local.Kubernetes(requirements=requirements),
            worker_name="worker",
            num_workers=_NUM_WORKERS.value,
        )

        for hyperparameters in trials:
            experiment.add(builder.gen_job_group(), args=hyperparameters)


if __name__ == "__main__":
    flags.mark_flag_as_required("image")
    app.run(main)
