"""Removing containers and networks the daemon no longer needs.

A job's container is removed once its outcome is recorded. A daemon that dies between recording
the exit and removing the container leaves it behind, and its experiment's network with it: the
sweep, run once the engine is connected, removes those. Only this daemon instance's containers
and networks (by their instance label) are ever touched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from launcher_server.backends.local import records
from launcher_server.backends.local.containers import options
from launcher_server.backends.local.containers.engine import (
    ENGINE_OR_UNAVAILABLE,
    FINAL_STATUSES,
    Engine,
    NotFound,
)
from launcher_server.backends.local.containers.networks import Networks
from launcher_server.job_dirs import JobDirs
from launcher_server.jobs import JobKey

_log = logging.getLogger(__name__)


def remove_container(engine: Engine, name: str) -> None:
    """Removes a container, running or not; logs (and otherwise ignores) a failure."""
    try:
        client = engine.client()
        client.api.remove_container(name, force=True)
    except NotFound:
        pass
    except ENGINE_OR_UNAVAILABLE as error:
        _log.warning("could not remove container %s: %s", name, error)


def sweep(
    engine: Engine,
    naming: options.Naming,
    networks: Networks,
    job_dirs: JobDirs,
    followed: Callable[[JobKey], bool],
) -> None:
    """Removes stopped containers whose exit is recorded (unless `followed`: their follower
    removes them), and the networks of experiments without containers left."""
    try:
        client = engine.client()
        # One listing (docker-py's containers.list inspects each: racy with removals).
        containers = client.api.containers(all=True, filters=naming.instance_filter())
        used: set[int] = set()
        for container in containers:
            key = naming.key_from_labels(container.get("Labels") or {})
            if key is None:
                continue
            if (
                not followed(key)
                and container.get("State") in FINAL_STATUSES
                and (job_dirs.path(key) / records.EXITED).exists()
            ):
                with contextlib.suppress(NotFound):
                    client.api.remove_container(container["Id"], force=True)
                continue
            used.add(key.experiment_id)
        for network in client.networks.list(filters=naming.instance_filter()):
            labels = network.attrs.get("Labels") or {}
            try:
                experiment_id = int(labels[options.EXPERIMENT_LABEL])
            except (KeyError, ValueError):
                continue
            if experiment_id not in used:
                networks.remove_if_unused(experiment_id)
    except ENGINE_OR_UNAVAILABLE as error:
        _log.info("could not clean up old containers: %s", error)
