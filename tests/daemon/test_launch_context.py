"""Local binary jobs run where the launch script runs, with its environment (XManager's
semantics), which the daemon keeps apart and never hands back."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import grpc
import pytest

from tests.support.daemon import (
    DaemonHandle,
    add_work_units,
    list_work_units,
    local_job,
    make_executable,
    python_script,
    run_cli,
    run_script,
)
from xmanager.launcher import launch_context
from xmanager.launcher.v1 import launcher_pb2 as pb

SECRET = "s3cr3t-token-value"

# Prints what the job saw as JSON.
_PROBE = """
import json, os
print(json.dumps({"cwd": os.getcwd(), "env": dict(os.environ)}))
"""


def _launch_script(tmp_path: Path, probe: Path, *, clean: bool = False, units: int = 1) -> Path:
    workdir = tmp_path / "project"
    (workdir / "scripts").mkdir(parents=True)
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os
            from xmanager import xm, xm_local

            os.chdir({str(workdir)!r})
            os.environ["TRACKER_API_KEY"] = {SECRET!r}
            os.environ["CUDA_VISIBLE_DEVICES"] = "3"
            os.environ["OVERRIDDEN"] = "from the shell"
            with xm_local.create_experiment(experiment_title="context") as experiment:
                [executable] = experiment.package([
                    xm.binary(
                        path={str(probe)!r},
                        env_vars={{"OVERRIDDEN": "by the binary"}},
                        executor_spec=xm_local.Local.Spec(),
                    )
                ])
                for i in range({units}):
                    experiment.add(xm.Job(
                        executable,
                        xm_local.Local(clean_environment={clean}),
                        env_vars={{"PER_JOB": str(i)}},
                    ))
            print("EXPERIMENT", experiment.experiment_id)
            """
        )
    )
    return script


def _seen(daemon: DaemonHandle, experiment_id: int, work_unit_id: int = 1) -> dict[str, object]:
    chunks = daemon.client.stub.StreamLogs(
        pb.StreamLogsRequest(experiment_id=experiment_id, work_unit_id=work_unit_id)
    )
    return dict(json.loads(b"".join(chunk.data for chunk in chunks)))


def _experiment_id(stdout: str) -> int:
    return int(stdout.rsplit("EXPERIMENT ", 1)[1].split(maxsplit=1)[0])


