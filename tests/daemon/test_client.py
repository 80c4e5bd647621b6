"""The xm_local client: experiments from several processes, packaging, refusals, Ctrl+C."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle, make_executable, run_cli, run_script
from xmanager import xm, xm_local
from xmanager.launcher.v1 import launcher_pb2 as pb


@pytest.fixture
def client_env(shared_daemon: DaemonHandle, monkeypatch: pytest.MonkeyPatch) -> DaemonHandle:
    """This test process's xm_local talks to the shared daemon."""
    monkeypatch.setenv("XM_STATE_DIR", str(shared_daemon.state.root))
    return shared_daemon


@pytest.fixture
def launch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Relative paths of a launch script resolve against its directory."""
    script = tmp_path / "launch.py"
    script.write_text("# stands for the launch script\n")
    monkeypatch.setenv("XM_LAUNCH_SCRIPT", str(script))
    return tmp_path


def test_get_experiment_reattaches_from_another_process(
    client_env: DaemonHandle, tmp_path: Path
) -> None:
    job = make_executable(tmp_path / "job.sh", "#!/bin/sh\nsleep 0.3\nexit $1\n")
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from xmanager import xm, xm_local
            experiment = xm_local.create_experiment(experiment_title='elsewhere')
            with experiment:
                [executable] = experiment.package(
                    [xm.Packageable(xm.Binary(path={str(job)!r}), xm_local.Local.Spec())])
                for code in ['0', '0', '3']:
                    experiment.add(xm.Job(executable, xm_local.Local(), args=[code]))
                print('EXPERIMENT', experiment.experiment_id, flush=True)
            """
        )
    )
    launched = run_script(script, client_env.env())
    assert launched.returncode == 1  # work unit 3 failed: the script says so
    assert "1 of 3 work unit(s) failed" in launched.stderr
    experiment_id = int(launched.stdout.split()[1])

    experiment = xm_local.get_experiment(experiment_id)
    assert experiment.experiment_id == experiment_id
    assert experiment.context.annotations.title == "elsewhere"
    assert experiment.work_unit_count == 3
    assert sorted(experiment.work_units) == [1, 2, 3]
    unit = experiment.work_units[3]
    assert unit.get_status().is_failed
    assert "exited with code 3" in unit.get_status().message
    assert experiment.work_units[1].get_status().is_completed
    assert experiment_id in [e.experiment_id for e in xm_local.list_experiments()]
    # Annotations made from here are recorded by the daemon.
    experiment.context.annotations.add_tags("reviewed")
    record = client_env.client.stub.GetExperiment(
        pb.GetExperimentRequest(experiment_id=experiment_id)
    )
    assert list(record.tags) == ["reviewed"]


def test_async_experiment_and_wait_until_complete(client_env: DaemonHandle, tmp_path: Path) -> None:
    job = make_executable(tmp_path / "job.sh", '#!/bin/sh\necho "$@"\n')

    async def main() -> list[xm.ExperimentUnit]:
        async with xm_local.create_experiment(experiment_title="async") as experiment:
            [executable] = experiment.package(
                [xm.Packageable(xm.Binary(path=str(job)), xm_local.Local.Spec())]
            )
            units = [
                await experiment.add(xm.Job(executable, xm_local.Local(), args={"i": i}))
                for i in range(3)
            ]
            assert [unit.work_unit_id for unit in units] == [1, 2, 3]
            return [await unit.wait_until_complete() for unit in units]

    units = asyncio.run(main())  # wait_until_complete resolves to the unit, as in XManager
    assert all(unit.get_status().is_completed for unit in units)


def test_relative_binary_paths_and_packaging_errors(
    client_env: DaemonHandle, launch_dir: Path
) -> None:
    (launch_dir / "bin").mkdir()
    make_executable(launch_dir / "bin" / "run.sh", "#!/bin/sh\nexit 0\n")
    with xm_local.create_experiment(experiment_title="paths") as experiment:
        [executable] = experiment.package(
            [xm.Packageable(xm.Binary(path="bin/run.sh"), xm_local.Local.Spec())]
        )
        assert isinstance(executable, xm.BinaryArtifact)
        assert executable.path == str(launch_dir / "bin" / "run.sh")
        assert len(executable.sha256) == 64
        with pytest.raises(xm_local.PackagingError, match=r"missing\.sh does not exist"):
            experiment.package(
                [xm.Packageable(xm.Binary(path="missing.sh"), xm_local.Local.Spec())]
            )
        (launch_dir / "plain.sh").write_text("#!/bin/sh\n")
        with pytest.raises(xm_local.PackagingError, match="is not executable; chmod"):
            experiment.package([xm.Packageable(xm.Binary(path="plain.sh"), xm_local.Local.Spec())])


