"""The backend contract suite's fixtures: every backend behind one `harness` fixture.

Fixture protocol: how a backend plugs into the suite
----------------------------------------------------
Every test in `tests/backends/` takes `harness`, a `BackendHarness`, and runs once per entry of
`HARNESSES` (a fixture name each). To plug a backend in:

1. Write a function-scoped fixture named in `HARNESSES` that yields a `BackendHarness`. It starts
   whatever the backend talks to (an emulator on loopback speaking the real wire protocol),
   skips with `skip_or_fail(reason)` saying what is missing and how to get it when it cannot,
   and removes what its jobs left behind afterwards (`harness.close()` closes the backends the
   tests built).
2. Fill in the harness:
   - `name`, `backend_class` and `config` (a `DaemonConfig` on a fresh state directory under
     /tmp, whose settings point at the emulator): the suite builds the backend with
     `harness.build()` (a new `BackendContext` on a real `ObservationQueue`, with `JobDirs` in
     the state directory), and a second instance on the same state to test re-attaching after
     a restart; `build(log_cap_bytes=...)` changes a setting.
   - `job(name, plan) -> pb.Job`: a job the backend accepts that behaves as the `JobPlan` says:
     what it prints to stdout and stderr (and which environment variables), how long it then
     runs, its exit code, what it does on SIGTERM. A backend that runs real commands gives
     `plan.shell()` (POSIX sh, also busybox) to `sh -c`; an emulator that only pretends to run
     jobs interprets the plan itself.
   - `invalid_jobs`: jobs it accepts whose `check` must raise InvalidArgumentError, each with
     the field the error must name (after the "jobs[N]" prefix the suite passes).
   - `unavailable`: optional, builds an instance that cannot run jobs (its service unreachable),
     whose `availability()` must say why.
   - `start_timeout`: seconds a job may take to run once started (image loads, scheduling).
   - `unsupported`: `{feature: reason}` for a contract part the platform cannot offer (see
     `FEATURES`); those tests skip with the reason. Keep it empty if at all possible.

Three harnesses run today: local processes (`LocalProcessBackend`, always), local containers
(`LocalContainerBackend`, skipped with the reason when Docker Engine or busybox-static is
missing) and Vertex AI (`VertexBackend` against the emulator of tests/fakes/vertex.py, which
runs the jobs as containers pulled from a loopback registry; skipped likewise).
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from launcher_server.aggregation import FINAL_STATES
from launcher_server.backends.base import Backend, BackendContext
from launcher_server.backends.local.containers.backend import LocalContainerBackend
from launcher_server.backends.local.containers.options import INSTANCE_LABEL, instance_id
from launcher_server.backends.local.processes import LocalProcessBackend
from launcher_server.config import DaemonConfig
from launcher_server.job_dirs import JobDirs
from launcher_server.jobs import JobKey, JobObservation, LaunchSpec
from launcher_server.logs import LogSource, read_all
from launcher_server.observations import ObservationQueue
from tests.conftest import skip_or_fail
from tests.containers import images
from tests.support.daemon import kill_job_processes
from xmanager.launcher import contract
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.state_dir import StateDir

# Fixture names of the harnesses every contract test runs with, one per backend.
HARNESSES = ("processes_harness", "containers_harness", "vertex_harness", "kubernetes_harness")
# Contract parts a harness may declare `unsupported` (with the reason).
FEATURES = frozenset({"cancel_grace", "reattach", "logs_follow", "log_cap", "gang_outcomes"})


@dataclasses.dataclass(frozen=True)
class JobPlan:
    """What a test job does: prints, then runs for a while, then exits; or reacts to SIGTERM."""

    stdout: Sequence[str] = ()
    stderr: Sequence[str] = ()
    # Seconds between stdout lines (to follow a log as it grows).
    line_delay: float = 0.0
    # Seconds it runs after printing.
    run_seconds: float = 0.0
    exit_code: int = 0
    # On SIGTERM: "default" (dies), "exit" (prints "terminated", exits 0), "ignore".
    on_term: str = "default"
    # Printed to stdout first, once its SIGTERM handling is set up.
    ready_line: str = "ready"
    # Environment variables printed as NAME=value lines to stdout, after the ready line.
    print_env: Sequence[str] = ()

    def shell(self) -> str:
        """The plan as a POSIX sh script (dash, busybox)."""
        lines: list[str] = []
        if self.on_term == "exit":
            lines.append("trap 'echo terminated; exit 0' TERM")
        elif self.on_term == "ignore":
            lines.append("trap '' TERM")
        if self.ready_line:
            lines.append(f"echo {shlex.quote(self.ready_line)}")
        lines.extend(f'printf "%s\\n" "{name}=${name}"' for name in self.print_env)
        for i, text in enumerate(self.stdout):
            if i and self.line_delay:
                lines.append(f"sleep {self.line_delay}")
            lines.append(f"printf '%s\\n' {shlex.quote(text)}")
        lines.extend(f"printf '%s\\n' {shlex.quote(text)} >&2" for text in self.stderr)
        if self.run_seconds:
            # Short sleeps: sh runs a trap only between commands.
            steps = max(1, round(self.run_seconds / 0.1))
            lines.append(f"i=0; while [ $i -lt {steps} ]; do sleep 0.1; i=$((i+1)); done")
        lines.append(f"exit {self.exit_code}")
        return "\n".join(lines) + "\n"

    def expected_stdout(self) -> bytes:
        printed = ([self.ready_line] if self.ready_line else []) + list(self.stdout)
        return "".join(f"{text}\n" for text in printed).encode()


FOREVER = 3600.0


class Observed:
    """The observations a backend instance reported through its real ObservationQueue."""

    def __init__(self) -> None:
        self.queue = ObservationQueue()
        self.seen: list[JobObservation] = []

    def _drain(self, timeout: float) -> None:
        try:
            item = self.queue.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if isinstance(item, JobObservation):
                self.seen.append(item)
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return

    def of(self, key: JobKey) -> list[JobObservation]:
        self._drain(0)
        return [o for o in self.seen if o.key == key]

    def states(self, key: JobKey) -> list[int]:
        return [o.state for o in self.of(key)]

    def wait(self, key: JobKey, states: Sequence[int], timeout: float = 60) -> JobObservation:
        """The first observation of `key` in one of `states`, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for observation in self.of(key):
                if observation.state in states:
                    return observation
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = [pb.JobState.Name(s) for s in states]
                raise AssertionError(f"{key}: no {names} within {timeout}s; saw {self.of(key)}")
            self._drain(min(remaining, 0.2))

    def final(self, key: JobKey, timeout: float = 60) -> JobObservation:
        return self.wait(key, sorted(FINAL_STATES), timeout)

    def is_final(self, key: JobKey) -> Callable[[], bool]:
        return lambda: any(o.state in FINAL_STATES for o in self.of(key))


