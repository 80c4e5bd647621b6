"""The job supervisor: a small process that runs local jobs and records their outcomes, as
containerd's shim does for the containers of a pod.

The daemon starts a supervisor and hands it jobs over a pipe. For each job, the supervisor
starts the program in a process group of its own (so the job and everything it starts can be
signalled as a whole), copies its output into size-capped log files, waits for it,
kills whatever the job left behind in its group, records the outcome atomically in the job's
directory and notifies the daemon. It owes the daemon nothing: it runs in its own session and,
when the daemon stops or dies, goes on supervising the jobs it has until the last one ends, so
every outcome is recorded. The next daemon starts a supervisor of its own for new jobs and
reaches the old one only through the job directories and the old one's control socket.

One supervisor for many jobs is what lets the daemon start a thousand jobs a second: a Python
process per job (conmon's model) costs milliseconds of CPU each.

Protocol:
- stdin: messages, each a 4-byte big-endian length then a JSON object: a `Request`, or
  {"define_context": DIGEST, "env": {...}} (a launch script's environment, sent once; requests
  then name it by digest and carry only what they add to it), or {"forget_context": DIGEST}.
  End of file means the daemon is gone: finish the running jobs, then exit.
- control socket (datagrams; its path is in each job's started.json): {"cancel": JOB_DIR} stops
  a job: SIGTERM to its group, SIGKILL after the grace period its cancel.json names.
- notify socket (datagrams to the daemon): JSON lists of {"key", "event": "started" or
  "exited", "record"}; never blocking, queued while the daemon's socket is full. A start is
  announced 10 ms late, and not at all when the job has ended by then (its exit record has
  both times).
- SIGTERM to the supervisor cancels all its jobs, recording them, and then it exits.

    python -m launcher_server.backends.local.supervisor --run_dir=DIR
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import heapq
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from launcher_server.backends.local import records
from launcher_server.job_dirs import JobLogs

_READ_SIZE = 1 << 16
_HEADER = struct.Struct(">I")
# After a job's main process ends, how long its descendants may keep its pipes open.
_DRAIN_SECONDS = 1.0
# How long a start is announced late: a job that ends within it is announced once, by its end
# (a sweep of short jobs costs the daemon half the statuses to record).
_START_HOLD_SECONDS = 0.01
_DEFAULT_GRACE_SECONDS = 10.0
_MAX_WAIT_SECONDS = 3600.0
# Reset in every job: the supervisor ignores or handles these, a job must start with defaults.
_DEFAULT_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGPIPE,
    signal.SIGCHLD,
    signal.SIGXFSZ,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


@dataclasses.dataclass(frozen=True)
class Request:
    """One job to run: what the daemon writes to the supervisor's stdin."""

    key: list[Any]
    argv: list[str]
    # With `context`: what the job's environment adds to (or changes in) the context's.
    env: dict[str, str]
    job_dir: str
    log_cap: int
    # The working directory; empty: a private one in the job directory.
    cwd: str = ""
    # The digest of a launch context defined earlier on this supervisor's input.
    context: str = ""

    def to_json(self) -> bytes:
        return json.dumps(vars(self)).encode()


def define_context(digest: str, env: dict[str, str]) -> bytes:
    """The message that gives a supervisor a launch context's environment."""
    return json.dumps({"define_context": digest, "env": env}).encode()


def forget_context(digest: str) -> bytes:
    return json.dumps({"forget_context": digest}).encode()


def frame(body: bytes) -> bytes:
    """A message as it goes on the supervisor's input."""
    return _HEADER.pack(len(body)) + body


def notify_path(run_dir: Path) -> Path:
    """Where the daemon listens for the supervisors' datagrams."""
    return run_dir / "notify.sock"


def control_path(run_dir: Path, pid: int) -> Path:
    return run_dir / f"supervisor-{pid}.sock"


def accepting_path(run_dir: Path, pid: int) -> Path:
    """Present while the supervisor may still start jobs from its stdin: a new daemon waits for
    it to go before deciding that a job handed to an old supervisor never started."""
    return run_dir / f"supervisor-{pid}.accepting"


@dataclasses.dataclass
class _Job:
    request: Request
    job_dir: Path
    pid: int
    pidfd: int
    logs: JobLogs
    start_time: str
    pipes: dict[int, str]
    status: int | None = None
    cancelled: bool = False
    killed: bool = False
    kill_at: float | None = None
    drain_until: float | None = None


