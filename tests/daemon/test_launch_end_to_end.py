"""Launch scripts end to end: a real daemon process, real sockets, real job processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.daemon import (
    ROOT,
    TRICKY_VALUES,
    DaemonHandle,
    list_work_units,
    local_job,
    make_executable,
    python_script,
    run_cli,
    run_script,
)
from xmanager.client import daemon_process
from xmanager.launcher.v1 import launcher_pb2 as pb


def _launch(daemon: DaemonHandle, script: Path, *flags: str) -> str:
    result = run_cli(["launch", str(script), "--", *flags], env=daemon.env())
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout + result.stderr


def _experiment_id(output: str) -> int:
    for line in output.splitlines():
        if line.startswith("EXPERIMENT "):
            return int(line.split()[1])
    raise AssertionError(f"no EXPERIMENT line in:\n{output}")


def _logs(daemon: DaemonHandle, experiment_id: int, work_unit_id: int, job: str = "") -> bytes:
    chunks = daemon.client.stub.StreamLogs(
        pb.StreamLogsRequest(
            experiment_id=experiment_id,
            work_unit_id=work_unit_id,
            job_name=job,
            stream=pb.LOG_STREAM_STDOUT,
        )
    )
    return b"".join(chunk.data for chunk in chunks)


# The quickstart packages Bazel labels: outside `bazel run`, the client runs `bazel build`.
@pytest.mark.bazel
def test_quickstart_example_runs_to_success(daemon: DaemonHandle) -> None:
    output = _launch(daemon, ROOT / "examples" / "quickstart" / "launch.py", "--steps=50")
    experiment = daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments[0]
    units = list_work_units(daemon.client, experiment.id)
    assert [u.status.state for u in units] == [pb.JOB_STATE_SUCCEEDED] * 4
    assert all(u.jobs[0].status.exit_code == 0 and u.jobs[0].status.has_exit_code for u in units)
    assert "4 work unit(s) finished" in output
    result = json.loads(_logs(daemon, experiment.id, 1).decode().splitlines()[-1])
    assert result["learning_rate"] == 0.3
    assert result["work_unit"] == "1"


def test_arguments_arrive_byte_for_byte(daemon: DaemonHandle, tmp_path: Path) -> None:
    echo = python_script(
        tmp_path / "echo_args.py",
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'env': os.environ.get('TRICKY')}))\n",
    )
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from xmanager import xm, xm_local
            VALUES = {TRICKY_VALUES!r}
            with xm_local.create_experiment(experiment_title='args') as experiment:
                [executable] = experiment.package([xm.Packageable(
                    executable_spec=xm.Binary(path={str(echo)!r}),
                    executor_spec=xm_local.Local.Spec())])
                experiment.add(xm.Job(
                    executable=executable,
                    executor=xm_local.Local(),
                    args={{'value': VALUES, 'flag': True, 'off': False}},
                    env_vars={{'TRICKY': VALUES[5]}},
                ))
                experiment.add(
                    xm.Job(executable=executable, executor=xm_local.Local(), args=VALUES))
            print('EXPERIMENT', experiment.experiment_id)
            """
        )
    )
    experiment_id = _experiment_id(_launch(daemon, script))
    flags = json.loads(_logs(daemon, experiment_id, 1))
    assert flags["argv"] == [*(f"--value={v}" for v in TRICKY_VALUES), "--flag", "--nooff"]
    assert flags["env"] == TRICKY_VALUES[5]
    positional = json.loads(_logs(daemon, experiment_id, 2))
    assert positional["argv"] == TRICKY_VALUES


