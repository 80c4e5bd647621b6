"""Which backends this daemon has, built in one place, and which one runs a given job.

Every backend is registered, whether or not it can run here: one that cannot (no Docker
Engine, no cloud credentials) refuses its jobs at add time with FAILED_PRECONDITION saying what
is missing. Adding a backend means adding its class to `BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from launcher_server.backends.base import Backend, BackendContext
from launcher_server.backends.kubernetes.backend import KubernetesBackend
from launcher_server.backends.local.containers.backend import LocalContainerBackend
from launcher_server.backends.local.processes import LocalProcessBackend
from launcher_server.backends.vertex.backend import VertexBackend
from launcher_server.errors import FailedPreconditionError
from xmanager.launcher.v1 import launcher_pb2 as pb

# In routing order: the first backend that accepts a job runs it.
BACKENDS: tuple[type[Backend], ...] = (
    LocalProcessBackend,
    LocalContainerBackend,
    VertexBackend,
    KubernetesBackend,
)


class BackendRegistry:
    def __init__(self, backends: Sequence[Backend]) -> None:
        self._backends = tuple(backends)

    @classmethod
    def from_context(
        cls, context: BackendContext, classes: Iterable[type[Backend]] = BACKENDS
    ) -> BackendRegistry:
        return cls([backend_class(context) for backend_class in classes])

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._backends)

    def find(self, job: pb.Job) -> Backend | None:
        for backend in self._backends:
            if backend.accepts(job):
                return backend
        return None

    def route(self, job: pb.Job) -> Backend:
        """The backend that runs `job` (KeyError when none does: `check` refused it)."""
        backend = self.find(job)
        if backend is None:
            raise KeyError(f"no backend runs {_describe(job)}")
        return backend

    def check(self, jobs: Iterable[pb.Job]) -> None:
        """Add-time checks of a work unit's jobs by their backends; raises on the first problem:
        InvalidArgumentError for a job its backend cannot run, FailedPreconditionError for a
        backend that cannot run jobs here now."""
        for i, job in enumerate(jobs):
            field = f"jobs[{i}]"
            backend = self.find(job)
            if backend is None:
                names = ", ".join(b.name for b in self._backends)
                raise FailedPreconditionError(
                    f"{field}: no backend of this daemon runs {_describe(job)} (it has {names}); "
                    "use another executor or upgrade the daemon"
                )
            backend.check(job, field)
            availability = backend.availability()
            if not availability.ok:
                raise FailedPreconditionError(
                    f"{field}: the {backend.name} backend cannot run jobs: {availability.reason}"
                )

    def close(self) -> None:
        for backend in self._backends:
            backend.close()


def _describe(job: pb.Job) -> str:
    executor = job.executor.WhichOneof("kind") or "no"
    artifact = job.artifact.WhichOneof("kind") or "no artifact"
    return f"jobs with the {executor} executor and {artifact.replace('_', ' ')}"
