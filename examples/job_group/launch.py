"""A JobGroup: a server and a client in one work unit, the client finding the server by name.

    bazel run //examples/job_group:launch

Both jobs start together; the client reaches the job called `server` (see client.py for how a
job name is resolved, as containers and as processes), echoes a message and shuts the server
down, and the work unit succeeds. Should the client fail, the daemon stops the server too.
The jobs run as containers when the daemon can run containers (Docker Engine), else as
processes: the same arguments work both ways.
"""

import socket

from absl import app, flags

from xmanager import xm, xm_local

_MESSAGE = flags.DEFINE_string("message", "hello, server", "What the client sends.")
_RUN_AS = flags.DEFINE_enum(
    "run_as",
    "auto",
    ["auto", "container", "binary"],
    "How the jobs run: as containers, as processes, or containers when the daemon can.",
)


def _containers_available(experiment: xm_local.LocalExperiment) -> bool:
    """Whether the daemon's local container backend (Docker Engine) can run jobs now."""
    backends = experiment.launcher.server_info.backends
    return any(b.name == "local_container" and b.available for b in backends)


def _free_port() -> int:
    """A port free on this machine now: processes share its network (containers do not care)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(_: list[str]) -> None:
    with xm_local.create_experiment(experiment_title="job group: echo") as experiment:
        containers = _RUN_AS.value == "container" or (
            _RUN_AS.value == "auto" and _containers_available(experiment)
        )
        spec = xm_local.Local.Spec()
        if containers:
            server, client = experiment.package(
                [
                    xm.bazel_container(spec, label="//examples/job_group:server_image"),
                    xm.bazel_container(spec, label="//examples/job_group:client_image"),
                ]
            )
        else:
            server, client = experiment.package(
                [
                    xm.bazel_binary(spec, label="//examples/job_group:server"),
                    xm.bazel_binary(spec, label="//examples/job_group:client"),
                ]
            )
        port = _free_port()
        # A container listens on its own network; a process only on this machine's loopback.
        bind = "0.0.0.0" if containers else "127.0.0.1"
        experiment.add(
            xm.JobGroup(
                server=xm.Job(server, xm_local.Local(), args={"port": port, "bind": bind}),
                client=xm.Job(
                    client,
                    xm_local.Local(),
                    args={"server": "server", "port": port, "message": _MESSAGE.value},
                ),
            )
        )
        print("Running the server and the client as", "containers" if containers else "processes")
    print(f"Experiment {experiment.experiment_id} done: `xmanager show {experiment.experiment_id}`")


if __name__ == "__main__":
    app.run(main)
