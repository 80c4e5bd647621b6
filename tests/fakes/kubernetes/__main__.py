"""Runs the emulator standalone and writes a kubeconfig for it.

python -m tests.fakes.kubernetes --port=8443 --kubeconfig=/tmp/emulator.kubeconfig
python -m tests.fakes.node_agent --kubeconfig=/tmp/emulator.kubeconfig --node=node-1
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from absl import app, flags

from tests.fakes.kubernetes.emulator import Emulator

_PORT = flags.DEFINE_integer("port", 0, "Port on 127.0.0.1 (0 picks a free one).")
_KUBECONFIG = flags.DEFINE_string("kubeconfig", None, "Where to write a kubeconfig.")
_VALIDATE = flags.DEFINE_bool("validate", True, "Validate created objects against the schemas.")


def main(argv: list[str]) -> None:
    del argv
    emulator = Emulator(_PORT.value, validate_objects=_VALIDATE.value).start()
    if _KUBECONFIG.value:
        emulator.server.write_kubeconfig(Path(_KUBECONFIG.value))
    print(f"Kubernetes API emulator on {emulator.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    emulator.stop()


if __name__ == "__main__":
    app.run(main)
