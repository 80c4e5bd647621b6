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

# Seconds between attempts to remove a network a container still holds (about 5 s in all).
_REMOVE_RETRY_DELAYS = (0.1, 0.2, 0.4, 0.8, 1.5, 2.0)


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
            # In a thread of its own: removing may wait for Docker, and the caller may be a
            # start worker or the daemon's recovery.
            threading.Thread(
                target=self.remove_if_unused,
                args=(experiment_id,),
                name=f"network-{experiment_id}",
                daemon=True,
            ).start()

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
        """Removes the experiment's network unless a job of it may still have a container.

        A container removed a moment ago can still be listed, or still hold its endpoint on the
        network (Docker answers 403, "active endpoints"): retried for a few seconds, else the
        network would stay until the daemon's next start.
        """
        for delay in _REMOVE_RETRY_DELAYS:
            if self._try_remove(experiment_id) or self._closed.wait(delay):
                return
        _log.info("network of experiment %d kept: a container still uses it", experiment_id)

    def _try_remove(self, experiment_id: int) -> bool:
        """Whether the network is settled (removed, absent, or wanted); False to try again."""
        with self._lock:
            if self._active[experiment_id] > 0:
                return True
        try:
            client = self._engine.client()
            with self.experiment_lock(experiment_id):
                with self._lock:
                    if self._active[experiment_id] > 0:
                        return True  # a job of the experiment started meanwhile
                filters = self._naming.experiment_filter(experiment_id)
                if client.api.containers(all=True, quiet=True, filters=filters):
                    return False
                name = self._naming.network(experiment_id)
                for network in client.networks.list(names=[name]):
                    if network.name == name:
                        network.remove()
            return True
        except APIError as error:
            if error.status_code == 404:
                return True  # already gone
            # 403/409: a container still uses it (a race with its removal, or with `docker run`).
            _log.debug("network of experiment %d kept for now: %s", experiment_id, error)
            return False
        except ENGINE_OR_UNAVAILABLE as error:
            _log.info("could not remove the network of experiment %d: %s", experiment_id, error)
            return True
