"""How the Vertex AI emulator runs a CustomJob: each replica as a Docker container, or simulated.

`DockerRunner` pulls each worker pool's image (by the reference given, e.g. a digest on a
loopback registry), runs every replica on a per-job network under the host name Vertex gives it
(workerpool0-0, ...), with the command, args and env of the spec plus what Vertex adds
(CLUSTER_SPEC, CLOUD_ML_JOB_ID, AIP_* directories), and writes their output to the log store.
`SimulatedRunner` runs nothing: a job runs until cancelled, or for $FAKE_RUN_SECONDS of its
chief's env and then exits with $FAKE_EXIT_CODE (for benchmarks with thousands of jobs).
"""

from __future__ import annotations

import abc
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

from google.cloud import aiplatform_v1 as aip

CONTAINER_LABEL = "xm-fake-vertex"
PORT = 2222
STOP_GRACE_SECONDS = 5


class JobRun:
    """One job as the runner sees it; the callbacks move the job through its states."""

    def __init__(
        self,
        *,
        job_id: str,
        project: str,
        location: str,
        job: aip.CustomJob,
        started: Callable[[], None],
        finished: Callable[[str], None],
        log: Callable[[str, str, bool], None],
    ) -> None:
        self.job_id = job_id
        self.project = project
        self.location = location
        self.job = job
        self.started = started
        self.finished = finished  # "" for success, else Vertex's error message
        self.log = log
        self.cancelled = threading.Event()

    def pools(self) -> list[aip.WorkerPoolSpec]:
        return list(self.job.job_spec.worker_pool_specs)

    def cluster(self) -> dict[str, list[str]]:
        return {
            f"workerpool{i}": [f"workerpool{i}-{r}:{PORT}" for r in range(pool.replica_count)]
            for i, pool in enumerate(self.pools())
        }

    def env(self, pool_index: int, replica: int) -> dict[str, str]:
        """The replica's environment: the spec's variables, then what Vertex adds."""
        pool = self.pools()[pool_index]
        env = {variable.name: variable.value for variable in pool.container_spec.env}
        spec = {
            "cluster": self.cluster(),
            "environment": "cloud",
            "task": {"type": f"workerpool{pool_index}", "index": replica},
        }
        env["CLUSTER_SPEC"] = json.dumps(spec)
        env["CLOUD_ML_JOB_ID"] = self.job_id
        env["CLOUD_ML_PROJECT_ID"] = self.project
        env["CLOUD_ML_REGION"] = self.location
        output = self.job.job_spec.base_output_directory.output_uri_prefix
        if output:
            base = output.rstrip("/")
            env["AIP_MODEL_DIR"] = f"{base}/model/"
            env["AIP_CHECKPOINT_DIR"] = f"{base}/checkpoints/"
            env["AIP_TENSORBOARD_LOG_DIR"] = f"{base}/logs/"
        return env


class Runner(abc.ABC):
    @abc.abstractmethod
    def run(self, run: JobRun) -> None:
        """Runs the job to its end (called in a thread of its own)."""

    def close(self) -> None:  # noqa: B027  # optional
        """Stops everything still running."""


class SimulatedRunner(Runner):
    def run(self, run: JobRun) -> None:
        run.started()
        env = {v.name: v.value for v in run.pools()[0].container_spec.env}
        seconds = float(env["FAKE_RUN_SECONDS"]) if "FAKE_RUN_SECONDS" in env else None
        run.log("workerpool0-0", "simulated replica started", False)
        if run.cancelled.wait(seconds):
            return
        code = int(env.get("FAKE_EXIT_CODE", "0"))
        run.finished(_exit_message("workerpool0-0", code) if code else "")


def _exit_message(task: str, code: int) -> str:
    return f"The replica {task} exited with a non-zero status of {code}. Termination reason: Error."


