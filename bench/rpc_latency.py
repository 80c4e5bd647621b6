"""RPC latency over the Unix socket: GetWorkUnit with 16 concurrent clients (processes).

    .venv/bin/python bench/rpc_latency.py [--clients=16] [--rate=50] [--seconds=10]
                                          [--no-read_process]

Against one daemon holding a sweep's worth of work units; its read process answers GetWorkUnit
(`--no-read_process`: the daemon does):

- latency under load (the target): every client calls GetWorkUnit on its own schedule, `rate`
  calls a second (16 x 50 = 800 calls/s by default, as sixteen dashboards or scripts polling
  every 20 ms would), on random work units. Two figures per call: from its start to its answer
  (the RPC's latency), and from the time it was scheduled (adding the load generator's own
  lateness in waking up, so that a slow daemon cannot hide behind a slower schedule). Targets:
  p50 <= 1 ms, p99 <= 5 ms.
- the floor: the same load against a gRPC server that answers every call with the same work
  unit at once (the daemon's server options, no daemon code): what gRPC's Python stack costs on
  this machine at that moment, so that the daemon's own share can be told from the machine's.
- saturation: the same clients calling back to back; prints the throughput the daemon sustains
  and the latency at that point (queueing, not the daemon's own speed).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from launcher_server.daemon import SERVER_OPTIONS  # noqa: E402
from tests.support.daemon import DaemonHandle, add_work_units, local_job  # noqa: E402
from xmanager.client.connection import Launcher  # noqa: E402
from xmanager.launcher.contract import READ_PROCESS_CAPABILITY  # noqa: E402
from xmanager.launcher.v1 import launcher_pb2 as pb  # noqa: E402
from xmanager.launcher.v1 import launcher_pb2_grpc as pb_grpc  # noqa: E402
from xmanager.state_dir import StateDir  # noqa: E402

_UNITS = 1000


def _client(
    state_root: str, experiment_id: int, start_at: float, seconds: float, rate: float
) -> list[tuple[float, float]]:
    """(from the call's start, from its scheduled time) in seconds; `rate` 0: back to back."""
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
            due = scheduled
            scheduled += 1.0 / rate
        else:
            due = now
        start = time.perf_counter()
        get(rng.choice(requests))
        end = time.perf_counter()
        latencies.append((end - start, end - due))
    launcher.close()
    return latencies


class _Floor(pb_grpc.LauncherServicer):
    """Answers at once with fixed messages."""

    def __init__(self, info: bytes, unit: bytes) -> None:
        self._info = pb.ServerInfo.FromString(info)
        self._unit = pb.WorkUnit.FromString(unit)

    def GetServerInfo(self, request: Any, context: Any) -> pb.ServerInfo:
        return self._info

    def GetWorkUnit(self, request: Any, context: Any) -> pb.WorkUnit:
        return self._unit


def _serve_floor(socket_path: str, info: bytes, unit: bytes) -> None:
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=64), options=SERVER_OPTIONS
    )
    pb_grpc.add_LauncherServicer_to_server(_Floor(info, unit), server)
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    server.wait_for_termination()


def _prepare(daemon: DaemonHandle) -> int:
    stub = daemon.client.stub
    experiment = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="latency"))
    )
    requests = [
        pb.AddWorkUnitRequest(
            experiment_id=experiment.id,
            request_id=uuid.uuid4().hex,
            jobs=[local_job("true", "/bin/true", f"--i={i}")],
        )
        for i in range(_UNITS)
    ]
    add_work_units(daemon.client, requests)
    daemon.wait_all_final(experiment.id, _UNITS, timeout=120)
    # Each unit read once: the measurement is of a daemon serving units it has served before.
    for work_unit_id in range(1, _UNITS + 1):
        stub.GetWorkUnit(
            pb.GetWorkUnitRequest(experiment_id=experiment.id, work_unit_id=work_unit_id)
        )
    # The sweep's files and database pages are still being written back: let that finish, so
    # that the measurement sees a daemon serving, not a disk flushing.
    os.sync()
    time.sleep(2)
    return int(experiment.id)


def _run(state: Path, experiment_id: int, clients: int, seconds: float, rate: float) -> _Figures:
    start_at = time.time() + 2
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        results = pool.starmap(
            _client, [(str(state), experiment_id, start_at, seconds, rate)] * clients
        )
    calls = [call for result in results for call in result]
    return _Figures(sorted(c[0] for c in calls), sorted(c[1] for c in calls), seconds)


@dataclasses.dataclass
class _Figures:
    from_start: list[float]
    from_schedule: list[float]
    seconds: float

    def describe(self, *, schedule: bool = True) -> str:
        text = (
            f"{len(self.from_start)} calls, {len(self.from_start) / self.seconds:.0f} calls/s: "
            f"{_percentiles(self.from_start)}"
        )
        if schedule:
            text += f"; from the schedule: {_percentiles(self.from_schedule)}"
        return text


def _percentiles(latencies: list[float]) -> str:
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {latencies[-1] * 1000:.2f} ms"


def _floor(
    daemon: DaemonHandle, experiment_id: int, clients: int, seconds: float, rate: float
) -> _Figures:
    """The same load against a server that does nothing (in its own state directory)."""
    state = Path(tempfile.mkdtemp(prefix="xm-floor-", dir="/tmp"))
    state_dir = StateDir.resolve(str(state))
    state_dir.create()
    unit = daemon.client.stub.GetWorkUnit(
        pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=1)
    )
    info = pb.ServerInfo()
    info.CopyFrom(daemon.client.server_info)
    # A plain server: its clients send every call to the one socket it listens on.
    if READ_PROCESS_CAPABILITY in info.capabilities:
        info.capabilities.remove(READ_PROCESS_CAPABILITY)
    server = multiprocessing.get_context("spawn").Process(
        target=_serve_floor,
        args=(str(state_dir.socket), info.SerializeToString(), unit.SerializeToString()),
    )
    server.start()
    try:
        while not state_dir.socket.exists():
            time.sleep(0.05)
        return _run(state, experiment_id, clients, seconds, rate)
    finally:
        server.terminate()
        server.join()
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=50.0, help="calls/s of each client")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--read_process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the daemon's read process serves GetWorkUnit (--no-read_process: the daemon does)",
    )
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="xm-bench-", dir="/tmp"))
    daemon = DaemonHandle(state, [] if args.read_process else ["--noread_process"])
    daemon.start()
    try:
        experiment_id = _prepare(daemon)
        load = f"{args.clients} x {args.rate:.0f} calls/s"
        server = "the read process" if args.read_process else "the daemon alone"
        print(
            f"GetWorkUnit over the Unix socket, {args.clients} client processes, {_UNITS} units, "
            f"served by {server}"
        )
        loaded = _run(state, experiment_id, args.clients, args.seconds, args.rate)
        print(f"  daemon under load ({load}): {loaded.describe()}")
        print("    (targets: p50 <= 1 ms, p99 <= 5 ms)")
        floor = _floor(daemon, experiment_id, args.clients, args.seconds, args.rate)
        print(f"  floor, a gRPC server doing nothing ({load}): {floor.describe()}")
        saturated = _run(state, experiment_id, args.clients, args.seconds, 0.0)
        print(f"  daemon saturated (back to back): {saturated.describe(schedule=False)}")
    finally:
        daemon.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