# Vertex AI and Kubernetes have their backends now (tests/vertex, tests/kubernetes): without a
# cluster configured, a Kubernetes job is refused saying what to set.
def test_kubernetes_without_a_cluster_is_refused_clearly(
    client_env: DaemonHandle, tmp_path: Path
) -> None:
    executor = xm_local.Kubernetes()

    def launch() -> None:
        with xm_local.create_experiment(experiment_title="on kubernetes") as experiment:
            [executable] = experiment.package(
                [xm.Packageable(xm.Container(image_path="trainer:latest"), executor.Spec())]
            )
            experiment.add(xm.Job(executable, executor))

    with pytest.raises(xm_local.WorkUnitRejectedError) as refused:
        launch()
    assert refused.value.code.name == "FAILED_PRECONDITION"
    assert "--kubeconfig" in str(refused.value)


def test_ctrl_c_while_waiting_offers_to_cancel(shared_daemon: DaemonHandle, tmp_path: Path) -> None:
    job = make_executable(tmp_path / "long.sh", "#!/bin/sh\nsleep 300\n")
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from xmanager import xm, xm_local
            with xm_local.create_experiment(experiment_title='interrupted') as experiment:
                [executable] = experiment.package(
                    [xm.Packageable(xm.Binary(path={str(job)!r}), xm_local.Local.Spec())])
                experiment.add(xm.Job(executable, xm_local.Local()))
                experiment.add(xm.Job(executable, xm_local.Local()))
                print('EXPERIMENT', experiment.experiment_id, flush=True)
            """
        )
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: the launch script on a terminal, as a user runs it
        # With Ctrl+C's default action, as on a terminal: a test run started as a background
        # job inherits SIGINT ignored, and Python would then never raise KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.environ.update(shared_daemon.env())
        os.execv(sys.executable, [sys.executable, "-m", "xmanager.cli", "launch", str(script)])
    output = b""

    def read_until(text: bytes, timeout: float = 30) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while text not in output:
            assert time.monotonic() < deadline, output.decode(errors="replace")
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    output += os.read(fd, 4096)
                except OSError:  # the child ended
                    raise AssertionError(output.decode(errors="replace")) from None

    try:
        read_until(b"EXPERIMENT ")
        read_until(b"\n")  # the whole line, with the id
        experiment_id = int(output.split(b"EXPERIMENT ")[1].split()[0])
        deadline = time.monotonic() + 20
        while True:
            record = shared_daemon.client.stub.GetExperiment(
                pb.GetExperimentRequest(experiment_id=experiment_id)
            )
            if record.work_unit_state_counts.get(pb.JOB_STATE_RUNNING) == 2:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(pid, signal.SIGINT)
        read_until(b"[y/N]")
        os.write(fd, b"y\n")
        read_until(b"Cancelling experiment")
        units = shared_daemon.wait_all_final(experiment_id, 2)
        assert [u.status.state for u in units] == [pb.JOB_STATE_CANCELLED] * 2
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 130
    finally:
        os.close(fd)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_cli_cancel_and_logs_follow(shared_daemon: DaemonHandle, tmp_path: Path) -> None:
    job = make_executable(
        tmp_path / "ticker.sh", "#!/bin/sh\nfor i in 1 2 3; do echo tick-$i; sleep 0.2; done\n"
    )
    client = shared_daemon.client
    experiment = client.stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="follow"))
    )
    client.stub.AddWorkUnit(
        pb.AddWorkUnitRequest(
            experiment_id=experiment.id,
            request_id=f"follow-{experiment.id}",
            jobs=[
                pb.Job(
                    name="main",
                    artifact=pb.Artifact(local_binary=pb.LocalBinary(path=str(job))),
                    executor=pb.Executor(local=pb.LocalExecutor()),
                )
            ],
        )
    )
    env = shared_daemon.env()
    followed = run_cli(["logs", f"{experiment.id}/1/main", "-f"], env=env)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "tick-1\ntick-2\ntick-3\n"
    nothing = run_cli(["cancel", f"{experiment.id}"], env=env)
    assert nothing.returncode == 0
    assert "cancelling 0 work unit(s)" in nothing.stdout
    bad = run_cli(["cancel", "abc"], env=env)
    assert bad.returncode == 2
    assert "integers" in bad.stderr


def test_cli_launch_reports_a_refused_unit_in_one_line(
    shared_daemon: DaemonHandle, tmp_path: Path
) -> None:
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            """
            from xmanager import xm, xm_local
            with xm_local.create_experiment(experiment_title='refused') as experiment:
                [executable] = experiment.package([xm.Packageable(
                    xm.Container(image_path='trainer:latest'), xm_local.Kubernetes.Spec())])
                experiment.add(xm.Job(executable, xm_local.Kubernetes()))
            """
        )
    )
    result = run_cli(["launch", str(script)], env=shared_daemon.env())
    assert result.returncode == 1
    assert result.stderr.startswith("xmanager: FAILED_PRECONDITION:")
    assert "--kubeconfig" in result.stderr  # no cluster configured: what to set
    assert result.stderr.count("\n") == 1, result.stderr


def test_an_oversized_work_unit_is_refused_alone_with_what_to_do(
    shared_daemon: DaemonHandle, tmp_path: Path
) -> None:
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            """
            from xmanager import xm, xm_local
            with xm_local.create_experiment(experiment_title='oversized') as experiment:
                [executable] = experiment.package(
                    [xm.Packageable(xm.Binary(path='/bin/true'), xm_local.Local.Spec())])
                small = experiment.add(xm.Job(executable, xm_local.Local()))
                big = experiment.add(xm.Job(executable, xm_local.Local(), args=['x' * (17 << 20)]))
                print('small', small.result().work_unit_id, flush=True)
                big.result()
            """
        )
    )
    result = run_cli(["launch", str(script)], env=shared_daemon.env())
    assert result.returncode == 1
    assert "small 1" in result.stdout
    assert result.stderr.startswith("xmanager: RESOURCE_EXHAUSTED: the work unit takes 17,")
    assert "pass large data in files" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


_ECHO_SCRIPT = """
from xmanager import xm, xm_local
with xm_local.create_experiment(experiment_title='echo') as experiment:
    [executable] = experiment.package(
        [xm.Packageable(xm.Binary(path='/bin/sh'), xm_local.Local.Spec())])
    for i in (1, 2):
        experiment.add(xm.Job(
            executable, xm_local.Local(),
            args=['-c', f'echo start {i}; sleep 0.3; echo err {i} >&2; printf "no newline {i}"']))
    experiment.add(xm.Job(
        executable, xm_local.Local(experimental_stream_output=False), args=['-c', 'echo quiet']))
"""


@pytest.mark.parametrize("transport", ["unix socket", "tcp"])
def test_local_jobs_output_is_echoed_on_the_launch_scripts_stdout(
    state_dir: Path, tmp_path: Path, transport: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = DaemonHandle(state_dir, [f"--listen=127.0.0.1:{port}"])
    daemon.start()
    try:
        script = tmp_path / "echo.py"
        script.write_text(_ECHO_SCRIPT)
        env = daemon.env()
        if transport == "tcp":  # the daemon's files are not ours: StreamLogs it is
            env["XM_LAUNCHER_ADDRESS"] = f"127.0.0.1:{port}"
        result = run_script(script, env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        for i in (1, 2):
            unit_lines = [line for line in lines if line.startswith(f"[{i}/sh] ")]
            assert unit_lines[0] == f"[{i}/sh] start {i}"
            assert sorted(unit_lines[1:]) == [
                f"[{i}/sh] err {i}",
                f"[{i}/sh] no newline {i}",
            ]
        assert "quiet" not in result.stdout
    finally:
        daemon.stop()
