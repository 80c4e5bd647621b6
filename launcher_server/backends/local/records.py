"""What a job supervisor records on disk, and how the daemon reads it back.

A job directory holds:

    started.json   {supervisor_pid, supervisor_ticks, pid, start_time, control}
                   written by the supervisor once the job runs
    exit.json      {exit_code, signal, end_time, cancelled, reason, start_time}
                   written by the supervisor once the job ended (or could not start)
    cancel.json    {grace_seconds, ...}  written by the daemon to ask for a stop
    stdout.log, stderr.log, output.log, truncated: the job's logs (see launcher_server.job_dirs)
    workdir/       the job's working directory

exit.json and cancel.json are written atomically (a temporary file renamed over the final
name), so a reader sees either nothing or a complete record, whenever the writer dies;
started.json is written in place, and a reader takes a partly written one for "not yet".
These files are the truth about a local job: the store is brought in line with them after a
daemon restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import signal
from pathlib import Path
from typing import Any

from launcher_server.jobs import JobKey, JobObservation
from xmanager.launcher import contract
from xmanager.launcher.v1 import launcher_pb2 as pb

STARTED = "started.json"
EXITED = "exit.json"
CANCEL = "cancel.json"
WORKDIR = "workdir"


@dataclasses.dataclass(frozen=True)
class Started:
    supervisor_pid: int
    # Start time of the supervisor in clock ticks since boot (/proc/PID/stat field 22): with
    # the pid, it tells a live supervisor from an unrelated process that reused its pid.
    supervisor_ticks: int
    pid: int
    start_time: str
    # The supervisor's control socket (cancel requests).
    control: str = ""


@dataclasses.dataclass(frozen=True)
class Exited:
    exit_code: int | None
    signal: int | None
    end_time: str
    cancelled: bool = False
    reason: str = ""
    # When the job started; empty when it never did.
    start_time: str = ""

    @property
    def shell_exit_code(self) -> int | None:
        """The exit code, or 128 + N for death by signal N, as shells report it; None when the
        job never ran."""
        if self.exit_code is not None:
            return self.exit_code
        if self.signal is not None:
            return 128 + self.signal
        return None

    def describe(self) -> str:
        if self.reason:
            return self.reason
        if self.signal:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = "unknown signal"
            return f"killed by signal {self.signal} ({name})"
        return f"exited with code {self.exit_code}"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


def write_atomic(path: Path | str, content: dict[str, Any]) -> None:
    """Writes a JSON record that readers see whole or not at all (raw calls: it is hot)."""
    path = os.fspath(path)
    directory, _, name = path.rpartition("/")
    temporary = f"{directory}/.{name}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json.dumps(content).encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def write_plain(path: str, content: dict[str, Any]) -> None:
    """Writes a JSON record in place: cheaper than `write_atomic`, for records whose readers
    take a missing or partly written file for "not yet" (started.json: the daemon also gets
    its content in the supervisor's notification)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json.dumps(content).encode())
    finally:
        os.close(fd)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_started(job_dir: Path) -> Started | None:
    data = _read(job_dir / STARTED)
    return Started(**data) if data is not None else None


def read_exited(job_dir: Path) -> Exited | None:
    data = _read(job_dir / EXITED)
    return Exited(**data) if data is not None else None


def read_cancel_grace(job_dir: Path) -> float | None:
    data = _read(job_dir / CANCEL)
    if data is None:
        return None
    try:
        grace = float(data.get("grace_seconds", 0))
    except (TypeError, ValueError):
        return 0.0
    # Whatever the file says, a timer the supervisor can hold: finite and not negative.
    return grace if math.isfinite(grace) and grace >= 0 else 0.0


def process_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if it does not exist."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        stat = os.read(fd, 4096)
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None  # a zombie has finished
    return int(fields[19])


def supervisor_alive(started: Started) -> bool:
    return process_ticks(started.supervisor_pid) == started.supervisor_ticks


def kill_orphaned_job(started: Started) -> None:
    """SIGKILLs the process group of a job whose supervisor vanished, so nothing is orphaned.

    Only if the group's leader is still the job's process: the process with the job's pid must
    have started when the record says the job did (a later process reusing the pid did not).
    """
    if started.pid <= 0:
        return  # it was being started: see kill_unrecorded_job
    ticks = process_ticks(started.pid)
    if ticks is None:
        return
    started_at = _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    if abs(started_at - parse_time(started.start_time).timestamp()) > _START_TOLERANCE_SECONDS:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(started.pid, signal.SIGKILL)


def kill_unrecorded_job(key: JobKey, started: Started) -> bool:
    """SIGKILLs the process group of a job whose supervisor died between spawning it and
    recording its pid; True when one was found.

    The job is found by what it was started with: a process group leader whose environment names
    the job (XM_EXPERIMENT_ID, XM_WORK_UNIT_ID, XM_JOB_NAME) and which started within moments
    of the supervisor's "starting" record. Rare (a window of microseconds), so a scan is fine.
    """
    wanted = {
        f"{contract.EXPERIMENT_ID_ENV}={key.experiment_id}".encode(),
        f"{contract.WORK_UNIT_ID_ENV}={key.work_unit_id}".encode(),
        f"{contract.JOB_NAME_ENV}={key.job_name}".encode(),
    }
    since = parse_time(started.start_time).timestamp()
    boot, tick = _boot_time(), os.sysconf("SC_CLK_TCK")
    found = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.getpgid(pid) != pid:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = set(f.read().split(b"\0"))
        except (OSError, ProcessLookupError):
            continue
        ticks = process_ticks(pid)
        if not wanted <= environ or ticks is None:
            continue
        started_at = boot + ticks / tick
        if since - _START_TOLERANCE_SECONDS <= started_at <= since + _START_TOLERANCE_SECONDS:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                found = True
    return found


# How far the kernel's start time of a process and the supervisor's record of it may differ.
_START_TOLERANCE_SECONDS = 2.0


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise RuntimeError("/proc/stat has no btime")


def final_observation(
    key: JobKey, exited: Exited, *, start_time: datetime.datetime | None = None
) -> JobObservation:
    """What an exit record says of a job's end (its own start time unless given one)."""
    if exited.cancelled:
        state = pb.JOB_STATE_CANCELLED
    elif exited.exit_code == 0:
        state = pb.JOB_STATE_SUCCEEDED
    else:
        state = pb.JOB_STATE_FAILED
    if start_time is None and exited.start_time:
        start_time = parse_time(exited.start_time)
    return JobObservation(
        key,
        state,
        native_state="signaled" if exited.signal else "exited",
        reason=exited.describe() if state != pb.JOB_STATE_SUCCEEDED else "",
        exit_code=exited.shell_exit_code,
        start_time=start_time,
        end_time=parse_time(exited.end_time),
    )
