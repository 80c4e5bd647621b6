"""Quickstart: a learning-rate sweep of a small trainer, run by the launcher daemon.

xmanager launch examples/quickstart/launch.py -- --steps=300
"""

from absl import app, flags

from xmanager import xm, xm_local

_STEPS = flags.DEFINE_integer("steps", 200, "Training steps per work unit.")


def main(_: list[str]) -> None:
    with xm_local.create_experiment(experiment_title="quickstart sweep") as experiment:
        experiment.context.annotations.add_tags("quickstart")
        [executable] = experiment.package(
            [
                xm.Packageable(
                    executable_spec=xm.Binary(path="train.py"),
                    executor_spec=xm_local.Local.Spec(),
                    args={"batch_size": 32},
                )
            ]
        )
        for learning_rate in (0.3, 0.1, 0.03, 0.01):
            experiment.add(
                xm.Job(
                    executable=executable,
                    executor=xm_local.Local(),
                    args={"learning_rate": learning_rate, "steps": _STEPS.value},
                )
            )
    print(f"Experiment {experiment.experiment_id} done: `xmanager show {experiment.experiment_id}`")


if __name__ == "__main__":
    app.run(main)
