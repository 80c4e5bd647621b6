"""Sweep throughput: N work units of /bin/true, from the launch script's start until every job's
final status is stored, against XManager 0.8.5's local executor on the same sweep.

    .venv/bin/python bench/sweep_throughput.py [--work_units=1000] [--repeat=5] [--skip_baseline]
        [--scratch_dir=/tmp] [--environment=inherited|compare] [--extra_variables=60]

Both launch scripts are run as fresh processes, alternately, `repeat` times each; the figures
are the medians. Ours runs against a daemon started beforehand (as one runs on a machine where
any launch happened before; starting one costs about half a second once), and its time ends
when the script exits, which it does once every unit's final status is stored (the script
waits for them). The run's state directory is deleted only at the end: ext4 allocates inodes
slowly for a while after tens of thousands were deleted, which would slow whichever run came
next.

With `--environment=compare`, no XManager: the same sweep alternately as written (each local
job runs with the launch script's working directory and environment, which travel once per
stream and then as a digest per unit) and with `xm_local.Local(clean_environment=True)` (no
launch context at all), with the CPU time of the launch script, the daemon and the job
supervisor (its jobs included): what inheriting the environment costs per 1,000 units.

XManager 0.8.5 is installed from PyPI into its own virtual environment (under
~/.cache/xmanager/bench/) the first time; this project never imports it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.daemon import FINAL, DaemonHandle, list_work_units  # noqa: E402
from xmanager.launcher.v1 import launcher_pb2 as pb  # noqa: E402

BASELINE_VENV = Path.home() / ".cache" / "xmanager" / "bench" / "xmanager-0.8.5"

OURS = """
from xmanager import xm, xm_local
with xm_local.create_experiment(experiment_title='bench sweep') as experiment:
    [executable] = experiment.package([
        xm.Packageable(xm.Binary(path='/bin/true'), xm_local.Local.Spec())])
    for i in range({n}):
        experiment.add(xm.Job(executable, xm_local.Local({executor}), args={{'i': i}}))
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


def run_ours(
    daemon: DaemonHandle, script: Path, n: int, *, attach: bool = False
) -> tuple[float, int]:
    """Seconds for the launch script, and how many final job statuses the store then holds.

    With `attach`, no daemon runs before: the script starts one, which is then attached to.
    """
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script)], env=daemon.env(), check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    if attach:
        daemon.attach()
    experiment = daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments[0]
    units = list_work_units(daemon.client, experiment.id)
    stored = sum(1 for u in units for j in u.jobs if j.status.state in FINAL)
    assert len(units) == n, len(units)
    return elapsed, stored


