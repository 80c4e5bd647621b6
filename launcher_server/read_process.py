"""The daemon's read process: GetExperiment, ListExperiments, GetWorkUnit and ListWorkUnits
served from the store by a second process, with a GIL of its own.

Why: while a sweep is added and run, the daemon's threads (adding, dispatching, recording,
watching) hold its one GIL nearly all the time, and a read waited for it: GetWorkUnit's p99
was 70 to 190 ms during a 1,000-unit sweep against 10 ms in a process that only reads
(bench/README.md, "Reads during a sweep").

How: the daemon forks it first thing, before it has a thread, a lock, a database connection or
a socket, so it costs no imports and inherits nothing it could hold on to. A pipe ties the two:
the daemon writes the store's URL into it once the store is migrated, then, after each commit
and before answering the call that made it, the keys of the units the commit changed. The read
process keeps recently read units as the daemon does (converting a page of 100 rows costs
20 ms, serving it from memory 1 ms) and drops those keys before every read, so a client reads
what it wrote through the daemon at once. Should the pipe fill up (the read process stalled),
the daemon counts an overflow in a shared page instead and the read process drops everything.
The read process ends as soon as the pipe closes, that is when the daemon ends, however it ends
(SIGKILL included).

Clients on this machine, told by the daemon's ServerInfo that a read process serves
(`contract.READ_PROCESS_CAPABILITY`), send these four reads to `StateDir.reads_socket` and fall
back to the daemon's own socket when it does not answer; the daemon serves them too (TCP
clients, and everyone while the read process is not up).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import gc
import logging
import mmap
import os
import select
import signal
import struct
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import grpc

from launcher_server import parsing
from launcher_server.service import ReadService
from launcher_server.store import reading
from launcher_server.store.reader import StoreReader
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)

_THREADS = 16  # reads are short: they never hold a thread for long
_STOP_SECONDS = 2.0
_KEY = struct.Struct("<qq")  # a changed unit: experiment id, work unit id
# Whole keys per write, at most PIPE_BUF bytes: such a write is atomic, all or nothing.
_KEYS_PER_WRITE = select.PIPE_BUF // _KEY.size
_PIPE_BYTES = 1 << 20  # 65,536 keys in flight (Linux's largest pipe without privileges)
_OVERFLOWS = struct.Struct("<Q")
_CATCH_UP_MS = 1000


class ReadProcess:
    """The daemon's handle on its read process."""

    def __init__(self, pid: int, pipe: int, overflows: mmap.mmap) -> None:
        self.pid = pid
        self._pipe: int | None = pipe
        self._overflows = overflows
        self._serving = False
        self._lock = threading.Lock()  # one writer of the pipe at a time: whole keys, in order
        self._ended = threading.Event()

    @classmethod
    def fork(cls, socket: Path, server_options: Sequence[tuple[str, Any]]) -> ReadProcess | None:
        """Forks the read process, which waits for `serve`; call before starting any thread
        (a fork copies no thread, so one holding a lock would leave it held forever)."""
        if threading.active_count() > 1:
            _log.warning("threads run already: no read process, the daemon serves reads itself")
            return None
        read_end, write_end = os.pipe()
        overflows = mmap.mmap(-1, _OVERFLOWS.size)  # shared with the child (MAP_SHARED)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(write_end)
                _run(read_end, overflows, socket, server_options)
                code = 0
            except BaseException:
                _log.exception("read process: failed")
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(read_end)
        with contextlib.suppress(OSError):  # a smaller pipe only overflows sooner
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        os.set_blocking(write_end, False)  # the daemon never waits for its read process
        process = cls(pid, write_end, overflows)
        threading.Thread(target=process._reap, name="read-process", daemon=True).start()
        return process

    def serve(self, store_url: str) -> None:
        """The store is ready: the read process opens it and starts serving."""
        with self._lock:
            if self._pipe is None:
                return
            # Into an empty pipe: it fits. Any BrokenPipeError: it ended, the reaper says why.
            with contextlib.suppress(BrokenPipeError):
                os.write(self._pipe, store_url.encode() + b"\n")
            self._serving = True

    def units_changed(self, keys: Collection[reading.UnitKey]) -> None:
        """Tells the read process to drop these units (called after each commit)."""
        step = _KEYS_PER_WRITE * _KEY.size
        with self._lock:
            if not self._serving or self._pipe is None:
                return  # it opens the store after these commits: it never saw the old units
            data = b"".join(_KEY.pack(*key) for key in keys)
            try:
                for start in range(0, len(data), step):
                    os.write(self._pipe, data[start : start + step])
            except BlockingIOError:  # full: it drops everything instead
                (count,) = _OVERFLOWS.unpack_from(self._overflows)
                _OVERFLOWS.pack_into(self._overflows, 0, count + 1)
            except BrokenPipeError:
                pass  # it ended: the reaper says why

    def _reap(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # reaped by someone else: it ended, how is unknown
            status = 0
        self._ended.set()
        if self._pipe is not None:  # not asked to stop
            _log.warning(
                "the read process (pid %d) ended (%s); the daemon serves reads itself",
                self.pid,
                _describe(status),
            )

    def stop(self) -> None:
        """Ends the read process (closing the pipe ends it) and reaps it."""
        with self._lock:
            if self._pipe is None:
                return
            pipe, self._pipe = self._pipe, None
            os.close(pipe)
        if not self._ended.wait(_STOP_SECONDS):
            _log.warning("the read process (pid %d) did not end: killing it", self.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._ended.wait(_STOP_SECONDS)


def _run(
    pipe: int, overflows: mmap.mmap, socket: Path, server_options: Sequence[tuple[str, Any]]
) -> None:
    # The daemon handles Ctrl+C and SIGTERM and then closes the pipe; a terminal's Ctrl+C
    # reaches this process too, and must not end it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A session of its own is a scheduling group of its own (Linux's autogroups): the kernel
    # shares the CPU between it and the daemon's group, busy with a sweep, rather than
    # letting the daemon's threads take that group's share.
    os.setsid()
    store_url = _read_line(pipe)
    if not store_url:
        return  # the daemon did not start
    units = _FollowedUnits(pipe, overflows)
    reads = StoreReader.open_read_only(store_url, units)
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="read"),
        options=list(server_options),
    )
    parsing.add_to_server(ReadService(reads), server)
    socket.unlink(missing_ok=True)  # a dead read process's
    old_umask = os.umask(0o177)  # 0600, as the daemon's socket
    try:
        server.add_insecure_port(f"unix:{socket}")
    finally:
        os.umask(old_umask)
    gc.collect(1)
    gc.freeze()  # what lives as long as the process: never scanned again
    server.start()
    _log.info("read process (pid %d): serving reads on %s", os.getpid(), socket)
    # Waking up for each of the daemon's writes would take the GIL from the calls that many
    # times: this thread wakes up when the daemon ends (POLLHUP, which needs no asking), and
    # once a second to empty the pipe for the calls, which do so themselves before each read.
    ended = select.poll()
    ended.register(pipe, 0)
    while units.catch_up():
        ended.poll(_CATCH_UP_MS)
    # The daemon ended. Calls in flight fail with UNAVAILABLE: their clients ask the daemon.


