"""What the launcher daemon and its clients agree on beyond the protobuf messages.

Both sides import this module (the daemon imports nothing else of the client to learn these):
the message size limit of the gRPC channel, and the environment variables the launcher sets in
every job. Only those variables are reserved; any other name, `XM_` prefix or not, belongs to
the launch script.
"""

from __future__ import annotations

# The largest gRPC message the daemon and its clients accept (each direction).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# In ServerInfo.capabilities when a read process serves the plain reads on the state
# directory's reads socket (docs/daemon.md, "The read process").
READ_PROCESS_CAPABILITY = "reads.process"

# Set by the launcher in every job's environment (docs/daemon.md).
EXPERIMENT_ID_ENV = "XM_EXPERIMENT_ID"
WORK_UNIT_ID_ENV = "XM_WORK_UNIT_ID"
JOB_NAME_ENV = "XM_JOB_NAME"
JOB_PEERS_ENV = "XM_JOB_PEERS"  # the names of the work unit's jobs, comma-separated

LAUNCHER_ENV_VARS = (EXPERIMENT_ID_ENV, WORK_UNIT_ID_ENV, JOB_NAME_ENV, JOB_PEERS_ENV)


def launcher_env(
    experiment_id: int, work_unit_id: int, job_name: str, peers: list[str]
) -> dict[str, str]:
    """The variables the launcher adds to a job's environment."""
    return {
        EXPERIMENT_ID_ENV: str(experiment_id),
        WORK_UNIT_ID_ENV: str(work_unit_id),
        JOB_NAME_ENV: job_name,
        JOB_PEERS_ENV: ",".join(peers),
    }


def reserved_env_error(name: str) -> str | None:
    """Why a job may not set variable `name`, or None when it may."""
    if name in LAUNCHER_ENV_VARS:
        return (
            f"{name} is set by the launcher in every job and cannot be overridden "
            f"(reserved: {', '.join(LAUNCHER_ENV_VARS)}); rename the variable"
        )
    return None
