"""The dashboard under test: a real uvicorn server on loopback in front of a real daemon, and
sweeps whose jobs the test controls (a job waits for its "go" file, then exits as told)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tests.support.daemon import DaemonHandle, add_work_units, local_job, python_script
from xmanager.client.connection import Launcher
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.ui.app import create_app
from xmanager.ui.auth import Guard

TOKEN = "test-token-" + "x" * 20

# A job: prints coloured output, waits until its go file exists (if it names one), exits with
# the code its argument gives.
_JOB = """
import os, sys, time
code, go = int(sys.argv[1]), sys.argv[2]
print("\\x1b[32mstarting\\x1b[0m unit", os.environ.get("XM_WORK_UNIT_ID", "?"), flush=True)
for i in range(int(sys.argv[3]) if len(sys.argv) > 3 else 3):
    print("line", i, flush=True)
deadline = time.monotonic() + 300
while go and not os.path.exists(go):
    # The test is gone (its directory removed) or stuck: don't outlive it.
    if not os.path.isdir(os.path.dirname(go)) or time.monotonic() > deadline:
        sys.exit(2)
    time.sleep(0.05)
if code:
    print("\\x1b[1;31merror:\\x1b[0m failing on purpose", file=sys.stderr, flush=True)
sys.exit(code)
"""


class UiServer:
    """The dashboard app served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, launcher: Launcher) -> None:
        self.guard = Guard(TOKEN)
        self.app = create_app(launcher, self.guard)
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=1)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> UiServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()

    def login_url(self) -> str:
        return f"{self.url}/login?code={self.guard.one_time_code()}"

    def client(self) -> httpx.Client:
        """An httpx client logged in (its cookie set by the one-time URL)."""
        client = httpx.Client(base_url=self.url, timeout=30)
        response = client.get(self.login_url(), follow_redirects=False)
        assert response.status_code == 303, response.text
        return client

    def csrf(self, client: httpx.Client, experiment_id: int) -> str:
        """The CSRF token from an experiment page, as its script reads it."""
        page = client.get(f"/experiments/{experiment_id}").text
        marker = '<meta name="csrf-token" content="'
        start = page.index(marker) + len(marker)
        return page[start : page.index('"', start)]


def serve(daemon: DaemonHandle) -> Iterator[UiServer]:
    server = UiServer(daemon.client).start()
    try:
        yield server
    finally:
        server.stop()


def job_binary(directory: Path) -> Path:
    return python_script(directory / "job.py", _JOB)


def make_sweep(
    launcher: Launcher,
    directory: Path,
    params: list[dict[str, Any]],
    *,
    title: str = "sweep",
    tags: tuple[str, ...] = (),
    codes: list[int] | None = None,
    wait: bool = False,
    lines: int = 3,
) -> tuple[int, Path]:
    """An experiment with one unit per params; unit i exits with codes[i]. With `wait`, every
    job waits for the file `go-<unit id>` in `directory` (returned) before exiting."""
    directory.mkdir(parents=True, exist_ok=True)
    binary = job_binary(directory)
    created = launcher.stub.CreateExperiment(
        pb.CreateExperimentRequest(
            experiment=pb.Experiment(title=title, tags=tags, creator="tester")
        )
    )
    requests = []
    for i, args in enumerate(params):
        code = (codes or [0] * len(params))[i]
        go = str(directory / f"go-{i + 1}") if wait else ""
        requests.append(
            pb.AddWorkUnitRequest(
                experiment_id=created.id,
                request_id=os.urandom(8).hex(),
                args_json=json.dumps(args),
                jobs=[local_job("train", binary, str(code), go, str(lines))],
            )
        )
    results = add_work_units(launcher, requests)
    assert all(r.error_code == 0 for r in results), [r.error_message for r in results]
    return int(created.id), directory


def release(directory: Path, work_unit_id: int) -> None:
    (directory / f"go-{work_unit_id}").touch()


def wait_state(
    launcher: Launcher, experiment_id: int, work_unit_id: int, state: int, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        unit = launcher.stub.GetWorkUnit(
            pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id)
        )
        if unit.status.state == state:
            return
        assert time.monotonic() < deadline, f"unit {work_unit_id}: {unit.status}"
        time.sleep(0.05)
