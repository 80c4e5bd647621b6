"""Container jobs on the Local executor end to end: real daemons, real sockets, Docker Engine."""

from __future__ import annotations

import json
import socket
import textwrap
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.containers.conftest import (
    ImageSet,
    add_unit,
    container_job,
    create_experiment,
    job_file,
    leftovers,
    remove_leftovers,
    wait_job,
    wait_no_leftovers,
)
from tests.support.daemon import TRICKY_VALUES, DaemonHandle, list_work_units, run_cli
from xmanager.launcher.v1 import launcher_pb2 as pb

pytestmark = pytest.mark.docker


def _launch(daemon: DaemonHandle, script: Path) -> tuple[int, str]:
    result = run_cli(["launch", str(script)], env=daemon.env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for line in output.splitlines():
        if line.startswith("EXPERIMENT "):
            return int(line.split()[1]), output
    raise AssertionError(f"no EXPERIMENT line in:\n{output}")


def test_container_job_succeeds_and_its_output_lands_in_the_job_logs(
    daemon: DaemonHandle, test_images: ImageSet, docker_client: Any, tmp_path: Path
) -> None:
    (tmp_path / "image.tar").symlink_to(test_images.sh)
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            """
            from xmanager import xm, xm_local
            with xm_local.create_experiment(experiment_title='containers') as experiment:
                [executable] = experiment.package([xm.Packageable(
                    executable_spec=xm.Container(image_path='image.tar'),
                    executor_spec=xm_local.Local.Spec())])
                experiment.add(xm.Job(
                    executable=executable,
                    executor=xm_local.Local(),
                    args=['sh', '-c', 'echo "hello from $XM_JOB_NAME"; echo oops >&2'],
                ))
            print('EXPERIMENT', experiment.experiment_id)
            # After the block, as XManager's launch scripts do.
            unit = experiment.work_units[1].wait_until_complete().result()
            print('WAITED AFTER THE BLOCK', unit.get_status().is_completed)
            """
        )
    )
    experiment_id, launched = _launch(daemon, script)
    assert "WAITED AFTER THE BLOCK True" in launched
    (unit,) = list_work_units(daemon.client, experiment_id)
    (job,) = unit.jobs
    assert job.status.state == pb.JOB_STATE_SUCCEEDED, job.status
    assert job.status.has_exit_code
    assert job.status.exit_code == 0
    assert job.backend_handle.startswith("xm-")
    assert job.artifact.oci_image.digest  # the client read it from the tarball
    assert job_file(daemon, experiment_id, 1, job.name, "stdout.log") == (
        f"hello from {job.name}\n".encode()
    )
    assert job_file(daemon, experiment_id, 1, job.name, "stderr.log") == b"oops\n"
    output = job_file(daemon, experiment_id, 1, job.name, "output.log")
    assert sorted(output.splitlines()) == sorted([f"hello from {job.name}".encode(), b"oops"])
    logs = run_cli(["logs", f"{experiment_id}/1"], env=daemon.env())
    assert logs.returncode == 0, logs.stderr
    assert f"hello from {job.name}" in logs.stdout
    wait_no_leftovers(docker_client, daemon.state.root)


def test_exit_code_propagates(
    daemon: DaemonHandle, test_images: ImageSet, docker_client: Any
) -> None:
    experiment_id = create_experiment(daemon, "exit codes")
    for code in (0, 7, 137):
        add_unit(
            daemon,
            experiment_id,
            container_job("main", tarball=test_images.sh, args=["sh", "-c", f"exit {code}"]),
        )
    statuses = [wait_job(daemon, experiment_id, wu, "main").status for wu in (1, 2, 3)]
    assert [s.state for s in statuses] == [
        pb.JOB_STATE_SUCCEEDED,
        pb.JOB_STATE_FAILED,
        pb.JOB_STATE_FAILED,
    ]
    assert [s.exit_code for s in statuses] == [0, 7, 137]
    assert all(s.has_exit_code for s in statuses)
    assert statuses[1].reason == "exited with code 7"
    wait_no_leftovers(docker_client, daemon.state.root)


