"""RPC latency over the Unix socket: GetWorkUnit with 16 concurrent clients (processes).

    .venv/bin/python bench/rpc_latency.py [--clients=16] [--calls=2000]

Targets: p50 at most 1 ms, p99 at most 5 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.daemon import DaemonHandle  # noqa: E402
from xmanager.client.connection import Launcher  # noqa: E402
from xmanager.launcher.v1 import launcher_pb2 as pb  # noqa: E402
from xmanager.state_dir import StateDir  # noqa: E402


def client(state_root: str, experiment_id: int, calls: int, start_at: float) -> list[float]:
    launcher = Launcher(StateDir.resolve(state_root), autostart=False)
    request = pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=1)
    for _ in range(50):  # warm up the channel
        launcher.stub.GetWorkUnit(request)
    while time.time() < start_at:
        time.sleep(0.001)
    latencies = []
    for _ in range(calls):
        begin = time.perf_counter()
        launcher.stub.GetWorkUnit(request)
        latencies.append(time.perf_counter() - begin)
    launcher.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="xm-bench-", dir="/tmp"))
    daemon = DaemonHandle(state)
    stub = daemon.start().stub
    try:
        experiment = stub.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(title="latency"))
        )
        stub.AddWorkUnit(
            pb.AddWorkUnitRequest(
                experiment_id=experiment.id,
                request_id="latency",
                jobs=[
                    pb.Job(
                        name="true",
                        artifact=pb.Artifact(local_binary=pb.LocalBinary(path="/bin/true")),
                        executor=pb.Executor(local=pb.LocalExecutor()),
                    )
                ],
            )
        )
        start_at = time.time() + 2
        with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
            results = pool.starmap(
                client,
                [(str(state), experiment.id, args.calls, start_at)] * args.clients,
            )
        latencies = sorted(x for r in results for x in r)
        wall = max(sum(r) for r in results)
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        print(
            f"GetWorkUnit over the Unix socket, {args.clients} concurrent clients, "
            f"{len(latencies)} calls"
        )
        print(
            f"  p50 {p50:.2f} ms (target <= 1), p99 {p99:.2f} ms (target <= 5), "
            f"max {latencies[-1] * 1000:.2f} ms"
        )
        print(f"  throughput ~{len(latencies) / wall:.0f} calls/s")
    finally:
        daemon.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