def test_job_group_failure_stops_peers(daemon: DaemonHandle, tmp_path: Path) -> None:
    failing = make_executable(tmp_path / "fail.sh", "#!/bin/sh\nsleep 0.3\nexit 3\n")
    sleeper = make_executable(tmp_path / "sleep.sh", "#!/bin/sh\nexec sleep 300\n")
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from xmanager import xm, xm_local
            with xm_local.create_experiment(experiment_title='group') as experiment:
                fail, sleep = experiment.package([
                    xm.Packageable(xm.Binary(path={str(failing)!r}), xm_local.Local.Spec()),
                    xm.Packageable(xm.Binary(path={str(sleeper)!r}), xm_local.Local.Spec()),
                ])
                experiment.add(xm.JobGroup(
                    worker=xm.Job(fail, xm_local.Local()),
                    server=xm.Job(sleep, xm_local.Local()),
                ))
            print('EXPERIMENT', experiment.experiment_id)
            """
        )
    )
    result = run_cli(["launch", str(script)], env=daemon.env())
    assert result.returncode != 0  # the unit failed: the experiment's wait raises
    assert "worker" in result.stderr
    experiment = daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments[0]
    (unit,) = daemon.wait_all_final(experiment.id, 1)
    jobs = {job.name: job.status for job in unit.jobs}
    assert unit.status.state == pb.JOB_STATE_FAILED
    assert jobs["worker"].state == pb.JOB_STATE_FAILED
    assert jobs["worker"].exit_code == 3
    assert jobs["server"].state == pb.JOB_STATE_CANCELLED
    assert "worker" in jobs["server"].reason


def test_cancel_leaves_no_orphans(daemon: DaemonHandle, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    job = make_executable(
        tmp_path / "spawner.sh",
        f"#!/bin/sh\nsleep 300 &\necho $! > {pid_file}\nwait\n",
    )
    client = daemon.client
    experiment = client.stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="cancel"))
    )
    client.stub.AddWorkUnit(
        pb.AddWorkUnitRequest(
            experiment_id=experiment.id,
            request_id="cancel-1",
            jobs=[local_job("main", str(job))],
        )
    )
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    run = run_cli(["cancel", f"{experiment.id}/1"], env=daemon.env())
    assert run.returncode == 0, run.stderr
    (unit,) = daemon.wait_all_final(experiment.id, 1)
    assert unit.status.state == pb.JOB_STATE_CANCELLED
    deadline = time.monotonic() + 5
    while daemon_process.alive(grandchild):
        assert time.monotonic() < deadline, f"grandchild {grandchild} survived the cancel"
        time.sleep(0.05)


def test_for_the_impatient_snippet_runs_as_plain_python(
    daemon: DaemonHandle, tmp_path: Path
) -> None:
    """XManager's README snippet, unchanged but for a real binary path, without app.run."""
    script = tmp_path / "impatient.py"
    script.write_text(
        textwrap.dedent(
            """
            from xmanager import xm
            from xmanager import xm_local

            # Step 1: Create an experiment.
            with xm_local.create_experiment(experiment_title='cifar10') as experiment:
              # Step 2: Define your executable.
              [executable] = experiment.package([
                  xm.Packageable(
                      executable_spec=xm.Binary(path='/bin/echo'),
                      executor_spec=xm_local.Local.Spec(),
                      args={'batch_size': 64},
                  ),
              ])

              # Step 3: Define the hyperparameters.
              parameters = [{'learning_rate': lr} for lr in [1e-1, 1e-2, 1e-3]]

              # Step 4: Define how to run the executable.
              for hyperparameters in parameters:
                experiment.add(xm.Job(
                    executable=executable,
                    executor=xm_local.Local(),
                    args=hyperparameters,
                ))
            """
        )
    )
    env = daemon.env()
    result = run_script(script, env)
    assert result.returncode == 0, result.stderr
    experiment = daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments[0]
    assert experiment.title == "cifar10"
    assert experiment.launch_script_path == str(script)
    units = list_work_units(daemon.client, experiment.id)
    assert [u.status.state for u in units] == [pb.JOB_STATE_SUCCEEDED] * 3
    assert _logs(daemon, experiment.id, 2) == b"--batch_size=64 --learning_rate=0.01\n"
    # As XManager's examples run: absl's app.run and flags, through the CLI, with XManager's
    # usual flag after `--`.
    with_flags = tmp_path / "with_flags.py"
    with_flags.write_text(
        textwrap.dedent(
            """
            from absl import app, flags
            from xmanager import xm, xm_local

            _RATE = flags.DEFINE_float('rate', 0.5, 'A hyperparameter.')

            def main(_):
              with xm_local.create_experiment(experiment_title='with flags') as experiment:
                [executable] = experiment.package([xm.Packageable(
                    executable_spec=xm.Binary(path='/bin/echo'),
                    executor_spec=xm_local.Local.Spec())])
                for i in range(3):
                  experiment.add(xm.Job(executable, xm_local.Local(), args={'rate': _RATE.value}))

            app.run(main)
            """
        )
    )
    launched = run_cli(
        ["launch", str(with_flags), "--", "--xm_wrap_late_bindings", "--rate=0.25"], env=env
    )
    assert launched.returncode == 0, launched.stderr
    newest = daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments[0]
    assert newest.id == experiment.id + 1
    assert [u.status.state for u in list_work_units(daemon.client, newest.id)] == [
        pb.JOB_STATE_SUCCEEDED
    ] * 3


