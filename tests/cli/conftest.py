from tests.daemon.conftest import daemon, shared_daemon, state_dir

__all__ = ["daemon", "shared_daemon", "state_dir"]
