"""Daemons for the reliability suite: the daemon suite's fixtures."""

from __future__ import annotations

from tests.daemon.conftest import _state_dir as temporary_state_dir
from tests.daemon.conftest import daemon, shared_daemon, state_dir

__all__ = ["daemon", "shared_daemon", "state_dir", "temporary_state_dir"]