def _cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User plus system CPU of a process (with `reaped`, also of the children it waited for)."""
    # /proc/PID/stat after the command's closing parenthesis: utime, stime, cutime, cstime
    # are the 12th to 15th fields.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(field) for field in fields[11 : 15 if reaped else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return found


def compare_environments(
    daemon: DaemonHandle, work: Path, n: int, repeat: int, extra_variables: int
) -> None:
    """The sweep with the launch context (the default) and without, alternately."""
    # A researcher's shell carries more than a benchmark's: pad it to a realistic size.
    os.environ.update({f"BENCH_PAD_{i}": "x" * 64 for i in range(extra_variables)})
    scripts = {
        "inherited": work / "inherited.py",
        "clean": work / "clean.py",
    }
    scripts["inherited"].write_text(textwrap.dedent(OURS.format(n=n, executor="")))
    clean = OURS.format(n=n, executor="clean_environment=True")
    scripts["clean"].write_text(textwrap.dedent(clean))
    daemon.start()
    parts = ("launch script", "daemon", "supervisor and jobs")
    wall: dict[str, list[float]] = {name: [] for name in scripts}
    cpu: dict[str, dict[str, list[float]]] = {name: {p: [] for p in parts} for name in scripts}
    for _ in range(repeat):
        for name, script in scripts.items():
            before = _serving_cpu(daemon.pid)
            children = os.times()
            elapsed, _ = run_ours(daemon, script, n)
            after = _serving_cpu(daemon.pid)
            wall[name].append(elapsed)
            cpu[name]["launch script"].append(sum(os.times()[2:4]) - sum(children[2:4]))
            cpu[name]["daemon"].append(after[0] - before[0])
            cpu[name]["supervisor and jobs"].append(after[1] - before[1])
    print(f"{n} work units of /bin/true, {repeat} runs each, alternating")
    for name in scripts:
        print(f"  {name} environment: wall {_runs(wall[name])}")
        for part in parts:
            print(f"    CPU of the {part}: {_runs(cpu[name][part])}")
    scale = 1000 / n

    def extra(values: dict[str, list[float]]) -> float:
        return (statistics.median(values["inherited"]) - statistics.median(values["clean"])) * scale

    by_part = ", ".join(
        f"{part} {extra({name: cpu[name][part] for name in scripts}):+.2f} s" for part in parts
    )
    print(
        f"  inheriting the environment ({len(os.environ)} variables, "
        f"{sum(len(k) + len(v) for k, v in os.environ.items())} bytes) per 1,000 units: "
        f"wall {extra(wall):+.2f} s; CPU of the {by_part}"
    )


def _serving_cpu(daemon_pid: int) -> tuple[float, float]:
    """CPU seconds so far of the daemon, and of its supervisor with the jobs it reaped."""
    supervisor = sum(_cpu_seconds(pid, reaped=True) for pid in _children(daemon_pid))
    return _cpu_seconds(daemon_pid), supervisor


def ensure_baseline() -> Path:
    python = BASELINE_VENV / "bin" / "python"
    if not (BASELINE_VENV / "installed").exists():
        # With uv: pip's resolver takes many minutes over XManager's loose dependencies.
        print("installing XManager 0.8.5 into", BASELINE_VENV, flush=True)
        tools = BASELINE_VENV.parent / "uv"
        uv = tools / "bin" / "uv"
        if not uv.exists():
            subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True)
            subprocess.run([str(tools / "bin" / "pip"), "install", "-q", "uv"], check=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(BASELINE_VENV)], check=True)
        subprocess.run(
            [str(uv), "pip", "install", "-q", "--python", str(python), "xmanager==0.8.5"],
            check=True,
        )
        (BASELINE_VENV / "installed").touch()
    return python


def run_baseline(python: Path, script: Path, home: Path) -> float:
    env = {**os.environ, "HOME": str(home)}  # its local database goes to ~/.xmanager
    start = time.perf_counter()
    subprocess.run([str(python), str(script)], env=env, check=True, capture_output=True, cwd=home)
    return time.perf_counter() - start


def _runs(times: list[float]) -> str:
    return f"{', '.join(f'{t:.2f}' for t in times)} s; median {statistics.median(times):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_units", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip_baseline", action="store_true")
    parser.add_argument(
        "--environment",
        choices=("inherited", "compare"),
        default="inherited",
        help="compare: the sweep with and without the launch script's environment",
    )
    parser.add_argument(
        "--extra_variables",
        type=int,
        default=60,
        help="with --environment=compare: variables of 64 bytes added to the environment",
    )
    parser.add_argument(
        "--scratch_dir",
        default="/tmp",
        help="where the state directory goes; a tmpfs such as /dev/shm takes the file system's "
        "inode allocation out of the comparison (see bench/README.md)",
    )
    args = parser.parse_args()
    n = args.work_units
    work = Path(tempfile.mkdtemp(prefix="xm-bench-", dir=args.scratch_dir))
    daemon = DaemonHandle(work / "state")
    try:
        if args.environment == "compare":
            compare_environments(daemon, work, n, args.repeat, args.extra_variables)
            return
        ours_script = work / "ours.py"
        ours_script.write_text(textwrap.dedent(OURS.format(n=n, executor="")))
        baseline_script = work / "baseline.py"
        baseline_script.write_text(textwrap.dedent(BASELINE.format(n=n)))
        python = None if args.skip_baseline else ensure_baseline()
        daemon.start()
        ours: list[float] = []
        baseline: list[float] = []
        stored = 0
        for _ in range(args.repeat):
            elapsed, stored = run_ours(daemon, ours_script, n)
            ours.append(elapsed)
            if python is not None:
                baseline.append(run_baseline(python, baseline_script, work))
        # Once more with no daemon running: the launch script starts one.
        daemon.stop()
        cold, cold_stored = run_ours(daemon, ours_script, n, attach=True)
        print(f"{n} work units of /bin/true, {args.repeat} runs each, alternating")
        print(f"  xmanager (this project, daemon running): {_runs(ours)}")
        print(f"    final job statuses stored: {stored}/{n}")
        print(
            f"  xmanager, the launch script starting the daemon: {cold:.2f} s ({cold_stored}/{n})"
        )
        if baseline:
            print(f"  XManager 0.8.5 local executor: {_runs(baseline)}")
            print("    final job statuses stored: 0 (it records nothing about local jobs)")
            ratio = statistics.median(ours) / statistics.median(baseline)
            print(f"  ratio of medians (ours / XManager): {ratio:.2f} (target: at most 0.50)")
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
