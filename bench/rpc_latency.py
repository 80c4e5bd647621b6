"""RPC latency over the Unix socket: GetWorkUnit with 16 concurrent clients (processes).

    .venv/bin/python bench/rpc_latency.py [--clients=16] [--rate=50] [--seconds=10]

Two measurements against one daemon holding a sweep's worth of work units:

- latency under load (the target): every client calls GetWorkUnit on its own schedule, `rate`
  calls a second (16 x 50 = 800 calls/s by default, as sixteen dashboards or scripts polling
  every 20 ms would), on random work units; latencies are measured from each call's scheduled
  time, so a slow daemon cannot hide behind a slower schedule. Targets: p50 <= 1 ms,
  p99 <= 5 ms.
- saturation: the same clients calling back to back; prints the throughput the daemon sustains
  and the latency at that point (queueing, not the daemon's own speed).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.daemon import DaemonHandle  # noqa: E402
from xmanager.client.connection import Launcher  # noqa: E402
from xmanager.launcher.v1 import launcher_pb2 as pb  # noqa: E402
from xmanager.state_dir import StateDir  # noqa: E402

_UNITS = 1000


def _client(
    state_root: str, experiment_id: int, start_at: float, seconds: float, rate: float
) -> list[float]:
    """Latencies in seconds; `rate` 0 means back to back."""
    launcher = Launcher(StateDir.resolve(state_root), autostart=False)
    get = launcher.stub.GetWorkUnit
    rng = random.Random()
    requests = [
        pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=i)
        for i in range(1, _UNITS + 1)
    ]
    for request in requests[:50]:  # warm up the channel
        get(request)
    while time.time() < start_at:
        time.sleep(0.001)
    latencies = []
    begin = time.perf_counter()
    # Each client starts at a random phase so that the clients do not call in lockstep.
    scheduled = begin + (rng.random() / rate if rate else 0.0)
    while True:
        now = time.perf_counter()
        if now - begin >= seconds:
            break
        if rate:
            if now < scheduled:
                time.sleep(scheduled - now)
            start = scheduled
            scheduled += 1.0 / rate
        else:
            start = now
        get(rng.choice(requests))
        latencies.append(time.perf_counter() - start)
    launcher.close()
    return latencies


def _prepare(daemon: DaemonHandle) -> int:
    stub = daemon.client.stub
    experiment = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="latency"))
    )
    requests = [
        pb.AddWorkUnitRequest(
            experiment_id=experiment.id,
            request_id=uuid.uuid4().hex,
            jobs=[
                pb.Job(
                    name="true",
                    artifact=pb.Artifact(local_binary=pb.LocalBinary(path="/bin/true")),
                    args=[f"--i={i}"],
                    executor=pb.Executor(local=pb.LocalExecutor()),
                )
            ],
        )
        for i in range(_UNITS)
    ]
    for _ in stub.AddWorkUnits(iter(requests)):
        pass
    daemon.wait_all_final(experiment.id, _UNITS, timeout=120)
    # Each unit read once: the measurement is of a daemon serving units it has served before.
    for work_unit_id in range(1, _UNITS + 1):
        stub.GetWorkUnit(
            pb.GetWorkUnitRequest(experiment_id=experiment.id, work_unit_id=work_unit_id)
        )
    return int(experiment.id)


def _run(state: Path, experiment_id: int, clients: int, seconds: float, rate: float) -> list[float]:
    start_at = time.time() + 2
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        results = pool.starmap(
            _client, [(str(state), experiment_id, start_at, seconds, rate)] * clients
        )
    return sorted(x for r in results for x in r)


def _describe(latencies: list[float], seconds: float) -> str:
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return (
        f"{len(latencies)} calls, {len(latencies) / seconds:.0f} calls/s: p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms, max {latencies[-1] * 1000:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=50.0, help="calls/s of each client")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="xm-bench-", dir="/tmp"))
    daemon = DaemonHandle(state)
    daemon.start()
    try:
        experiment_id = _prepare(daemon)
        print(f"GetWorkUnit over the Unix socket, {args.clients} client processes, {_UNITS} units")
        loaded = _run(state, experiment_id, args.clients, args.seconds, args.rate)
        print(
            f"  under load ({args.clients} x {args.rate:.0f} calls/s): "
            f"{_describe(loaded, args.seconds)}  (targets: p50 <= 1 ms, p99 <= 5 ms)"
        )
        saturated = _run(state, experiment_id, args.clients, args.seconds, 0.0)
        print(f"  saturated (back to back): {_describe(saturated, args.seconds)}")
    finally:
        daemon.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
