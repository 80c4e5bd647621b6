"""The state directory is private to the daemon's user: mode 0700, its files 0600.

It holds the store (with secrets in job environments, also in SQLite's WAL), the TCP token and
the lock that makes one daemon per directory. A directory made by an older version or by
`mkdir -p` keeps whatever mode it had, so the daemon tightens it on every start, and refuses a
directory it cannot make private: one owned by another user, or one others could write to (they
may have planted files there already).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

from xmanager.state_dir import StateDir

DIR_MODE = 0o700
FILE_MODE = 0o600


class UnsafeStateDirError(RuntimeError):
    pass


def secure(state: StateDir) -> set[Path]:
    """Creates the state directory or makes the existing one private; raises when it cannot.

    Returns the files that were open to others until now: someone may still hold them open.
    """
    root = state.root
    root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    exposed = _check_and_tighten_dir(root)
    for sub in (state.run, state.jobs):
        sub.mkdir(mode=DIR_MODE, exist_ok=True)
        _check_and_tighten_dir(sub)
    # Only the top level: what lies below run/ and jobs/ is unreachable through them.
    tightened: set[Path] = set()
    for entry in root.iterdir():
        info = entry.lstat()
        if not stat.S_ISREG(info.st_mode):
            continue
        if info.st_uid != os.getuid():
            raise UnsafeStateDirError(
                f"{entry} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}); "
                "remove it (another user put it there) or choose another --state_dir"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            entry.chmod(FILE_MODE)
        if mode & 0o044 or (exposed and mode & 0o077):
            tightened.add(entry)
    return tightened


def _check_and_tighten_dir(path: Path) -> bool:
    """Whether others could reach into the directory until now."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeStateDirError(
            f"{path} is not a directory (a symbolic link?); remove it or choose another --state_dir"
        )
    if info.st_uid != os.getuid():
        raise UnsafeStateDirError(
            f"{path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}): another "
            "user controls it. Choose a directory of your own with --state_dir or XM_STATE_DIR"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise UnsafeStateDirError(
            f"{path} is writable by other users (mode {mode:04o}), who may have planted files "
            f"in it. Check its contents, then `chmod 700 {path}`, or choose another --state_dir"
        )
    if mode != DIR_MODE:
        path.chmod(DIR_MODE)
    return bool(mode & 0o011)


def create_private_file(path: Path) -> None:
    """Creates `path` (mode 0600) if missing, so what opens it later does not pick the mode."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(FILE_MODE)


def open_private(path: Path, mode: str) -> IO[str]:
    """Opens a text file, creating it with mode 0600."""
    create_private_file(path)
    return path.open(mode)


def replace_private(path: Path) -> None:
    """Puts a fresh private file in place of `path`: whoever holds the old one keeps only that."""
    fresh = path.with_name(f".{path.name}.{os.getpid()}")
    fresh.unlink(missing_ok=True)
    create_private_file(fresh)
    fresh.replace(path)