def test_args_and_env_arrive_byte_for_byte(
    daemon: DaemonHandle, test_images: ImageSet, tmp_path: Path
) -> None:
    """Through a launch script: flags and positional args appended to the image's entrypoint."""
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from xmanager import xm, xm_local
            VALUES = {TRICKY_VALUES!r}
            with xm_local.create_experiment(experiment_title='args') as experiment:
                [executable] = experiment.package([xm.Packageable(
                    executable_spec=xm.Container(image_path={str(test_images.argv)!r}),
                    executor_spec=xm_local.Local.Spec())])
                experiment.add(xm.Job(
                    executable=executable,
                    executor=xm_local.Local(),
                    args={{'value': VALUES, 'flag': True, 'off': False}},
                    env_vars={{'TRICKY': VALUES[5] + VALUES[4]}},
                ))
                experiment.add(
                    xm.Job(executable=executable, executor=xm_local.Local(), args=VALUES))
            print('EXPERIMENT', experiment.experiment_id)
            """
        )
    )
    experiment_id, _ = _launch(daemon, script)
    units = list_work_units(daemon.client, experiment_id)
    assert [u.status.state for u in units] == [pb.JOB_STATE_SUCCEEDED] * 2
    name = units[0].jobs[0].name

    def argv(work_unit_id: int) -> list[str]:
        data = job_file(daemon, experiment_id, work_unit_id, name, "stdout.log")
        assert data.endswith(b"\0")
        return [token.decode() for token in data[:-1].split(b"\0")]

    assert argv(1) == [*(f"--value={v}" for v in TRICKY_VALUES), "--flag", "--nooff"]
    assert job_file(daemon, experiment_id, 1, name, "stderr.log").decode() == (
        TRICKY_VALUES[5] + TRICKY_VALUES[4]
    )
    assert argv(2) == TRICKY_VALUES


def test_job_group_peers_reach_each_other_by_job_name(
    daemon: DaemonHandle, test_images: ImageSet, docker_client: Any
) -> None:
    """Two work units, each a server and a client: each client reaches its own unit's server."""
    server = ["sh", "-c", 'echo "wu-$XM_WORK_UNIT_ID" | nc -l -p 8080']
    client = [
        "sh",
        "-c",
        'for i in $(seq 100); do out=$(nc server 8080 </dev/null) && [ -n "$out" ] && break;'
        ' sleep 0.1; done; echo "got $out"; [ "$out" = "wu-$XM_WORK_UNIT_ID" ]',
    ]
    experiment_id = create_experiment(daemon, "job group")
    for _ in range(2):
        add_unit(
            daemon,
            experiment_id,
            container_job("server", tarball=test_images.sh, args=server),
            container_job("client", tarball=test_images.sh, args=client),
        )
    units = daemon.wait_all_final(experiment_id, 2)
    for unit in units:
        jobs = {job.name: job.status for job in unit.jobs}
        assert jobs["client"].state == pb.JOB_STATE_SUCCEEDED, (unit.work_unit_id, jobs)
        assert jobs["server"].state == pb.JOB_STATE_SUCCEEDED, (unit.work_unit_id, jobs)
        got = job_file(daemon, experiment_id, unit.work_unit_id, "client", "stdout.log")
        assert got == f"got wu-{unit.work_unit_id}\n".encode()
    # The experiment's network went with its last container.
    wait_no_leftovers(docker_client, daemon.state.root)


