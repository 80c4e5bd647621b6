"""Sweep throughput: N work units of /bin/true, from the launch script's start until every job's
final status is stored, against XManager 0.8.5's local executor on the same sweep.

    .venv/bin/python bench/sweep_throughput.py [--work_units=1000] [--skip_baseline]

XManager 0.8.5 is installed from PyPI into its own virtual environment (under
~/.cache/xmanager/bench/) the first time; this project never imports it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.daemon import DaemonHandle, list_work_units  # noqa: E402
from xmanager.launcher.v1 import launcher_pb2 as pb  # noqa: E402

BASELINE_VENV = Path.home() / ".cache" / "xmanager" / "bench" / "xmanager-0.8.5"
FINAL = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED, pb.JOB_STATE_LOST}

OURS = """
from xmanager import xm, xm_local
with xm_local.create_experiment(experiment_title='bench sweep') as experiment:
    [executable] = experiment.package([
        xm.Packageable(xm.Binary(path='/bin/true'), xm_local.Local.Spec())])
    for i in range({n}):
        experiment.add(xm.Job(executable, xm_local.Local(), args={{'i': i}}))
"""

BASELINE = """
from absl import app
from xmanager import xm, xm_local

def main(_):
    with xm_local.create_experiment(experiment_title='bench sweep') as experiment:
        [executable] = experiment.package([
            xm.Packageable(xm.Binary(path='/bin/true'), xm_local.Local.Spec())])
        for i in range({n}):
            experiment.add(xm.Job(executable, xm_local.Local(), args={{'i': i}}))

app.run(main)
"""


def run_ours(n: int, work: Path) -> tuple[float, int]:
    """Seconds for the launch script with a running daemon, and final statuses stored."""
    state = Path(tempfile.mkdtemp(prefix="xm-bench-", dir="/tmp"))
    daemon = DaemonHandle(state)
    daemon.start()
    try:
        script = work / "ours.py"
        script.write_text(textwrap.dedent(OURS.format(n=n)))
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, str(script)], env=daemon.env(), check=True, capture_output=True
        )
        elapsed = time.perf_counter() - start
        experiment = daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments[0]
        units = list_work_units(daemon.client, experiment.id)
        stored = sum(1 for u in units for j in u.jobs if j.status.state in FINAL)
        return elapsed, stored
    finally:
        daemon.stop()
        shutil.rmtree(state, ignore_errors=True)


def ensure_baseline() -> Path:
    python = BASELINE_VENV / "bin" / "python"
    if not python.exists():
        print("installing XManager 0.8.5 into", BASELINE_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(BASELINE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "xmanager==0.8.5"], check=True)
    return python


def run_baseline(n: int, work: Path) -> float:
    python = ensure_baseline()
    script = work / "baseline.py"
    script.write_text(textwrap.dedent(BASELINE.format(n=n)))
    env = {**os.environ, "HOME": str(work)}  # its local database goes to ~/.xmanager
    start = time.perf_counter()
    subprocess.run([str(python), str(script)], env=env, check=True, capture_output=True, cwd=work)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_units", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip_baseline", action="store_true")
    args = parser.parse_args()
    n = args.work_units
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours = [run_ours(n, work) for _ in range(args.repeat)]
        best, stored = min(ours)
        print(f"xmanager (this project): {n} work units of /bin/true")
        print(f"  runs: {', '.join(f'{t:.2f} s' for t, _ in ours)}; best {best:.2f} s")
        print(f"  final statuses stored: {stored}/{n}")
        if args.skip_baseline:
            return
        baseline = [run_baseline(n, work) for _ in range(args.repeat)]
        print(f"XManager 0.8.5 local executor: {n} work units of /bin/true")
        print(f"  runs: {', '.join(f'{t:.2f} s' for t in baseline)}; best {min(baseline):.2f} s")
        print(f"  final statuses stored: 0/{n} (it records nothing about local jobs)")
        print(f"ratio (ours / XManager): {best / min(baseline):.2f} (target: at most 0.50)")


if __name__ == "__main__":
    main()
