"""Quickstart: a learning-rate sweep of a small trainer, run by the launcher daemon.

    bazel run //examples/quickstart:launch -- --steps=300

The trainer runs as containers of //examples/quickstart:train_image when the daemon can run
containers (Docker Engine), else as processes of the py_binary //examples/quickstart:train.
Under `bazel run` both were built with the launcher; `xmanager launch` of this file builds the
one it needs with `bazel build`.
"""

from absl import app, flags

from xmanager import xm, xm_local

_STEPS = flags.DEFINE_integer("steps", 200, "Training steps per work unit.")
_RUN_AS = flags.DEFINE_enum(
    "run_as",
    "auto",
    ["auto", "container", "binary"],
    "How the trainer runs: as containers, as processes, or containers when the daemon can.",
)


def _containers_available(experiment: xm_local.LocalExperiment) -> bool:
    """Whether the daemon's local container backend (Docker Engine) can run jobs now."""
    backends = experiment.launcher.server_info.backends
    return any(b.name == "local_container" and b.available for b in backends)


def main(_: list[str]) -> None:
    with xm_local.create_experiment(experiment_title="quickstart sweep") as experiment:
        experiment.context.annotations.add_tags("quickstart")
        run_as = _RUN_AS.value
        if run_as == "auto":
            run_as = "container" if _containers_available(experiment) else "binary"
        if run_as == "container":
            packageable = xm.bazel_container(
                xm_local.Local.Spec(),
                label="//examples/quickstart:train_image",
                args={"batch_size": 32},
            )
        else:
            packageable = xm.bazel_binary(
                xm_local.Local.Spec(),
                label="//examples/quickstart:train",
                args={"batch_size": 32},
            )
        [executable] = experiment.package([packageable])
        print("Running the trainer as", "containers" if run_as == "container" else "processes")
        for learning_rate in (0.3, 0.1, 0.03, 0.01):
            experiment.add(
                xm.Job(
                    executable=executable,
                    executor=xm_local.Local(),
                    name="train",
                    args={"learning_rate": learning_rate, "steps": _STEPS.value},
                )
            )
    print(f"Experiment {experiment.experiment_id} done: `xmanager show {experiment.experiment_id}`")


if __name__ == "__main__":
    app.run(main)