@dataclasses.dataclass
class Instance:
    """One backend object and what it reported: a daemon's life."""

    backend: Backend
    observed: Observed


@dataclasses.dataclass
class BackendHarness:
    """How the contract suite builds one backend and makes jobs for it (see the module doc)."""

    name: str
    backend_class: Callable[[BackendContext], Backend]
    config: DaemonConfig
    job: Callable[[str, JobPlan], pb.Job]
    invalid_jobs: Sequence[tuple[pb.Job, str]] = ()
    unavailable: Callable[[], Backend] | None = None
    start_timeout: float = 30.0
    unsupported: Mapping[str, str] = dataclasses.field(default_factory=dict)
    instances: list[Instance] = dataclasses.field(default_factory=list)

    @property
    def job_dirs(self) -> JobDirs:
        return JobDirs(self.config.state_dir.jobs)

    def build(self, **settings: Any) -> Instance:
        """A new backend instance on the same state, with its own observation queue; `settings`
        change the DaemonConfig (e.g. log_cap_bytes)."""
        observed = Observed()
        config = dataclasses.replace(self.config, **settings)
        context = BackendContext(report=observed.queue.put, job_dirs=self.job_dirs, config=config)
        instance = Instance(self.backend_class(context), observed)
        self.instances.append(instance)
        return instance

    def require(self, feature: str) -> None:
        assert feature in FEATURES, feature
        if feature in self.unsupported:
            pytest.skip(f"{self.name}: {self.unsupported[feature]}")

    def close(self) -> None:
        for instance in self.instances:
            with contextlib.suppress(Exception):
                instance.backend.close()


