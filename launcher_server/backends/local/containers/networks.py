"""One Docker network per experiment: created for its first container, removed after its last.

The network lets a work unit's containers reach each other by job name (options.py says how).
It stays while any job of the experiment may still have a container: the backend counts them
(`acquire`, `release`), and the experiment's lock orders creating a container on the network
against removing the network.
"""

from __future__ import annotations

import collections
import logging
import threading

from launcher_server.backends.local.containers.engine import (
    ENGINE_OR_UNAVAILABLE,
    APIError,
    Client,
    Engine,
    explain,
)
from launcher_server.backends.local.containers.options import Naming

_log = logging.getLogger(__name__)


class Networks:
    """The experiments' networks of one daemon instance; thread-safe."""

    def __init__(self, engine: Engine, naming: Naming, closed: threading.Event) -> None:
        self._engine = engine
        self._naming = naming
        self._closed = closed
        self._lock = threading.Lock()
        # Jobs per experiment that may still have a container: its network stays while > 0.
        self._active: collections.Counter[int] = collections.Counter()
        self._experiment_locks: collections.defaultdict[int, threading.Lock] = (
            collections.defaultdict(threading.Lock)
        )

    def experiment_lock(self, experiment_id: int) -> threading.Lock:
        """Held while creating a container on the experiment's network, or removing it."""
        with self._lock:
            return self._experiment_locks[experiment_id]

    def acquire(self, experiment_id: int) -> None:
        """A job of the experiment may have a container from now on."""
        with self._lock:
            self._active[experiment_id] += 1

    def release(self, experiment_id: int) -> None:
        """A job of the experiment has no container left; the last one removes the network."""
        with self._lock:
            self._active[experiment_id] -= 1
            last = self._active[experiment_id] <= 0
            if last:
                del self._active[experiment_id]
        if last and not self._closed.is_set():
            self.remove_if_unused(experiment_id)

    def ensure(self, client: Client, experiment_id: int) -> None:
        """Creates the experiment's network unless it exists. Holds the experiment's lock."""
        name = self._naming.network(experiment_id)
        if any(n.name == name for n in client.networks.list(names=[name])):
            return
        try:
            client.networks.create(
                name,
                driver="bridge",
                check_duplicate=True,
                labels=self._naming.network_labels(experiment_id),
            )
        except APIError as error:
            if error.status_code != 409:  # 409: it exists after all
                raise ValueError(
                    f"Docker Engine could not create network {name}: {explain(error)}"
                ) from None

    def remove_if_unused(self, experiment_id: int) -> None:
        with self._lock:
            if self._active[experiment_id] > 0:
                return
        try:
            client = self._engine.client()
            with self.experiment_lock(experiment_id):
                with self._lock:
                    if self._active[experiment_id] > 0:
                        return  # a job of the experiment started meanwhile
                filters = self._naming.experiment_filter(experiment_id)
                if client.api.containers(all=True, quiet=True, filters=filters):
                    return
                name = self._naming.network(experiment_id)
                for network in client.networks.list(names=[name]):
                    if network.name == name:
                        network.remove()
        except APIError as error:
            # 404: already gone; 403/409: a container still uses it (a race with `docker run`).
            _log.debug("network of experiment %d kept: %s", experiment_id, error)
        except ENGINE_OR_UNAVAILABLE as error:
            _log.info("could not remove the network of experiment %d: %s", experiment_id, error)
