"""The Vertex AI backend's cost against the emulator (simulated jobs: no containers).

    .venv/bin/python bench/vertex_backend.py sweep [--work_units=200]
    .venv/bin/python bench/vertex_backend.py observe [--jobs=1000] [--window=60]

sweep: a sweep of N work units (one Vertex job each, jobs that run 5 s) added through one
AddWorkUnits stream to a running daemon: the time until every CustomJob is created and until
every status is final, the emulator's count of API calls per unit by method, and the daemon's
CPU time over the run.

observe: N active Vertex jobs (running until cancelled), then a quiet window: the daemon's API
calls and CPU seconds per minute, measured for N and for N/10 to show they do not grow with N.

The emulator runs in this process (tests/fakes/vertex.py, --simulate mode); the daemon is a
separate process with its default poll interval bounds (2 s to 30 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.vertex import FakeVertex  # noqa: E402
from tests.support.daemon import FINAL, DaemonHandle, add_work_units, list_work_units  # noqa: E402
from xmanager.client import daemon_process  # noqa: E402
from xmanager.client.connection import Launcher  # noqa: E402
from xmanager.launcher.v1 import launcher_pb2 as pb  # noqa: E402

IMAGE = "127.0.0.1:5000/bench/trainer@sha256:" + "0" * 64
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start_daemon(state: Path, address: str, *extra: str) -> DaemonHandle:
    handle = DaemonHandle(
        state,
        [
            f"--vertex_endpoint=http://{address}",
            f"--vertex_logging_endpoint=http://{address}",
            "--vertex_project=bench-project",
            "--vertex_region=us-central1",
            *extra,
        ],
    )
    handle.pid = daemon_process.start_detached(handle.state, handle.flags, timeout=180)
    handle.launcher = Launcher(handle.state, autostart=False, retry_seconds=60)
    return handle


def requests(experiment_id: int, count: int, env: dict[str, str]) -> list[pb.AddWorkUnitRequest]:
    return [
        pb.AddWorkUnitRequest(
            experiment_id=experiment_id,
            request_id=f"bench-{experiment_id}-{i}",
            jobs=[
                pb.Job(
                    name="train",
                    artifact=pb.Artifact(oci_image=pb.OciImage(reference=IMAGE)),
                    args=[f"--i={i}"],
                    env=env,
                    executor=pb.Executor(vertex=pb.VertexExecutor()),
                )
            ],
        )
        for i in range(count)
    ]


def experiment(handle: DaemonHandle, title: str) -> int:
    return int(
        handle.client.stub.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(title=title))
        ).id
    )


def sweep(work_units: int) -> None:
    state = Path(tempfile.mkdtemp(prefix="xm-bench-vx-", dir="/tmp"))
    with FakeVertex(simulate=True) as emulator:
        handle = start_daemon(state, emulator.address)
        try:
            experiment_id = experiment(handle, "vertex sweep")
            cpu0 = cpu_seconds(handle.pid)
            t0 = time.monotonic()
            add_work_units(
                handle.client,
                requests(experiment_id, work_units, {"FAKE_RUN_SECONDS": "5"}),
            )
            added = time.monotonic() - t0
            while emulator.calls["CreateCustomJob"] < work_units:
                time.sleep(0.01)
            created = time.monotonic() - t0
            while True:
                units = list_work_units(handle.client, experiment_id)
                if len(units) == work_units and all(u.status.state in FINAL for u in units):
                    break
                time.sleep(0.2)
            final = time.monotonic() - t0
            cpu = cpu_seconds(handle.pid) - cpu0
            states = {pb.JobState.Name(u.status.state) for u in units}
            calls = dict(emulator.calls)
        finally:
            handle.stop()
            shutil.rmtree(state, ignore_errors=True)
    print(f"work units: {work_units}, final states: {sorted(states)}")
    print(f"AddWorkUnits returned after {added:.2f} s")
    print(f"all CustomJobs created after {created:.2f} s ({work_units / created:.0f} units/s)")
    print(f"all statuses final after {final:.2f} s (jobs run 5 s)")
    for method in sorted(calls):
        print(f"  {method}: {calls[method]} calls, {calls[method] / work_units:.3f} per unit")
    print(f"daemon CPU over the run: {cpu:.2f} s ({cpu / work_units * 1000:.1f} ms per unit)")


def observe(jobs: int, window: float) -> None:
    for count in (max(1, jobs // 10), jobs):
        state = Path(tempfile.mkdtemp(prefix="xm-bench-vx-", dir="/tmp"))
        with FakeVertex(simulate=True) as emulator:
            handle = start_daemon(state, emulator.address, f"--max_running_jobs={count + 10}")
            try:
                experiment_id = experiment(handle, "vertex observe")
                add_work_units(handle.client, requests(experiment_id, count, {}))
                while True:
                    units = list_work_units(handle.client, experiment_id)
                    running = sum(u.status.state == pb.JOB_STATE_RUNNING for u in units)
                    if running == count:
                        break
                    time.sleep(0.5)
                time.sleep(35)  # the poller settles at its quiet interval
                calls0 = dict(emulator.calls)
                cpu0 = cpu_seconds(handle.pid)
                time.sleep(window)
                cpu = cpu_seconds(handle.pid) - cpu0
                delta = {m: emulator.calls[m] - calls0.get(m, 0) for m in emulator.calls}
            finally:
                handle.stop()
                shutil.rmtree(state, ignore_errors=True)
        per_minute = 60 / window
        calls = sum(delta.values())
        print(
            f"{count} active jobs: {calls * per_minute:.1f} API calls/min "
            f"({', '.join(f'{m} {n}' for m, n in sorted(delta.items()) if n)}), "
            f"daemon CPU {cpu * per_minute:.2f} s/min"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sweep_parser = sub.add_parser("sweep")
    sweep_parser.add_argument("--work_units", type=int, default=200)
    observe_parser = sub.add_parser("observe")
    observe_parser.add_argument("--jobs", type=int, default=1000)
    observe_parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    if args.command == "sweep":
        sweep(args.work_units)
    else:
        observe(args.jobs, args.window)


if __name__ == "__main__":
    main()
