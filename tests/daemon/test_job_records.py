"""Finding a job's processes from its records when its supervisor is gone."""

from __future__ import annotations

import os
import signal
import subprocess

from launcher_server.backends.local import records
from launcher_server.jobs import JobKey
from xmanager.launcher import contract


def test_a_job_started_but_not_recorded_is_found_by_its_group_and_environment() -> None:
    # The supervisor died between spawning the job and recording its pid: the job is the
    # process group leader whose environment names it, started at the "starting" record.
    key = JobKey(experiment_id=7, work_unit_id=3, job_name="learner")
    env = {
        **os.environ,
        contract.EXPERIMENT_ID_ENV: "7",
        contract.WORK_UNIT_ID_ENV: "3",
        contract.JOB_NAME_ENV: "learner",
    }
    starting = records.Started(
        supervisor_pid=0, supervisor_ticks=0, pid=0, start_time=records.now()
    )
    job = subprocess.Popen(["sleep", "60"], env=env, process_group=0)
    # The same environment in a process that leads no group (it inherited the variables): not
    # taken for the job. Another job's group is left alone too.
    child = subprocess.Popen(["sleep", "60"], env=env)
    other_job = subprocess.Popen(
        ["sleep", "60"], env={**env, contract.JOB_NAME_ENV: "actor"}, process_group=0
    )
    try:
        assert records.kill_unrecorded_job(key, starting)
        assert job.wait(timeout=10) == -signal.SIGKILL
        assert child.poll() is None
        assert other_job.poll() is None
    finally:
        for process in (job, child, other_job):
            process.kill()
            process.wait()


def test_nothing_is_killed_when_no_process_matches() -> None:
    key = JobKey(experiment_id=7, work_unit_id=4, job_name="learner")
    starting = records.Started(
        supervisor_pid=0, supervisor_ticks=0, pid=0, start_time=records.now()
    )
    assert not records.kill_unrecorded_job(key, starting)
