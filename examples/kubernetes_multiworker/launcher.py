r"""XManager's cifar10_tensorflow_k8s_multiworker launch script: three workers of a
MultiWorkerMirroredStrategy trial on Kubernetes, each asking for a T4 GPU.

The trainer is packaged from this directory by xm.PythonContainer on the
`gcr.io/deeplearning-platform-release/tf2-gpu.2-6` base and pushed, as XManager does, to
`gcr.io/$GOOGLE_CLOUD_PROJECT/...` (Kubernetes.Spec() has no push_image_tag). Behind a firewall,
`$XM_REGISTRY_MIRRORS` sends both the base pull and the push elsewhere (docs/images.md). The
`cifar10` module here is a stand-in without TensorFlow (see README.md).

Usage:

GOOGLE_CLOUD_PROJECT=my-project \
xmanager launch examples/kubernetes_multiworker/launcher.py -- --xm_wrap_late_bindings
"""

import itertools

from absl import app

from xmanager import xm, xm_local
from xmanager.contrib import xm_tensorflow


def main(_: list[str]) -> None:
    with xm_local.create_experiment(experiment_title="kubernetes_multiworker") as experiment:
        spec = xm.PythonContainer(
            # This script's directory (a relative path is resolved against the launch script).
            path=".",
            base_image="gcr.io/deeplearning-platform-release/tf2-gpu.2-6",
            entrypoint=xm.ModuleName("cifar10"),
        )
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

        builder = xm_tensorflow.MultiWorkerMirroredStrategyBuilder(
            experiment=experiment,
            worker_executable=executable,
            worker_executor=xm_local.Kubernetes(requirements=xm.JobRequirements(t4=1)),
            worker_name="worker",
            num_workers=3,
        )

        for hyperparameters in trials:
            experiment.add(builder.gen_job_group(), args=hyperparameters)


if __name__ == "__main__":
    app.run(main)