@pytest.mark.bazel
def test_cli_list_show_logs(daemon: DaemonHandle) -> None:
    _launch(daemon, ROOT / "examples" / "quickstart" / "launch.py", "--steps=10")
    env = daemon.env()
    listing = run_cli(["list"], env=env)
    assert listing.returncode == 0
    assert "quickstart sweep" in listing.stdout
    show = run_cli(["show", "1"], env=env)
    assert show.returncode == 0
    assert show.stdout.count("SUCCEEDED") >= 4
    logs = run_cli(["logs", "1/2"], env=env)
    assert logs.returncode == 0
    assert '"learning_rate": 0.1' in logs.stdout
    missing = run_cli(["show", "99"], env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("xmanager: NOT_FOUND:")
    assert missing.stderr.count("\n") == 1
    usage = run_cli(["logs"], env=env)
    assert usage.returncode == 2


def test_daemon_sigkill_during_sweep_loses_nothing(daemon: DaemonHandle, tmp_path: Path) -> None:
    """SIGKILL the daemon mid-sweep; the restarted daemon reports every job's real outcome."""
    job = make_executable(
        tmp_path / "job.sh",
        "#!/bin/sh\nsleep 0.$(( $XM_WORK_UNIT_ID % 7 ))\nexit $(( $XM_WORK_UNIT_ID % 5 == 0 ))\n",
    )
    script = tmp_path / "sweep.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from xmanager import xm, xm_local
            with xm_local.create_experiment(experiment_title='sweep') as experiment:
                [executable] = experiment.package([
                    xm.Packageable(xm.Binary(path={str(job)!r}), xm_local.Local.Spec())])
                for i in range(200):
                    experiment.add(xm.Job(executable, xm_local.Local(), args={{'i': i}}))
            """
        )
    )
    launch = subprocess.Popen(
        [sys.executable, "-m", "xmanager.cli", "launch", str(script)],
        env=daemon.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Kill once some jobs have finished and others are still running or queued.
    deadline = time.monotonic() + 60
    while True:
        experiments = daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments
        done = experiments and sum(
            n
            for state, n in experiments[0].work_unit_state_counts.items()
            if state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED)
        )
        if done and done >= 20:
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    daemon.kill()
    daemon.launcher = None
    time.sleep(0.5)  # jobs keep finishing while no daemon runs
    # The launch script's client restarts the daemon by itself; wait for the script to finish.
    stdout, stderr = launch.communicate(timeout=120)
    assert "200 work unit(s) finished" in stdout + stderr, stderr
    daemon.attach()  # the daemon the launch script's client restarted
    units = daemon.wait_all_final(experiments[0].id, 200)
    assert [u.work_unit_id for u in units] == list(range(1, 201))
    for unit in units:
        (job_status,) = [j.status for j in unit.jobs]
        expected_failure = unit.work_unit_id % 5 == 0
        assert job_status.state == (
            pb.JOB_STATE_FAILED if expected_failure else pb.JOB_STATE_SUCCEEDED
        ), (unit.work_unit_id, job_status)
        assert job_status.exit_code == int(expected_failure)