class DockerRunner(Runner):
    def __init__(self, instance: str) -> None:
        import docker

        self.client: Any = docker.from_env(timeout=60)
        self.instance = instance

    def _image(self, reference: str) -> None:
        import docker.errors

        try:
            self.client.images.get(reference)
        except docker.errors.ImageNotFound:
            self.client.images.pull(reference)

    def _follow(self, stream: Any, task: str, run: JobRun) -> None:
        """Writes a replica's output to the log store, line by line, in the order written."""
        pending = [b"", b""]
        for chunks in stream:
            for index, chunk in enumerate(chunks):
                if not chunk:
                    continue
                pending[index] += chunk
                *lines, pending[index] = pending[index].split(b"\n")
                for line in lines:
                    run.log(task, line.decode(errors="replace"), index == 1)
        for index, rest in enumerate(pending):
            if rest:
                run.log(task, rest.decode(errors="replace"), index == 1)

    def run(self, run: JobRun) -> None:
        import docker.errors

        labels = {CONTAINER_LABEL: self.instance}
        network = self.client.networks.create(f"xmfake-vertex-{run.job_id}", labels=labels)
        replicas: list[tuple[str, Any]] = []
        try:
            for i, pool in enumerate(run.pools()):
                spec = pool.container_spec
                try:
                    self._image(spec.image_uri)
                except docker.errors.DockerException as error:
                    run.finished(f"Unable to pull the image {spec.image_uri}: {error}")
                    return
                for r in range(pool.replica_count):
                    task = f"workerpool{i}-{r}"
                    container = self.client.containers.create(
                        spec.image_uri,
                        command=list(spec.args) or None,
                        entrypoint=list(spec.command) or None,
                        environment=run.env(i, r),
                        name=f"xmfake-vertex-{run.job_id}-{task}",
                        hostname=task,
                        network=network.name,
                        labels=labels,
                        detach=True,
                    )
                    replicas.append((task, container))
            if run.cancelled.is_set():
                return
            followers = []
            for task, container in replicas:
                # Attached before the start, so no output is missed (and none replayed twice, as
                # logs=True can); demux keeps each stream's order (Docker orders nothing across
                # stdout and stderr).
                stream = self.client.api.attach(
                    container.id, stdout=True, stderr=True, stream=True, logs=False, demux=True
                )
                follower = threading.Thread(
                    target=self._follow, args=(stream, task, run), daemon=True
                )
                follower.start()
                followers.append(follower)
                container.start()
            run.started()
            watcher = threading.Thread(target=self._stop_on_cancel, args=(run, replicas))
            watcher.daemon = True
            watcher.start()
            codes = [(task, int(c.wait()["StatusCode"])) for task, c in replicas]
            for follower in followers:
                follower.join(timeout=10)
            if run.cancelled.is_set():
                return
            failed = [(task, code) for task, code in codes if code != 0]
            run.finished(_exit_message(*failed[0]) if failed else "")
        finally:
            run.cancelled.set()  # ends the watcher
            for _, container in replicas:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
            with contextlib.suppress(docker.errors.DockerException):
                network.remove()

    def _stop_on_cancel(self, run: JobRun, replicas: list[tuple[str, Any]]) -> None:
        import docker.errors

        run.cancelled.wait()
        for _, container in replicas:
            with contextlib.suppress(docker.errors.DockerException):
                # SIGTERM, then SIGKILL after Vertex-like grace (fails when it already ended).
                container.stop(timeout=STOP_GRACE_SECONDS)

    def close(self) -> None:
        import docker.errors

        selector = {"label": f"{CONTAINER_LABEL}={self.instance}"}
        for container in self.client.containers.list(all=True, filters=selector):
            with contextlib.suppress(docker.errors.DockerException):  # a job's own cleanup won
                container.remove(force=True)
        for network in self.client.networks.list(filters=selector):
            with contextlib.suppress(docker.errors.DockerException):
                network.remove()
        self.client.close()
