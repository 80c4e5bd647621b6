"""Where the daemon keeps its socket, token, store, logs and per-job directories.

Shared by the daemon and its clients, so both agree on paths without talking. The directory is
`~/.xmanager`, or `$XM_STATE_DIR`, or whatever `--state_dir` names.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

ENV_VAR = "XM_STATE_DIR"


def default_root() -> Path:
    """The state directory from the environment, else ~/.xmanager."""
    configured = os.environ.get(ENV_VAR)
    return Path(configured).expanduser() if configured else Path.home() / ".xmanager"


@dataclasses.dataclass(frozen=True)
class StateDir:
    """The layout of one daemon's state directory."""

    root: Path

    @classmethod
    def resolve(cls, root: str | Path | None = None) -> StateDir:
        return cls(Path(root).expanduser().resolve() if root else default_root().resolve())

    @property
    def socket(self) -> Path:
        """The daemon's gRPC Unix socket (mode 0600)."""
        return self.root / "launcher.sock"

    @property
    def reads_socket(self) -> Path:
        """The daemon's read process's gRPC Unix socket (mode 0600): the plain reads only."""
        return self.root / "reads.sock"

    @property
    def token(self) -> Path:
        """Bearer token for TCP clients (mode 0600), created on the first start."""
        return self.root / "token"

    @property
    def tcp_address(self) -> Path:
        """host:port of the TCP listener, when the daemon has one."""
        return self.root / "tcp_address"

    @property
    def lock(self) -> Path:
        """Held (flock) by the running daemon: at most one daemon per state directory."""
        return self.root / "daemon.lock"

    @property
    def pid(self) -> Path:
        return self.root / "daemon.pid"

    @property
    def log(self) -> Path:
        """The detached daemon's own log."""
        return self.root / "daemon.log"

    @property
    def database(self) -> Path:
        """The default SQLite store."""
        return self.root / "store.sqlite"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def run(self) -> Path:
        """Sockets of the daemon and its job supervisors, and the supervisors' log."""
        return self.root / "run"

    def job_dir(self, experiment_id: int, work_unit_id: int, job_name: str) -> Path:
        return self.jobs / str(experiment_id) / str(work_unit_id) / job_name

    def create(self) -> None:
        """Creates the directory, private to the user."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.run.mkdir(mode=0o700, exist_ok=True)
        self.jobs.mkdir(mode=0o700, exist_ok=True)
