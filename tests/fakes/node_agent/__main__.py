"""Runs a node agent against the API server a kubeconfig names (the emulator or a real one)."""

from __future__ import annotations

import logging
import signal
import threading

import kubernetes
from absl import app, flags

from tests.fakes.node_agent.agent import NodeAgent

_KUBECONFIG = flags.DEFINE_string("kubeconfig", None, "kubeconfig of the API server.")
_CONTEXT = flags.DEFINE_string("context", None, "kubeconfig context.")
_NODE = flags.DEFINE_string("node", "node-1", "This node's name.")
_LABELS = flags.DEFINE_multi_string("label", [], "Node labels, KEY=VALUE.")
_ALLOCATABLE = flags.DEFINE_multi_string("allocatable", [], "Extra resources, NAME=AMOUNT.")


def main(argv: list[str]) -> None:
    del argv
    logging.basicConfig(level=logging.INFO)
    client = kubernetes.config.new_client_from_config(_KUBECONFIG.value, context=_CONTEXT.value)  # type: ignore[no-untyped-call]
    agent = NodeAgent(
        client,
        _NODE.value,
        labels=dict(item.split("=", 1) for item in _LABELS.value),
        allocatable=dict(item.split("=", 1) for item in _ALLOCATABLE.value),
    ).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    agent.stop()


if __name__ == "__main__":
    app.run(main)