def test_cancel_stops_the_container_within_the_grace_period(
    daemon: DaemonHandle, test_images: ImageSet, docker_client: Any
) -> None:
    experiment_id = create_experiment(daemon, "cancel")
    # PID 1 of a container ignores SIGTERM unless it handles it: this one needs the SIGKILL.
    add_unit(
        daemon,
        experiment_id,
        container_job("stubborn", tarball=test_images.sh, args=["sh", "-c", "sleep 300"]),
    )
    graceful = 'trap "echo got TERM; exit 0" TERM; echo ready; while :; do sleep 0.1; done'
    add_unit(
        daemon,
        experiment_id,
        container_job("graceful", tarball=test_images.sh, args=["sh", "-c", graceful]),
    )
    wait_job(daemon, experiment_id, 1, "stubborn", {pb.JOB_STATE_RUNNING})
    wait_job(daemon, experiment_id, 2, "graceful", {pb.JOB_STATE_RUNNING})
    deadline = time.monotonic() + 10
    while b"ready" not in job_file(daemon, experiment_id, 2, "graceful", "stdout.log"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    for work_unit_id in (1, 2):
        daemon.client.stub.CancelWorkUnit(
            pb.CancelWorkUnitRequest(
                experiment_id=experiment_id,
                work_unit_id=work_unit_id,
                grace_period_seconds=2,
                reason="enough",
            )
        )
    graceful_status = wait_job(daemon, experiment_id, 2, "graceful").status
    graceful_seconds = time.monotonic() - started
    stubborn_status = wait_job(daemon, experiment_id, 1, "stubborn").status
    stubborn_seconds = time.monotonic() - started
    assert graceful_status.state == pb.JOB_STATE_CANCELLED, graceful_status
    assert graceful_seconds < 2, graceful_seconds
    assert job_file(daemon, experiment_id, 2, "graceful", "stdout.log") == b"ready\ngot TERM\n"
    assert stubborn_status.state == pb.JOB_STATE_CANCELLED, stubborn_status
    assert stubborn_status.exit_code == 137  # SIGKILL after the grace period
    assert "stopped on request" in stubborn_status.reason
    assert 2 <= stubborn_seconds < 2 + 5, stubborn_seconds
    wait_no_leftovers(docker_client, daemon.state.root)


def test_a_tarball_is_loaded_once_for_many_work_units(
    daemon: DaemonHandle, test_images: ImageSet, docker_client: Any
) -> None:
    tarball, image_id = test_images.fresh(fmt="oci")
    since = int(time.time()) - 1
    experiment_id = create_experiment(daemon, "sweep")
    request = pb.AddWorkUnitRequest(experiment_id=experiment_id)
    for i in range(30):
        request.request_id = f"sweep-{i}"
        request.ClearField("jobs")
        request.jobs.append(container_job("main", tarball=tarball, args=["true"]))
        daemon.client.stub.AddWorkUnit(request)
    units = daemon.wait_all_final(experiment_id, 30, timeout=120)
    assert {u.status.state for u in units} == {pb.JOB_STATE_SUCCEEDED}
    events = docker_client.events(
        since=since,
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "image", "event": "load"},
    )
    loads = [event for event in events if event.get("id") == image_id]
    assert len(loads) == 1, loads
    # Its only layer is the one every test image shares: the engine was not sent it again.
    log = daemon.state.log.read_text()
    assert f"loaded image {image_id} from {tarball}" in log
    assert "(0 of 1 layers sent)" in log
    wait_no_leftovers(docker_client, daemon.state.root)


