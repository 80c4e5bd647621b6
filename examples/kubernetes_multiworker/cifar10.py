"""A stand-in for the CIFAR-10 trainer, without TensorFlow: it reads `TF_CONFIG` as
MultiWorkerMirroredStrategy would, prints its role and arguments, and checks that the workers
reach each other by their cluster addresses (worker 0 waits for every other worker; the others
connect to worker 0's address, retrying while its name does not resolve yet).

Standard library only: it runs on any Python base with an empty requirements.txt.
"""

import argparse
import json
import os
import socket
import sys
import time

CONNECT_SECONDS = 60  # how long a worker keeps trying to reach worker 0
MEET_SECONDS = 120  # how long worker 0 waits for the others


def _serve(port: int, others: int) -> None:
    """Worker 0: answer `ready` to each other worker, once."""
    with socket.create_server(("", port)) as server:
        server.settimeout(MEET_SECONDS)
        for _ in range(others):
            connection, _ = server.accept()
            with connection:
                connection.recv(64)
                connection.sendall(b"ready\n")


def _reach(address: str) -> str:
    """Another worker: connect to worker 0 and read its answer."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + CONNECT_SECONDS
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2) as connection:
                connection.sendall(b"hello\n")
                return connection.makefile().readline().strip()
        except OSError as error:
            if time.monotonic() > deadline:
                return f"unreachable ({error})"
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning_rate", type=float, default=0.001)
    parser.parse_args()
    tf_config = json.loads(os.environ["TF_CONFIG"])
    workers = tf_config["cluster"]["worker"]
    index = int(tf_config["task"]["index"])
    print(f"worker {index} of {len(workers)}, args: {' '.join(sys.argv[1:])}", flush=True)
    if index == 0:
        port = int(workers[0].rpartition(":")[2])
        _serve(port, len(workers) - 1)
        print(f"all {len(workers)} workers met", flush=True)
        return 0
    answer = _reach(workers[0])
    print(f"reached {workers[0]}: {answer}", flush=True)
    return 0 if answer == "ready" else 1


if __name__ == "__main__":
    sys.exit(main())
