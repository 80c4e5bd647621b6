"""Daemon memory: resident set size with 10,000 jobs in the store.

    .venv/bin/python bench/daemon_memory.py [--jobs=10000]

Runs N work units of /bin/true through the daemon, then reads the daemon's RSS (VmRSS) while
it holds them, and again after a restart over the same store. Target: at most 150 MB.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.daemon import DaemonHandle, add_work_units, local_job  # noqa: E402
from xmanager.launcher.v1 import launcher_pb2 as pb  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _queued_rss(daemon: DaemonHandle, count: int) -> float:
    """RSS with `count` work units waiting for the running ones (all held by the scheduler)."""
    stub = daemon.client.stub
    experiment = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="memory, queued"))
    )
    job = local_job("sleep", "/bin/sleep", "60", env={"SOME_VARIABLE": "value"})
    requests = (
        pb.AddWorkUnitRequest(experiment_id=experiment.id, request_id=uuid.uuid4().hex, jobs=[job])
        for _ in range(count)
    )
    for result in add_work_units(daemon.client, requests):
        assert not result.error_code, result.error_message
    time.sleep(1)
    rss = rss_mb(daemon.pid)
    stub.CancelExperiment(
        pb.CancelExperimentRequest(experiment_id=experiment.id, grace_period_seconds=1)
    )
    daemon.wait_all_final(experiment.id, count, timeout=300)
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="xm-bench-", dir="/tmp"))
    daemon = DaemonHandle(state)
    stub = daemon.start().stub
    try:
        idle = rss_mb(daemon.pid)
        experiment = stub.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(title="memory"))
        )
        job = local_job(
            "true", "/bin/true", "--some=argument", "--another=one", env={"SOME_VARIABLE": "value"}
        )
        requests = (
            pb.AddWorkUnitRequest(
                experiment_id=experiment.id, request_id=uuid.uuid4().hex, jobs=[job]
            )
            for _ in range(args.jobs)
        )
        start = time.perf_counter()
        for result in add_work_units(daemon.client, requests):
            assert not result.error_code, result.error_message
        while True:
            info = stub.GetExperiment(pb.GetExperimentRequest(experiment_id=experiment.id))
            if info.work_unit_state_counts.get(pb.JOB_STATE_SUCCEEDED, 0) == args.jobs:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        loaded = rss_mb(daemon.pid)
        daemon.stop()
        daemon.start()
        restarted = rss_mb(daemon.pid)
        queued = _queued_rss(daemon, args.jobs)
        print(
            f"daemon RSS: idle {idle:.1f} MB; with {args.jobs} jobs run and stored "
            f"{loaded:.1f} MB; restarted over that store {restarted:.1f} MB; with another "
            f"{args.jobs} jobs queued behind running ones {queued:.1f} MB (target <= 150)"
        )
        print(f"  ({args.jobs} jobs submitted and finished in {elapsed:.1f} s)")
    finally:
        daemon.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