def launch_spec(key: JobKey, job: pb.Job, peers: Sequence[str] = ()) -> LaunchSpec:
    """What the scheduler hands a backend for `job` (args and env as added, plus XM_*)."""
    peers = tuple(peers) or (key.job_name,)
    env = {
        **job.env,
        **contract.launcher_env(key.experiment_id, key.work_unit_id, key.job_name, list(peers)),
    }
    return LaunchSpec(
        key=key, job=job, args=tuple(job.args), env=env, peers=peers, experiment_title="contract"
    )


def log_text(source: LogSource, stream: str = "output") -> bytes:
    return b"".join(read.data for read in read_all(source, stream, 0, 1 << 16))


def wait_log(source: LogSource, needle: bytes, stream: str = "stdout", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log_text(source, stream):
        assert time.monotonic() < deadline, f"{needle!r} not in {log_text(source, stream)!r}"
        time.sleep(0.05)


# -- the harnesses -------------------------------------------------------------------------------


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest) -> BackendHarness:
    built: BackendHarness = request.getfixturevalue(request.param)
    return built


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Short: a Unix socket path must fit in 108 bytes, pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="xm-bk-", dir="/tmp"))
    yield path
    kill_job_processes(path)
    shutil.rmtree(path, ignore_errors=True)


def _config(state_dir: Path, **settings: Any) -> DaemonConfig:
    state = StateDir.resolve(state_dir)
    state.create()
    return DaemonConfig(state_dir=state, **settings)


@pytest.fixture
def processes_harness(state_dir: Path) -> Iterator[BackendHarness]:
    def job(name: str, plan: JobPlan) -> pb.Job:
        return pb.Job(
            name=name,
            artifact=pb.Artifact(local_binary=pb.LocalBinary(path="/bin/sh")),
            args=["-c", plan.shell()],
            executor=pb.Executor(local=pb.LocalExecutor()),
        )

    not_executable = state_dir / "not-executable"
    not_executable.write_text("#!/bin/sh\n")
    field = "artifact.local_binary.path"
    invalid = [
        (_with_binary(job("relative", JobPlan()), "bin/sh"), field),
        (_with_binary(job("missing", JobPlan()), str(state_dir / "missing")), field),
        (_with_binary(job("not_executable", JobPlan()), str(not_executable)), field),
    ]
    harness = BackendHarness(
        name="processes",
        backend_class=LocalProcessBackend,
        config=_config(state_dir),
        job=job,
        invalid_jobs=invalid,
    )
    yield harness
    harness.close()


def _with_binary(job: pb.Job, path: str) -> pb.Job:
    job.artifact.local_binary.path = path
    return job


@pytest.fixture(scope="session")
def sh_image() -> Iterator[Path]:
    """An image tarball whose entrypoint is `sh -c`: a job's one argument is its script."""
    try:
        import docker
    except ImportError:
        skip_or_fail("docker-py is not installed (./setup.sh setup installs it)")
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as error:
        skip_or_fail(f"Docker Engine is not reachable ({error}); start it with ./setup.sh setup")
    reason = images.busybox_missing_reason()
    if reason is not None:
        skip_or_fail(reason)
    root = Path(tempfile.mkdtemp(prefix="xm-bk-images-"))
    path = root / "sh.tar"
    image_id = images.write_image_tarball(path, entrypoint=["/bin/sh", "-c"], cmd=None)
    yield path
    with contextlib.suppress(Exception):
        client.images.remove(image_id, force=True)
    client.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def containers_harness(state_dir: Path, sh_image: Path) -> Iterator[BackendHarness]:
    import docker

    def job(name: str, plan: JobPlan) -> pb.Job:
        return pb.Job(
            name=name,
            artifact=pb.Artifact(oci_image=pb.OciImage(tarball_path=str(sh_image))),
            args=[plan.shell()],
            executor=pb.Executor(local=pb.LocalExecutor()),
        )

    missing_tarball = job("missing", JobPlan())
    missing_tarball.artifact.oci_image.tarball_path = str(state_dir / "missing.tar")
    bad_port = job("bad_port", JobPlan())
    bad_port.executor.local.docker_options.ports[80] = 70000
    unreachable = _config(Path(tempfile.mkdtemp(prefix="xm-bk-", dir=state_dir)))
    unreachable = dataclasses.replace(unreachable, docker_host=f"unix://{state_dir}/no.sock")

    def unavailable() -> Backend:
        context = BackendContext(
            report=ObservationQueue().put,
            job_dirs=JobDirs(unreachable.state_dir.jobs),
            config=unreachable,
        )
        return LocalContainerBackend(context)

    harness = BackendHarness(
        name="containers",
        backend_class=LocalContainerBackend,
        config=_config(state_dir),
        job=job,
        invalid_jobs=[
            (missing_tarball, "artifact.oci_image.tarball_path"),
            (bad_port, "executor.local"),
        ],
        unavailable=unavailable,
        start_timeout=60.0,
    )
    yield harness
    harness.close()
    client = docker.from_env(timeout=10)
    label = f"{INSTANCE_LABEL}={instance_id(harness.config.state_dir.root)}"
    filters: dict[str, Any] = {"label": label}
    for container in client.containers.list(all=True, filters=filters, ignore_removed=True):
        with contextlib.suppress(Exception):
            container.remove(force=True)
    for network in client.networks.list(filters=filters):
        with contextlib.suppress(Exception):
            network.remove()
    client.close()