def test_daemon_sigkill_while_containers_run_loses_nothing(
    daemon: DaemonHandle, test_images: ImageSet, docker_client: Any
) -> None:
    """Kill -9 the daemon mid-run; the restarted one reports every job's real outcome and copies
    every line of output exactly once."""
    experiment_id = create_experiment(daemon, "kill")
    lines = {wu: 5 * (1 + wu % 3) for wu in range(1, 7)}  # 1 to 3 seconds of output
    for wu in range(1, 7):
        body = (
            f"i=0; while [ $i -lt {lines[wu]} ]; do echo line $i; i=$((i+1)); sleep 0.2; done;"
            f" exit {wu % 3}"
        )
        add_unit(
            daemon,
            experiment_id,
            container_job("main", tarball=test_images.sh, args=["sh", "-c", body]),
        )
    for wu in range(1, 7):
        wait_job(daemon, experiment_id, wu, "main", {pb.JOB_STATE_RUNNING})
    time.sleep(0.5)
    daemon.kill()
    daemon.client.close()
    time.sleep(1.5)  # some containers end while no daemon runs, others keep running
    daemon.start()
    units = daemon.wait_all_final(experiment_id, 6)
    for unit in units:
        wu = unit.work_unit_id
        (status,) = [job.status for job in unit.jobs]
        expected = pb.JOB_STATE_SUCCEEDED if wu % 3 == 0 else pb.JOB_STATE_FAILED
        assert status.state == expected, (wu, status)
        assert status.exit_code == wu % 3, (wu, status)
        stdout = job_file(daemon, experiment_id, wu, "main", "stdout.log").decode()
        assert stdout == "".join(f"line {i}\n" for i in range(lines[wu])), (wu, stdout)
    wait_no_leftovers(docker_client, daemon.state.root)


def test_image_references_and_digests_are_checked(
    daemon: DaemonHandle, test_images: ImageSet, docker_client: Any
) -> None:
    tarball, image_id = test_images.fresh()
    docker_client.images.load(tarball.read_bytes())
    reference = f"xm-test/busybox:{image_id[7:19]}"
    docker_client.images.get(image_id).tag(reference)
    experiment_id = create_experiment(daemon, "references")
    add_unit(daemon, experiment_id, container_job("main", reference=reference, args=["true"]))
    missing = "xm-test/not-loaded:v1"
    add_unit(daemon, experiment_id, container_job("main", reference=missing, args=["true"]))
    wrong = "sha256:" + "0" * 64
    add_unit(
        daemon,
        experiment_id,
        container_job("main", tarball=test_images.sh, digest=wrong, args=["true"]),
    )
    found, not_found, changed = (
        wait_job(daemon, experiment_id, wu, "main").status for wu in (1, 2, 3)
    )
    assert found.state == pb.JOB_STATE_SUCCEEDED, found
    assert not_found.state == pb.JOB_STATE_FAILED
    assert f"image {missing} is not in Docker Engine; docker load it or build it with Bazel" in (
        not_found.reason
    )
    assert changed.state == pb.JOB_STATE_FAILED
    assert f"not {wrong}: it changed since it was packaged; package it again" in changed.reason
    wait_no_leftovers(docker_client, daemon.state.root)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_docker_options_ports_volumes_and_tty(
    daemon: DaemonHandle, test_images: ImageSet, docker_client: Any, tmp_path: Path
) -> None:
    port = _free_port()
    options = pb.DockerOptions(ports={8080: port}, volumes={str(tmp_path): "/data"})
    body = "echo written > /data/out.txt; echo served | nc -l -p 8080"
    experiment_id = create_experiment(daemon, "options")
    add_unit(
        daemon,
        experiment_id,
        container_job("main", tarball=test_images.sh, args=["sh", "-c", body], options=options),
    )
    wait_job(daemon, experiment_id, 1, "main", {pb.JOB_STATE_RUNNING})
    deadline = time.monotonic() + 20
    received = b""
    while received != b"served\n":
        assert time.monotonic() < deadline, received
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                received = conn.makefile("rb").read()
        except OSError:
            time.sleep(0.1)
    assert wait_job(daemon, experiment_id, 1, "main").status.state == pb.JOB_STATE_SUCCEEDED
    assert (tmp_path / "out.txt").read_text() == "written\n"

    tty = pb.DockerOptions(interactive=True)
    add_unit(
        daemon,
        experiment_id,
        container_job(
            "main", tarball=test_images.sh, args=["sh", "-c", "[ -t 1 ] && echo tty"], options=tty
        ),
    )
    assert wait_job(daemon, experiment_id, 2, "main").status.state == pb.JOB_STATE_SUCCEEDED
    assert job_file(daemon, experiment_id, 2, "main", "stdout.log") == b"tty\r\n"

    # Refused when added, by the container backend's check: nothing is recorded.
    bad = pb.DockerOptions(volumes={"relative/dir": "/data"})
    with pytest.raises(grpc.RpcError) as refused:
        add_unit(daemon, experiment_id, container_job("main", tarball=test_images.sh, options=bad))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "host path 'relative/dir' is not absolute" in (refused.value.details() or "")
    assert len(list_work_units(daemon.client, experiment_id)) == 2

    # The engine's socket and the state directory are not for jobs either.
    for host in ["/var/run/docker.sock", str(daemon.state.root)]:
        exposing = pb.DockerOptions(volumes={host: "/mnt"})
        job = container_job("main", tarball=test_images.sh, options=exposing)
        with pytest.raises(grpc.RpcError) as refused:
            add_unit(daemon, experiment_id, job)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "mount a narrower directory" in (refused.value.details() or "")
    assert len(list_work_units(daemon.client, experiment_id)) == 2
    wait_no_leftovers(docker_client, daemon.state.root)