class Supervisor:
    def __init__(self, run_dir: Path) -> None:
        self._run_dir = run_dir
        self._notify = str(notify_path(run_dir))
        self._control_path = control_path(run_dir, os.getpid())
        self._selector = selectors.DefaultSelector()
        self._jobs: dict[int, _Job] = {}  # by pid
        self._by_dir: dict[str, _Job] = {}
        self._timers: list[tuple[float, int]] = []  # (deadline, pid)
        self._input = bytearray()
        self._input_open = True
        # Launch-context environments by digest, as the daemon defined them.
        self._contexts: dict[str, dict[str, str]] = {}
        self._stopping = False
        self._pid = os.getpid()
        self._ticks = records.process_ticks(self._pid) or 0
        self._control_address = str(self._control_path)
        self._devnull = os.open(os.devnull, os.O_RDONLY)
        # Notifications wait here until the daemon's socket takes them: a supervisor never
        # blocks on a busy daemon (a Unix datagram queue holds only a few messages).
        self._outbox: socket.socket | None = None
        self._pending: list[dict[str, Any]] = []
        # Starts not announced yet, by job key, in the order they are due (see _START_HOLD).
        self._held: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}
        self._waiting_to_send = False

    # -- the loop --------------------------------------------------------------------------

    def run(self, stdin: int) -> None:
        wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGTERM, lambda *_: None)  # handled through the wakeup fd
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self._control_path.unlink(missing_ok=True)
        accepting = accepting_path(self._run_dir, self._pid)
        accepting.write_text(f"{self._ticks}\n")
        control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        control.bind(str(self._control_path))
        os.set_blocking(stdin, False)
        self._selector.register(stdin, selectors.EVENT_READ, ("stdin", None))
        self._selector.register(control, selectors.EVENT_READ, ("control", None))
        self._selector.register(wakeup_r, selectors.EVENT_READ, ("wakeup", None))
        try:
            while self._input_open or self._jobs:
                requests = False
                for key, _ in self._selector.select(self._timeout()):
                    kind, job = key.data
                    if kind == "stdin":
                        requests = True
                    elif kind == "control":
                        self._control(control.recv(65536))
                    elif kind == "wakeup":
                        if signal.SIGTERM in os.read(wakeup_r, 512):
                            self._stop_all()
                    elif kind == "pidfd":
                        self._reap(job)
                    elif kind == "outbox":
                        pass  # writable again: flushed below
                    else:
                        self._copy(job, key.fd)
                self._run_timers()
                # Ends first, then starts: the daemon hands a finished job's slot to the next
                # one without waiting for this round of starts.
                self._flush()
                if requests:
                    self._read_requests(stdin)
                    self._flush()
        finally:
            accepting.unlink(missing_ok=True)
            control.close()
            self._control_path.unlink(missing_ok=True)

    def _timeout(self) -> float | None:
        deadlines = [self._timers[0][0]] if self._timers else []
        if self._held:
            deadlines.append(next(iter(self._held.values()))[0])
        if not deadlines:
            return None
        # Capped: select() fails on a timeout beyond a C int of milliseconds (24.8 days), and
        # a failing loop would lose every job; waking up early costs nothing.
        return min(_MAX_WAIT_SECONDS, max(0.0, min(deadlines) - time.monotonic()))

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, pid = heapq.heappop(self._timers)
            job = self._jobs.get(pid)
            if job is None:
                continue
            if job.status is None and job.kill_at is not None and job.kill_at <= now:
                job.killed = True
                _kill_group(job.pid, signal.SIGKILL)
            elif job.drain_until is not None and job.drain_until <= now:
                # Something that escaped the group holds the pipes: stop copying.
                self._finish(job)

    # -- requests --------------------------------------------------------------------------

    def _read_requests(self, stdin: int) -> None:
        try:
            data = os.read(stdin, _READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            # Every request before the end of input has been started or refused.
            self._input_open = False
            self._selector.unregister(stdin)
            accepting_path(self._run_dir, self._pid).unlink(missing_ok=True)
            return
        self._input += data
        while len(self._input) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._input)
            if len(self._input) < _HEADER.size + size:
                return
            message = json.loads(self._input[_HEADER.size : _HEADER.size + size])
            del self._input[: _HEADER.size + size]
            if "define_context" in message:
                self._contexts[message["define_context"]] = message["env"]
            elif "forget_context" in message:
                self._contexts.pop(message["forget_context"], None)
            else:
                self._take(Request(**message))

    def _take(self, request: Request) -> None:
        if self._stopping:
            self._refuse(request, "the supervisor is stopping")
        elif request.context and request.context not in self._contexts:
            # The daemon defines a context before the first request that names it.
            self._refuse(request, f"unknown launch context {request.context}", cancelled=False)
        else:
            self._start(request)

    def _control(self, data: bytes) -> None:
        try:
            job_dir = json.loads(data)["cancel"]
        except (ValueError, KeyError, TypeError):
            return
        job = self._by_dir.get(job_dir)
        if job is not None:
            self._begin_cancel(job)

    # -- a job's life ----------------------------------------------------------------------

    def _start(self, request: Request) -> None:
        job_dir = Path(request.job_dir)
        workdir = request.cwd or f"{request.job_dir}/{records.WORKDIR}"
        self._make_dirs(request.job_dir, "" if request.cwd else workdir)
        logs = JobLogs(job_dir, request.log_cap)
        started_path = f"{request.job_dir}/{records.STARTED}"
        # Written before the spawn (pid 0: "starting"): if this process dies before recording
        # the pid, a restarted daemon knows the job may have run and never starts it again.
        started = {  # a records.Started
            "supervisor_pid": self._pid,
            "supervisor_ticks": self._ticks,
            "pid": 0,
            "start_time": records.now(),
            "control": self._control_address,
        }
        records.write_plain(started_path, started)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            os.chdir(workdir)  # posix_spawn has no chdir action: the job inherits this one
            env = request.env
            if request.context:
                env = {**self._contexts[request.context], **env}
            pid = os.posix_spawn(
                request.argv[0],
                request.argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, self._devnull, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                # A process group of its own, in this process's session: on Linux each session
                # is a scheduling group (autogroup), and a sweep's thousand jobs as many groups
                # would take the CPU from the daemon and its clients (reads stalled 100 ms).
                setpgroup=0,
                setsigdef=_DEFAULT_SIGNALS,
                setsigmask=(),
            )
        except (OSError, ValueError) as error:  # ValueError: an argument posix_spawn refuses
            for fd in (out_r, err_r):
                os.close(fd)
            logs.write("stderr", f"launcher: cannot execute {request.argv[0]}: {error}\n".encode())
            logs.close()
            self._record_exit(
                request, records.Exited(127, None, records.now(), reason=f"cannot execute: {error}")
            )
            return
        finally:
            os.chdir("/")
            os.close(out_w)
            os.close(err_w)
        start_time = records.now()
        pidfd = os.pidfd_open(pid)
        job = _Job(
            request,
            job_dir,
            pid,
            pidfd,
            logs,
            start_time,
            pipes={out_r: "stdout", err_r: "stderr"},
        )
        self._jobs[pid] = job
        self._by_dir[request.job_dir] = job
        for fd in job.pipes:
            self._selector.register(fd, selectors.EVENT_READ, ("pipe", job))
        self._selector.register(pidfd, selectors.EVENT_READ, ("pidfd", job))
        started.update(pid=pid, start_time=start_time)
        records.write_plain(started_path, started)
        self._send(request.key, "started", started)
        # A cancel that came before the job ran (its cancel.json was there already).
        if self._stopping or os.path.exists(f"{request.job_dir}/{records.CANCEL}"):
            self._begin_cancel(job)

    def _make_dirs(self, job_dir: str, workdir: str) -> None:
        """Creates the job's directory and working directory, and their parents when missing:
        the experiment's is usually there already, the work unit's often not (a sweep's units
        have one job each), so try the deepest first, then one level up."""
        try:
            os.mkdir(job_dir)
        except FileExistsError:
            pass
        except FileNotFoundError:
            try:
                os.mkdir(os.path.dirname(job_dir))
            except FileExistsError:
                pass
            except FileNotFoundError:
                os.makedirs(os.path.dirname(job_dir), exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(job_dir)
        if workdir:
            with contextlib.suppress(FileExistsError):
                os.mkdir(workdir)

    def _copy(self, job: _Job, fd: int) -> None:
        data = os.read(fd, _READ_SIZE)
        if data:
            job.logs.write(job.pipes[fd], data)
            return
        self._close_pipe(job, fd)
        if job.status is not None and not job.pipes:
            self._finish(job)

    def _close_pipe(self, job: _Job, fd: int) -> None:
        self._selector.unregister(fd)
        os.close(fd)
        del job.pipes[fd]

    def _reap(self, job: _Job) -> None:
        self._selector.unregister(job.pidfd)
        os.close(job.pidfd)
        _, job.status = os.waitpid(job.pid, 0)
        # Whatever the job started and left in its group goes with it.
        _kill_group(job.pid, signal.SIGKILL)
        if not job.pipes:
            self._finish(job)
            return
        job.drain_until = time.monotonic() + _DRAIN_SECONDS
        heapq.heappush(self._timers, (job.drain_until, job.pid))

    def _begin_cancel(self, job: _Job) -> None:
        if job.cancelled or job.status is not None:
            return
        grace = records.read_cancel_grace(job.job_dir)
        job.cancelled = True
        job.kill_at = time.monotonic() + (grace if grace is not None else _DEFAULT_GRACE_SECONDS)
        heapq.heappush(self._timers, (job.kill_at, job.pid))
        _kill_group(job.pid, signal.SIGTERM)

    def _stop_all(self) -> None:
        self._stopping = True
        for job in list(self._jobs.values()):
            self._begin_cancel(job)

    def _finish(self, job: _Job) -> None:
        for fd in list(job.pipes):
            self._close_pipe(job, fd)
        job.logs.close()
        del self._jobs[job.pid]
        self._by_dir.pop(job.request.job_dir, None)
        assert job.status is not None
        code = os.waitstatus_to_exitcode(job.status)
        exited = records.Exited(
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            end_time=records.now(),
            cancelled=job.cancelled,
            start_time=job.start_time,
        )
        self._record_exit(job.request, exited)

    def _refuse(self, request: Request, reason: str, *, cancelled: bool = True) -> None:
        Path(request.job_dir).mkdir(parents=True, exist_ok=True)
        self._record_exit(
            request, records.Exited(None, None, records.now(), cancelled=cancelled, reason=reason)
        )

    def _record_exit(self, request: Request, exited: records.Exited) -> None:
        record = dataclasses.asdict(exited)
        records.write_atomic(f"{request.job_dir}/{records.EXITED}", record)
        self._send(request.key, "exited", record)

    def _send(self, key: list[Any], event: str, record: dict[str, Any]) -> None:
        message = {"key": key, "event": event, "record": record}
        if event == "started":
            self._held[tuple(key)] = (time.monotonic() + _START_HOLD_SECONDS, message)
            return
        # A job that ended before its start was announced: its end alone says both (the exit
        # record has the start time), and spares the daemon a status it never saw.
        if self._held.pop(tuple(key), None) is None and any(
            m["event"] == "started" for m in self._pending
        ):
            self._pending = [
                m for m in self._pending if not (m["key"] == key and m["event"] == "started")
            ]
        self._pending.append(message)

    def _flush(self) -> None:
        """Sends the pending notifications, many per datagram, without ever blocking.

        With no daemon listening they are dropped: the records are the truth, and the next
        daemon reads them.
        """
        now = time.monotonic()
        while self._held:
            key, (due, message) = next(iter(self._held.items()))
            if due > now:
                break
            del self._held[key]
            self._pending.append(message)
        while self._pending:
            if self._outbox is None and not self._connect():
                self._pending.clear()
                return
            assert self._outbox is not None
            count, data = _datagram(self._pending)
            try:
                self._outbox.send(data)
            except BlockingIOError:
                self._wait_to_send(True)
                return
            except OSError:  # the daemon went away (or was replaced): try its successor once
                self._disconnect()
                continue
            del self._pending[:count]
        self._wait_to_send(False)

    def _connect(self) -> bool:
        outbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        outbox.setblocking(False)
        try:
            outbox.connect(self._notify)
        except OSError:
            outbox.close()
            return False
        self._outbox = outbox
        return True

    def _disconnect(self) -> None:
        self._wait_to_send(False)
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None
        if not self._connect():
            self._pending.clear()

    def _wait_to_send(self, waiting: bool) -> None:
        if waiting == self._waiting_to_send or self._outbox is None:
            return
        if waiting:
            self._selector.register(self._outbox, selectors.EVENT_WRITE, ("outbox", None))
        else:
            self._selector.unregister(self._outbox)
        self._waiting_to_send = waiting


def _datagram(messages: list[dict[str, Any]], limit: int = 32 * 1024) -> tuple[int, bytes]:
    """(how many of the messages, the datagram carrying them as a JSON list) under `limit`."""
    count, size = 0, 2
    encoded: list[str] = []
    for message in messages:
        text = json.dumps(message)
        if count and size + len(text) + 1 > limit:
            break
        encoded.append(text)
        size += len(text) + 1
        count += 1
    return count, f"[{','.join(encoded)}]".encode()


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def main() -> None:
    parser = argparse.ArgumentParser(description="Runs local jobs for the launcher daemon.")
    parser.add_argument("--run_dir", required=True, type=Path)
    args = parser.parse_args()
    os.chdir("/")
    Supervisor(args.run_dir).run(sys.stdin.fileno())


if __name__ == "__main__":
    main()
