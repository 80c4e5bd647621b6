"""A real PostgreSQL server for tests, started in a temporary directory on a loopback port.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
`postgres` user (the Debian package creates it). One server serves a whole test session; each
test gets a database of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

_USER = "xm"


def _find(program: str) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{program}"), reverse=True):
        return str(candidate)
    return None


def unavailable_reason() -> str | None:
    """Why no server can be started here, or None."""
    if _find("initdb") is None or _find("pg_ctl") is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: run ./setup.sh test"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One server process; `create_database()` hands out fresh databases."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="xm-pg-"))
        self.port = _free_port()
        self._counter = itertools.count(1)
        self._as_postgres = os.geteuid() == 0

    def _run(self, args: Sequence[str]) -> None:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        data = self.directory / "data"
        self._run([_find("initdb") or "initdb", "-D", str(data), "-A", "trust", "-U", _USER])
        self._run(
            [
                _find("pg_ctl") or "pg_ctl",
                "-D",
                str(data),
                "-l",
                str(self.directory / "server.log"),
                "-o",
                f"-k {self.directory} -p {self.port} -h 127.0.0.1 -c fsync=off",
                "-w",
                "start",
            ]
        )

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run(
                [
                    _find("pg_ctl") or "pg_ctl",
                    "-D",
                    str(self.directory / "data"),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ]
            )
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"xm_test_{next(self._counter)}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={_USER} dbname=postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
