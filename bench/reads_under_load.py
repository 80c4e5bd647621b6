"""Read latency while a sweep is written: do reads queue behind the sweep's writes?

    .venv/bin/python bench/reads_under_load.py [--clients=16] [--rate=5] [--units=1000]
        [--db_url=URL]

One daemon; an experiment of 200 finished work units to read; reads alone for `idle` seconds
(the floor: what the machine gives a read at the moment); then a sweep of `units` work
units of /bin/true is added through one AddWorkUnits stream and run to the end (every unit is
written when added, and its job's status several times as it starts and ends). Meanwhile
`clients` processes each call, `rate` times a second on their own schedule, a mix of reads:
GetWorkUnit (60 %), ListWorkUnits of 100 (15 %), ListExperiments (15 %), GetExperiment (10 %),
and two more processes watch the sweep (WatchWorkUnits). Prints p50/p99 per call while the
sweep runs, and alone before it; and how late the clients themselves woke up for their calls
(their own wait for a CPU, part of every latency they measure). Target: GetWorkUnit p99 under
50 ms.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import multiprocessing.synchronize
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

from tests.support.daemon import FINAL, DaemonHandle, add_work_units, local_job  # noqa: E402
from xmanager.client.connection import Launcher  # noqa: E402
from xmanager.launcher.v1 import launcher_pb2 as pb  # noqa: E402
from xmanager.state_dir import StateDir  # noqa: E402

_READ_UNITS = 200
_GC_EVERY = 10_000  # allocations between collections in a reader, outside the timed calls
_WAKE_UP = "client wake-up"
_MIX = [("GetWorkUnit", 60), ("ListWorkUnits", 15), ("ListExperiments", 15), ("GetExperiment", 10)]


def _reader(  # noqa: PLR0917  # a process target takes positional arguments
    state_root: str,
    experiment_id: int,
    rate: float,
    go: multiprocessing.synchronize.Event,
    sweeping: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    out: multiprocessing.Queue[list[tuple[str, float]] | None],
) -> None:
    launcher = Launcher(StateDir.resolve(state_root), autostart=False)
    stub = launcher.stub
    rng = random.Random()
    names = [name for name, weight in _MIX for _ in range(weight)]

    def call(name: str) -> None:
        if name == "GetWorkUnit":
            work_unit_id = rng.randint(1, _READ_UNITS)
            stub.GetWorkUnit(
                pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id)
            )
        elif name == "ListWorkUnits":
            stub.ListWorkUnits(pb.ListWorkUnitsRequest(experiment_id=experiment_id, page_size=100))
        elif name == "ListExperiments":
            stub.ListExperiments(pb.ListExperimentsRequest(page_size=50))
        else:
            stub.GetExperiment(pb.GetExperimentRequest(experiment_id=experiment_id))

    for name in names[:20]:  # warm up the channel
        call(name)
    out.put(None)  # ready
    go.wait()
    # The load generator's own garbage collector must not be timed as the daemon's latency:
    # its full collections paused readers for 100 to 300 ms while the sweep loaded the
    # machine. Objects from the imports are frozen; young ones are collected between calls.
    gc.collect()
    gc.freeze()
    gc.disable()
    samples: list[tuple[str, float]] = []
    scheduled = time.perf_counter() + rng.random() / rate
    while not stop.is_set():
        now = time.perf_counter()
        if now < scheduled:
            time.sleep(scheduled - now)
            # How late this client woke up: its own wait for a CPU, which every call's
            # latency also holds (for the answer to be read), whatever the daemon does.
            late = time.perf_counter() - scheduled
            samples.append((f"{'sweep' if sweeping.is_set() else 'alone'} {_WAKE_UP}", late))
        scheduled += 1.0 / rate
        name = rng.choice(names)
        start = time.perf_counter()
        call(name)
        phase = "sweep" if sweeping.is_set() else "alone"
        samples.append((f"{phase} {name}", time.perf_counter() - start))
        if gc.get_count()[0] > _GC_EVERY:
            gc.collect(1)
    out.put(samples)
    launcher.close()


def _watcher(state_root: str, experiment_id: int, stop: multiprocessing.synchronize.Event) -> None:
    launcher = Launcher(StateDir.resolve(state_root), autostart=False)
    stream = launcher.stub.WatchWorkUnits(
        pb.WatchWorkUnitsRequest(experiment_id=experiment_id, until_all_final=True)
    )
    for _ in stream:
        if stop.is_set():
            stream.cancel()
            break
    launcher.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=5.0, help="calls per second per client")
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of reads alone")
    parser.add_argument("--db_url", default="", help="a PostgreSQL URL (default SQLite)")
    parser.add_argument(
        "--read_process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the daemon's read process (--no-read_process: the daemon serves reads alone)",
    )
    args = parser.parse_args()

    state_root = Path(tempfile.mkdtemp(prefix="xm-bench-", dir="/tmp"))
    flags = [f"--db_url={args.db_url}"] if args.db_url else []
    if not args.read_process:
        flags.append("--noread_process")
    daemon = DaemonHandle(state_root, flags)
    launcher = daemon.start()
    try:
        stub = launcher.stub
        reads = stub.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(title="read me"))
        ).id
        add_work_units(
            launcher,
            (
                pb.AddWorkUnitRequest(
                    experiment_id=reads,
                    request_id=str(uuid.uuid4()),
                    jobs=[local_job("m", "/bin/true")],
                )
                for _ in range(_READ_UNITS)
            ),
        )
        daemon.wait_all_final(reads, _READ_UNITS, timeout=300)
        sweep = stub.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(title="sweep"))
        ).id

        context = multiprocessing.get_context("spawn")
        go, sweeping, stop = context.Event(), context.Event(), context.Event()
        out: multiprocessing.Queue[list[tuple[str, float]] | None] = context.Queue()
        readers = [
            context.Process(
                target=_reader,
                args=(str(state_root), reads, args.rate, go, sweeping, stop, out),
            )
            for _ in range(args.clients)
        ]
        watchers = [
            context.Process(target=_watcher, args=(str(state_root), sweep, stop)) for _ in range(2)
        ]
        for process in readers + watchers:
            process.start()
        for _ in readers:  # every reader connected and warmed up
            out.get(timeout=300)
        time.sleep(1)  # the watchers too
        go.set()
        time.sleep(args.idle)
        sweeping.set()
        started = time.perf_counter()
        add_work_units(
            launcher,
            (
                pb.AddWorkUnitRequest(
                    experiment_id=sweep,
                    request_id=str(uuid.uuid4()),
                    jobs=[local_job("m", "/bin/true")],
                    args_json=f'{{"lr": {i}}}',
                )
                for i in range(args.units)
            ),
            batch=100,
        )
        added = time.perf_counter() - started
        # Waits as `xmanager wait` does, on a watch of the final states: polling the sweep's
        # 1,000 units 20 times a second, as a test waits, would be a heavy 17th reader.
        final = stub.WatchWorkUnits(
            pb.WatchWorkUnitsRequest(
                experiment_id=sweep, until_all_final=True, states=sorted(FINAL)
            ),
            timeout=600,
        )
        for _ in final:
            pass
        took = time.perf_counter() - started
        stop.set()
        samples = [sample for _ in readers for sample in out.get(timeout=60) or []]
        for process in readers + watchers:
            process.join(timeout=30)
    finally:
        daemon.stop()
        shutil.rmtree(state_root, ignore_errors=True)

    store = "PostgreSQL" if args.db_url else "SQLite"
    print(
        f"{store}: sweep of {args.units} units added in {added:.1f} s, all final after "
        f"{took:.1f} s; {args.clients} readers at {args.rate:g} calls/s each, 2 watchers; "
        f"read process {'on' if args.read_process else 'off'}"
    )
    print(f"{'call':<22} {'calls':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for phase in ("alone", "sweep"):
        for name in [name for name, _ in _MIX] + ["all", _WAKE_UP]:
            values = [
                v
                for n, v in samples
                if n.startswith(phase) and (n[6:] == name or (name == "all" and _WAKE_UP not in n))
            ]
            if not values:
                continue
            print(
                f"{phase + ' ' + name:<22} {len(values):>6} "
                f"{statistics.median(values) * 1000:>8.1f} "
                f"{_percentile(values, 0.99) * 1000:>8.1f} {max(values) * 1000:>8.1f}"
            )


if __name__ == "__main__":
    main()
