"""`xmanager ui` as a user starts it: a separate process printing its one-time login URL."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx

from tests.support.daemon import ROOT, DaemonHandle, run_cli


def test_xmanager_ui_serves_with_a_one_time_url(ui_daemon: DaemonHandle) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmanager.cli",
            f"--state_dir={ui_daemon.state.root}",
            "ui",
            "--port=0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        match = re.match(r"open (http://127\.0\.0\.1:\d+)(/login\?code=\S+)", lines[1])
        assert match, lines
        base, login = match.groups()
        assert str(ui_daemon.state.token) in lines[2]
        client = httpx.Client(base_url=base, timeout=30)
        assert client.get("/").status_code == 401
        assert client.get(login, follow_redirects=True).status_code == 200
        assert "Experiments" in client.get("/").text
        assert httpx.get(base + login).status_code == 401  # spent
    finally:
        process.terminate()
        process.wait(10)


def test_bad_usage(ui_daemon: DaemonHandle) -> None:
    env = ui_daemon.env()
    for args, message in [
        (["ui", "--port=70000"], "70000 is not in the range 0<=x<=65535"),
        (["ui", "extra"], "unexpected extra argument"),
    ]:
        result = run_cli(args, env)
        assert result.returncode == 2
        assert message in result.stderr