def test_a_local_binary_runs_in_the_launch_scripts_directory_with_its_environment(
    daemon: DaemonHandle, tmp_path: Path
) -> None:
    probe = python_script(tmp_path / "probe.py", _PROBE)
    result = run_script(_launch_script(tmp_path, probe, units=3), daemon.env())
    assert result.returncode == 0, result.stderr
    experiment_id = _experiment_id(result.stdout)
    daemon.wait_all_final(experiment_id, 3)
    seen = _seen(daemon, experiment_id, 2)
    env = seen["env"]
    assert isinstance(env, dict)
    assert seen["cwd"] == str(tmp_path / "project")
    assert env["TRACKER_API_KEY"] == SECRET
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert env["OVERRIDDEN"] == "by the binary"  # the executable's env_vars win
    assert env["PER_JOB"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["XM_WORK_UNIT_ID"] == "2"
    # The secret is stored apart: no read RPC, and not `xmanager show`, gives it back.
    for unit in list_work_units(daemon.client, experiment_id):
        assert SECRET not in str(unit)
    shown = run_cli(["show", str(experiment_id)], daemon.env())
    assert shown.returncode == 0, shown.stderr
    assert SECRET not in shown.stdout + shown.stderr


def test_clean_environment_opts_out(daemon: DaemonHandle, tmp_path: Path) -> None:
    probe = python_script(tmp_path / "probe.py", _PROBE)
    result = run_script(_launch_script(tmp_path, probe, clean=True), daemon.env())
    assert result.returncode == 0, result.stderr
    experiment_id = _experiment_id(result.stdout)
    daemon.wait_all_final(experiment_id, 1)
    seen = _seen(daemon, experiment_id)
    env = seen["env"]
    assert isinstance(env, dict)
    assert "TRACKER_API_KEY" not in env
    assert seen["cwd"] != str(tmp_path / "project")
    assert env["OVERRIDDEN"] == "by the binary"


def test_a_queued_job_keeps_its_context_across_a_daemon_restart(
    state_dir: Path, tmp_path: Path
) -> None:
    daemon = DaemonHandle(state_dir, ["--max_running_jobs=1"])
    daemon.start()
    try:
        experiment = daemon.client.stub.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(title="queued"))
        )
        blocker = python_script(tmp_path / "block.py", "import time; time.sleep(2)\n")
        probe = python_script(tmp_path / "probe.py", _PROBE)
        context = pb.LaunchContext(working_directory=str(tmp_path), env={"QUEUED_VAR": "kept"})
        stub = daemon.client.stub
        stub.AddWorkUnit(
            pb.AddWorkUnitRequest(
                experiment_id=experiment.id, request_id="a", jobs=[local_job("main", blocker)]
            )
        )
        stub.AddWorkUnit(
            pb.AddWorkUnitRequest(
                experiment_id=experiment.id,
                request_id="b",
                jobs=[local_job("main", probe)],
                launch_context=context,
            )
        )
        daemon.kill()
        daemon.start()
        daemon.wait_all_final(experiment.id, 2, timeout=60)
        seen = _seen(daemon, experiment.id, 2)
        assert seen["cwd"] == str(tmp_path)
        assert isinstance(seen["env"], dict)
        assert seen["env"]["QUEUED_VAR"] == "kept"
    finally:
        daemon.stop()


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"launch_context_digest": "0" * 64}, "does not know"),
        ({"launch_context_digest": "nothex"}, "64 lowercase hex"),
        (
            {
                "launch_context": pb.LaunchContext(working_directory="/tmp", env={"A": "1"}),
                "launch_context_digest": "1" * 64,
            },
            "is not the digest",
        ),
        ({"launch_context": pb.LaunchContext(working_directory="relative")}, "absolute path"),
        ({"launch_context": pb.LaunchContext(working_directory="/", env={"A": "x\0"})}, "NUL"),
    ],
)
def test_bad_launch_contexts_are_refused(
    daemon: DaemonHandle, request_fields: dict[str, object], message: str
) -> None:
    experiment = daemon.client.stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="bad context"))
    )
    with pytest.raises(grpc.RpcError) as refused:
        daemon.client.stub.AddWorkUnit(
            pb.AddWorkUnitRequest(
                experiment_id=experiment.id,
                request_id="x",
                jobs=[local_job("main", sys.executable)],
                **request_fields,  # type: ignore[arg-type]
            )
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (refused.value.details() or "")
    assert not list_work_units(daemon.client, experiment.id)


def test_the_digest_is_canonical() -> None:
    a = pb.LaunchContext(working_directory="/w", env={"A": "1", "B": "2"})
    b = pb.LaunchContext(working_directory="/w", env={"B": "2", "A": "1"})
    assert launch_context.digest(a) == launch_context.digest(b)
    assert launch_context.digest(a) != launch_context.digest(
        pb.LaunchContext(working_directory="/w")
    )


def test_each_job_gets_its_own_context_among_many(daemon: DaemonHandle, tmp_path: Path) -> None:
    # The supervisor is given each launch context once and keeps the 64 most recently used:
    # 70 contexts, then the first ones again after it was told to forget them.
    probe = make_executable(tmp_path / "probe.sh", '#!/bin/sh\necho "marker=$MARKER"\n')
    experiment = daemon.client.stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="many contexts"))
    ).id
    contexts = [
        pb.LaunchContext(working_directory=str(tmp_path), env={"MARKER": str(i)}) for i in range(70)
    ]
    order = [*range(70), 0, 69, 1]
    results = add_work_units(
        daemon.client,
        (
            pb.AddWorkUnitRequest(
                experiment_id=experiment,
                request_id=f"unit-{n}",
                jobs=[local_job("main", probe)],
                launch_context=contexts[i],
                launch_context_digest=launch_context.digest(contexts[i]),
            )
            for n, i in enumerate(order)
        ),
    )
    assert not [result.error_message for result in results if result.error_code]
    daemon.wait_all_final(experiment, len(order))
    for work_unit_id, i in enumerate(order, start=1):
        chunks = daemon.client.stub.StreamLogs(
            pb.StreamLogsRequest(experiment_id=experiment, work_unit_id=work_unit_id)
        )
        assert b"".join(chunk.data for chunk in chunks) == f"marker={i}\n".encode()
