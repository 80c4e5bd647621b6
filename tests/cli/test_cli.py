"""The `xmanager` command line as a user runs it: help, suggestions, JSON, wait, completion."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle, local_job, make_executable, run_cli
from xmanager.client import daemon_process
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.state_dir import StateDir

# A sweep over two hyperparameters, one unit failing (lr=0.3), run by the CLI's launch command.
_SWEEP = """
from xmanager import xm, xm_local

with xm_local.create_experiment(experiment_title={title!r}) as experiment:
    experiment.context.annotations.add_tags('cli')
    [executable] = experiment.package([
        xm.Packageable(xm.Binary(path={job!r}), xm_local.Local.Spec())])
    for lr in (0.1, 0.2, 0.3):
        experiment.add(
            xm.Job(executable, xm_local.Local()),
            args={{'args': {{'lr': lr, 'layers': 2}}}})
"""


def _sweep(daemon: DaemonHandle, tmp_path: Path, title: str = "cli sweep") -> None:
    job = make_executable(
        tmp_path / "job.sh", '#!/bin/sh\ncase "$1" in *0.3*) exit 3;; esac\necho "$@"\n'
    )
    script = tmp_path / "sweep.py"
    script.write_text(_SWEEP.format(title=title, job=str(job)))
    result = run_cli(["launch", str(script)], env=daemon.env())
    # The script waits for its units; one fails, so launch reports it and exits 1.
    assert result.returncode == 1, result.stderr


@pytest.mark.parametrize("argv", [["--help"], ["-h"]])
def test_help_lists_every_command(argv: list[str]) -> None:
    result = run_cli(argv, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    for command in ("launch", "daemon", "list", "show", "wait", "logs", "cancel", "completion"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["list", "--help"], ["--title", "--tag", "--status", "--limit", "--json", "--state_dir"]),
        (["show", "-h"], ["--json", "EXP[/WU]"]),
        (["logs", "--help"], ["--follow", "-f"]),
        (["daemon", "start", "--help"], ["--foreground", "--listen", "--max_running_jobs"]),
        (["launch", "--help"], ["SCRIPT", "--state_dir"]),
    ],
)
def test_command_help_lists_its_flags(argv: list[str], flags: list[str]) -> None:
    result = run_cli(argv, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    for flag in flags:
        assert flag in result.stdout, result.stdout


def test_daemon_start_takes_every_daemon_flag() -> None:
    from absl import flags

    import launcher_server.daemon
    from xmanager.cli import main

    defined = {
        flag.name
        for flag in flags.FLAGS.get_flags_for_module(launcher_server.daemon)
        if flag.name != "state_dir"
    }
    assert defined == set(main.DAEMON_FLAG_NAMES)


def test_unknown_command_and_flag_suggest_the_closest() -> None:
    env = dict(os.environ)
    command = run_cli(["lsit"], env=env)
    assert command.returncode == 2
    assert "Did you mean 'list'?" in command.stderr
    flag = run_cli(["list", "--limt=3"], env=env)
    assert flag.returncode == 2
    assert "--limit" in flag.stderr


def test_completion_scripts_come_from_the_commands() -> None:
    env = dict(os.environ)
    for shell in ("bash", "zsh"):
        script = run_cli(["completion", shell], env=env)
        assert script.returncode == 0, script.stderr
        assert "_XMANAGER_COMPLETE" in script.stdout
    # What the bash script asks the program when the user presses TAB after `xmanager li`.
    complete = run_cli(
        [],
        env={
            **env,
            "_XMANAGER_COMPLETE": "bash_complete",
            "COMP_WORDS": "xmanager li",
            "COMP_CWORD": "1",
        },
    )
    assert complete.stdout.split() == ["plain,list"]
    flags = run_cli(
        [],
        env={
            **env,
            "_XMANAGER_COMPLETE": "zsh_complete",
            "COMP_WORDS": "xmanager list --js",
            "COMP_CWORD": "2",
        },
    )
    assert "--json" in flags.stdout


def test_list_filters_and_json(daemon: DaemonHandle, tmp_path: Path) -> None:
    _sweep(daemon, tmp_path, "alpha sweep")
    _sweep(daemon, tmp_path, "beta sweep")
    env = daemon.env()
    listing = run_cli(["list", "--json"], env=env)
    assert listing.returncode == 0, listing.stderr
    document = json.loads(listing.stdout)
    assert document["schema_version"] == 1
    [beta, alpha] = document["experiments"]
    assert (alpha["title"], beta["title"]) == ("alpha sweep", "beta sweep")
    assert alpha["tags"] == ["cli"]
    assert alpha["work_unit_count"] == 3
    assert alpha["work_units_by_state"] == {"SUCCEEDED": 2, "FAILED": 1}
    assert alpha["create_time"].endswith("Z")

    def titles(*argv: str) -> list[str]:
        result = run_cli(["list", "--json", *argv], env=env)
        assert result.returncode == 0, result.stderr
        return [e["title"] for e in json.loads(result.stdout)["experiments"]]

    assert titles("--title", "alp") == ["alpha sweep"]
    assert titles("--tag", "cli", "--limit", "1") == ["beta sweep"]
    assert titles("--tag", "nope") == []
    assert titles("--status", "failed") == ["beta sweep", "alpha sweep"]
    assert titles("--status", "running") == []
    table = run_cli(["list", "--title", "beta"], env=env)
    assert "beta sweep" in table.stdout
    assert "alpha sweep" not in table.stdout


def test_show_args_columns_artifacts_and_json(daemon: DaemonHandle, tmp_path: Path) -> None:
    _sweep(daemon, tmp_path)
    env = daemon.env()
    table = run_cli(["show", "1"], env=env)
    assert table.returncode == 0, table.stderr
    header = next(line for line in table.stdout.splitlines() if "args.lr" in line)
    assert "args.layers" in header
    assert "0.3" in table.stdout
    assert str(tmp_path / "job.sh") in table.stdout.replace("\n", "").replace("│", "")
    shown = run_cli(["show", "1/3", "--json"], env=env)
    assert shown.returncode == 0, shown.stderr
    experiment = json.loads(shown.stdout)["experiment"]
    assert experiment["title"] == "cli sweep"
    [unit] = experiment["work_units"]
    assert unit["id"] == 3
    assert unit["args"] == {"args": {"lr": 0.3, "layers": 2}}
    assert unit["status"]["state"] == "FAILED"
    [job] = unit["jobs"]
    assert job["status"]["exit_code"] == 3
    assert job["artifact"]["kind"] == "binary"
    assert job["artifact"]["path"] == str(tmp_path / "job.sh")
    assert job["args"] == ["--lr=0.3", "--layers=2"]


def test_wait_exit_codes_and_plain_progress(daemon: DaemonHandle, tmp_path: Path) -> None:
    _sweep(daemon, tmp_path)
    env = daemon.env()
    whole = run_cli(["wait", "1"], env=env)
    assert whole.returncode == 1
    assert "did not succeed" in whole.stdout
    assert "1/3 FAILED" in whole.stderr  # plain lines: stderr is not a terminal
    one = run_cli(["wait", "1/2"], env=env)
    assert one.returncode == 0, one.stderr
    assert "1/2: succeeded" in one.stdout
    missing = run_cli(["wait", "7"], env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("xmanager: NOT_FOUND:")


def test_wait_blocks_until_a_running_unit_ends(daemon: DaemonHandle, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job = make_executable(
        tmp_path / "slow.sh", f"#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.05; done\n"
    )
    client = daemon.client
    experiment = client.stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="slow"))
    )
    client.stub.AddWorkUnit(
        pb.AddWorkUnitRequest(
            experiment_id=experiment.id, jobs=[local_job("slow", job)], request_id="slow-1"
        )
    )

    waiter = subprocess.Popen(
        [sys.executable, "-m", "xmanager.cli", "wait", "1"],
        env=daemon.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    assert waiter.poll() is None
    gate.touch()
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert "1: succeeded (SUCCEEDED 1)" in out


def test_daemon_start_foreground_execs_the_daemon(state_dir: Path) -> None:

    env = {**os.environ, "XM_STATE_DIR": str(state_dir)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmanager.cli",
            "daemon",
            "start",
            "--foreground",
            "--max_running_jobs=2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    state = StateDir.resolve(state_dir)
    deadline = time.monotonic() + 30
    while daemon_process.read_pid(state) != process.pid:
        assert time.monotonic() < deadline, "the daemon did not come up"
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        time.sleep(0.05)
    # The same process became the daemon: its command line is the daemon's own module.
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    assert b"launcher_server" in cmdline
    assert b"--max_running_jobs=2" in cmdline
    status = run_cli(["daemon", "status"], env=env)
    assert status.returncode == 0, status.stderr
    assert run_cli(["daemon", "stop"], env=env).returncode == 0
    assert process.wait(timeout=30) == 0


def test_the_client_never_imports_the_daemon() -> None:

    code = (
        "import sys; import xmanager.cli.main, xmanager.xm_local.experiment; "
        "print(sorted(m for m in sys.modules if m.startswith('launcher_server')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_wait_on_a_terminal_shows_a_live_bar(daemon: DaemonHandle, tmp_path: Path) -> None:

    _sweep(daemon, tmp_path)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "xmanager.cli", "wait", "1/1"],
        env={**daemon.env(), "TERM": "xterm", "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    out, _ = process.communicate(timeout=60)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    assert process.returncode == 0
    assert "1/1: succeeded (SUCCEEDED 1)" in out
    assert b"waiting for 1/1" in screen  # rich's bar, drawn on the terminal