@pytest.fixture(scope="session")
def vertex_sh_image(sh_image: Path) -> Iterator[str]:
    """An image with entrypoint `sh -c` on a loopback registry, by digest (Vertex pulls)."""
    from tests.vertex import registry

    root = Path(tempfile.mkdtemp(prefix="xm-bk-registry-"))
    try:
        with registry.loopback_registry(root) as address:
            yield registry.push_image(
                address, "xm-contract/sh", root, entrypoint=["/bin/sh", "-c"], cmd=None
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def vertex_harness(
    state_dir: Path, vertex_sh_image: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BackendHarness]:
    from launcher_server.backends.vertex.backend import VertexBackend
    from tests.fakes.vertex import FakeVertex

    reference, _, digest = vertex_sh_image.partition("@")

    def job(name: str, plan: JobPlan) -> pb.Job:
        return pb.Job(
            name=name,
            artifact=pb.Artifact(oci_image=pb.OciImage(reference=reference, digest=digest)),
            args=[plan.shell()],
            executor=pb.Executor(vertex=pb.VertexExecutor()),
        )

    too_many_a100s = job("a100", JobPlan())
    too_many_a100s.requirements.accelerator.type = "A100"
    too_many_a100s.requirements.accelerator.count = 3
    tarball = job("tarball", JobPlan())
    tarball.artifact.oci_image.tarball_path = "/tmp/image.tar"

    def unavailable() -> Backend:
        # The real endpoint and no credentials anywhere.
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(state_dir / "no-key.json"))
        config = _config(Path(tempfile.mkdtemp(prefix="xm-bk-", dir=state_dir)))
        config = dataclasses.replace(config, vertex_project="test-project")
        context = BackendContext(
            report=ObservationQueue().put, job_dirs=JobDirs(config.state_dir.jobs), config=config
        )
        return VertexBackend(context)

    with FakeVertex(queue_seconds=0.05) as emulator:
        endpoint = f"http://{emulator.address}"
        harness = BackendHarness(
            name="vertex",
            backend_class=VertexBackend,
            config=_config(
                state_dir,
                vertex_project="test-project",
                vertex_region="us-central1",
                vertex_endpoint=endpoint,
                vertex_logging_endpoint=endpoint,
                vertex_poll_min_seconds=0.1,
                vertex_poll_max_seconds=0.5,
            ),
            job=job,
            invalid_jobs=[(too_many_a100s, "requirements"), (tarball, "artifact")],
            unavailable=unavailable,
            start_timeout=90.0,
            unsupported={
                "log_cap": "Cloud Logging keeps a Vertex AI job's output, not the daemon",
                "gang_outcomes": "Vertex AI has one state per CustomJob (a work unit): when one "
                "job fails, the others are stopped and fail with its message",
            },
        )
        yield harness
        harness.close()


# The Kubernetes harness lives in its own module (emulator, node agent, registry).
from tests.backends.kubernetes_harness import (  # noqa: E402
    kubernetes_harness,  # noqa: F401
    kubernetes_sh_image,  # noqa: F401
)