class _FollowedUnits(reading.UnitCache):
    """The unit cache of the read process, following the daemon's commits: every read first
    drops the units the daemon said changed. The daemon says so before it answers the call that
    changed them, so a read that follows that answer finds the keys in the pipe already."""

    def __init__(self, pipe: int, overflows: mmap.mmap) -> None:
        super().__init__()
        self._pipe = pipe
        self._overflows = overflows
        (self._overflows_seen,) = _OVERFLOWS.unpack_from(overflows)
        self._pending = bytearray()
        self._catch_up_lock = threading.Lock()
        os.set_blocking(pipe, False)

    def catch_up(self) -> bool:
        """Drops what the daemon said changed; False once the daemon has ended."""
        with self._catch_up_lock:
            ended = False
            while True:
                try:
                    chunk = os.read(self._pipe, 1 << 16)
                except BlockingIOError:
                    break
                if not chunk:
                    ended = True
                    break
                self._pending += chunk
            whole = len(self._pending) - len(self._pending) % _KEY.size
            if whole:
                self.invalidate(list(_KEY.iter_unpack(self._pending[:whole])))
                del self._pending[:whole]
            (overflows,) = _OVERFLOWS.unpack_from(self._overflows)
            if overflows != self._overflows_seen:
                self._overflows_seen = overflows
                self.clear()
            return not ended

    @property
    def generation(self) -> int:
        self.catch_up()
        return super().generation

    def get(self, key: reading.UnitKey) -> pb.WorkUnit | None:
        self.catch_up()
        return super().get(key)


def _read_line(pipe: int) -> str:
    """The first line from the daemon, read byte by byte: what follows it is not ours yet."""
    data = b""
    while not data.endswith(b"\n"):
        byte = os.read(pipe, 1)
        if not byte:
            return ""
        data += byte
    return data.decode().strip()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