def test_nothing_is_left_in_the_engine_after_the_daemon_stops(
    state_dir: Path, test_images: ImageSet, docker_client: Any
) -> None:
    """A running container survives its daemon (as processes do), and the next daemon finishes
    the job; once it has, no container or network of the instance remains."""
    daemon = DaemonHandle(state_dir, ["--grace_period_seconds=2"])
    daemon.start()
    try:
        experiment_id = create_experiment(daemon, "stop")
        add_unit(
            daemon,
            experiment_id,
            container_job("main", tarball=test_images.sh, args=["sh", "-c", "sleep 2; echo done"]),
        )
        wait_job(daemon, experiment_id, 1, "main", {pb.JOB_STATE_RUNNING})
        daemon.stop()
        containers, networks = leftovers(docker_client, state_dir)
        assert len(containers) == 1
        assert len(networks) == 1
        daemon.start()
        status = wait_job(daemon, experiment_id, 1, "main").status
        assert status.state == pb.JOB_STATE_SUCCEEDED, status
        assert job_file(daemon, experiment_id, 1, "main", "stdout.log") == b"done\n"
        wait_no_leftovers(docker_client, state_dir)
        record = json.loads(job_file(daemon, experiment_id, 1, "main", "exit.json").decode())
        assert record["exit_code"] == 0
    finally:
        daemon.stop()
        remove_leftovers(docker_client, state_dir)


def test_a_daemon_restarted_without_the_engine_keeps_jobs_until_it_is_back(
    daemon: DaemonHandle, test_images: ImageSet, docker_client: Any
) -> None:
    experiment_id = create_experiment(daemon, "engine away")
    add_unit(
        daemon,
        experiment_id,
        container_job("main", tarball=test_images.sh, args=["sh", "-c", "sleep 2; echo done"]),
    )
    wait_job(daemon, experiment_id, 1, "main", {pb.JOB_STATE_RUNNING})
    real_flags = list(daemon.flags)
    daemon.kill()
    daemon.client.close()
    daemon.flags = [*real_flags, "--docker_host=unix:///tmp/xm-no-docker-here.sock"]
    daemon.start()
    time.sleep(3)  # the container ends meanwhile; this daemon cannot know
    status = wait_job(daemon, experiment_id, 1, "main", {pb.JOB_STATE_RUNNING}).status
    assert "Docker Engine is not reachable" in status.reason, status
    daemon.stop()
    daemon.flags = real_flags
    daemon.start()
    status = wait_job(daemon, experiment_id, 1, "main").status
    assert status.state == pb.JOB_STATE_SUCCEEDED, status
    assert job_file(daemon, experiment_id, 1, "main", "stdout.log") == b"done\n"
    wait_no_leftovers(docker_client, daemon.state.root)
