"""An experiment's network is removed after its last container, even when Docker still counts a
container on it for a moment (it answers 403, "active endpoints", to the first attempt)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Any

from launcher_server.backends.local.containers.engine import DEFAULT_DOCKER_HOST, Engine
from launcher_server.backends.local.containers.networks import Networks
from launcher_server.backends.local.containers.options import Naming
from tests.containers.conftest import ImageSet


def test_a_network_a_container_still_holds_is_removed_once_it_lets_go(
    docker_client: Any, test_images: ImageSet
) -> None:
    [image] = docker_client.images.load(test_images.sh.read_bytes())
    closed = threading.Event()
    naming = Naming(uuid.uuid4().hex[:12])
    networks = Networks(
        Engine(DEFAULT_DOCKER_HOST, closed, on_connect=lambda: None), naming, closed
    )
    name = naming.network(7)
    holder = None
    try:
        with networks.experiment_lock(7):
            networks.ensure(docker_client, 7)
        networks.acquire(7)
        # A container on the network that the experiment's labels do not name: removing the
        # network fails until it is gone.
        holder = docker_client.containers.run(image.id, ["sleep", "60"], network=name, detach=True)
        networks.release(7)  # the experiment's last job: removal starts, in the background
        time.sleep(0.5)
        assert docker_client.networks.list(names=[name]), "removed while a container held it"
        holder.remove(force=True)
        deadline = time.monotonic() + 10
        while docker_client.networks.list(names=[name]):
            assert time.monotonic() < deadline, f"network {name} left behind"
            time.sleep(0.1)
    finally:
        closed.set()
        if holder is not None:
            with contextlib.suppress(Exception):
                holder.remove(force=True)
        for network in docker_client.networks.list(names=[name]):
            with contextlib.suppress(Exception):
                network.remove()
