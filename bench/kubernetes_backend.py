"""The Kubernetes backend at scale, against the API emulator with an instant kubelet.

    .venv/bin/python bench/kubernetes_backend.py [--units=500] [--idle_seconds=60]

1. Submission: N work units of one Kubernetes job each through one AddWorkUnits stream; the
   time until every Job exists on the (emulated) API server, and the API requests per unit.
2. Observation: with all N jobs running, the daemon's API requests and CPU time over an idle
   period. Target: independent of N (one watch per kind and namespace, no polling).

The kubelet here marks pods Running at once without containers (the emulator's store, in
process), so the figures are the daemon's, not Docker's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.kubernetes.emulator import Emulator  # noqa: E402
from tests.fakes.kubernetes.store import Obj, Store, now  # noqa: E402
from tests.kubernetes import specs  # noqa: E402
from tests.support.daemon import DaemonHandle, add_work_units, list_work_units  # noqa: E402
from xmanager.launcher.v1 import launcher_pb2 as pb  # noqa: E402

NODE = "bench-node"


def instant_kubelet(store: Store, stop: threading.Event) -> None:
    """Binds nothing itself (the emulator's scheduler does); marks bound pods Running."""
    store.create(
        "nodes",
        "",
        {
            "metadata": {"name": NODE},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "allocatable": {"cpu": "1000", "memory": "1000Gi", "pods": "100000"},
            },
        },
    )
    rv = store.resource_version
    while not stop.is_set():
        events = store.events_after(rv)
        for event in events:
            rv = event.rv
            obj = event.obj
            if event.plural != "pods" or event.type == "DELETED":
                continue
            if obj["spec"].get("nodeName") and obj.get("status", {}).get("phase") == "Pending":

                def run(pod: Obj) -> None:
                    pod["status"] = {
                        "phase": "Running",
                        "startTime": now(),
                        "containerStatuses": [
                            {
                                "name": "job",
                                "ready": True,
                                "state": {"running": {"startedAt": now()}},
                            }
                        ],
                    }

                meta = obj["metadata"]
                store.update("pods", meta["namespace"], meta["name"], run)
        if not events:
            with store.changed:
                if store.resource_version <= rv:
                    store.changed.wait(0.2)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def total(counts: dict[str, int]) -> int:
    return sum(counts.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--idle_seconds", type=float, default=60)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="xm-bench-k8s-"))
    emulator = Emulator(validate_objects=False).start()
    stop = threading.Event()
    threading.Thread(target=instant_kubelet, args=(emulator.store, stop), daemon=True).start()
    kubeconfig = emulator.server.write_kubeconfig(root / "kubeconfig")
    daemon = DaemonHandle(root / "state", [f"--kubeconfig={kubeconfig}"])
    daemon.start()
    try:
        stub = daemon.client.stub
        experiment = stub.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(title="k8s bench"))
        )
        job = specs.image_job("trainer", reference="localhost:5000/trainer:latest")
        # Warm: the backend's first job loads the client library and starts the watches.
        add_work_units(
            daemon.client,
            [pb.AddWorkUnitRequest(experiment_id=experiment.id, request_id="warm", jobs=[job])],
        )
        while len(emulator.store.list("jobs", "default")[0]) < 1:
            time.sleep(0.05)
        before = dict(emulator.server.requests)
        cpu_start = cpu_seconds(daemon.pid)
        start = time.monotonic()
        requests = [
            pb.AddWorkUnitRequest(
                experiment_id=experiment.id, request_id=uuid.uuid4().hex, jobs=[job]
            )
            for _ in range(args.units)
        ]
        for result in add_work_units(daemon.client, requests):
            assert not result.error_code, result.error_message
        accepted = time.monotonic() - start
        while len(emulator.store.list("jobs", "default")[0]) < args.units + 1:
            time.sleep(0.05)
        created = time.monotonic() - start
        submit_cpu = cpu_seconds(daemon.pid) - cpu_start
        after = dict(emulator.server.requests)
        calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        print(f"submission of {args.units} work units (1 Kubernetes job each):")
        print(f"  AddWorkUnits returned after {accepted:.2f} s")
        print(f"  every Job created after     {created:.2f} s ({args.units / created:.0f} units/s)")
        per_unit = 1000 * submit_cpu / args.units
        print(f"  daemon CPU meanwhile:       {submit_cpu:.2f} s ({per_unit:.1f} ms per unit)")
        print(
            f"  API requests: {total(calls)} ({total(calls) / args.units:.2f} per unit): "
            + ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
        )

        deadline = time.monotonic() + 600
        while True:
            units = list_work_units(daemon.client, experiment.id)
            if sum(u.status.state == pb.JOB_STATE_RUNNING for u in units) == args.units + 1:
                break
            assert time.monotonic() < deadline, "not all running"
            time.sleep(0.5)
        running = time.monotonic() - start
        print(f"  every job RUNNING after     {running:.2f} s")

        time.sleep(2)  # let the last status writes settle
        before = dict(emulator.server.requests)
        cpu_before = cpu_seconds(daemon.pid)
        time.sleep(args.idle_seconds)
        after = dict(emulator.server.requests)
        cpu = cpu_seconds(daemon.pid) - cpu_before
        calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        minutes = args.idle_seconds / 60
        print(f"observation of {args.units + 1} running jobs, idle for {args.idle_seconds:.0f} s:")
        print(
            f"  API requests per minute: {total(calls) / minutes:.1f} ("
            + ", ".join(f"{k} {v}" for k, v in sorted(calls.items()) if v)
            + ")"
        )
        print(f"  daemon CPU per minute:   {cpu / minutes:.2f} s")
        stub.CancelExperiment(
            pb.CancelExperimentRequest(experiment_id=experiment.id, grace_period_seconds=1)
        )
    finally:
        daemon.stop()
        stop.set()
        emulator.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
