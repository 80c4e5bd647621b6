"""Resource names a Vertex AI CustomJob refers to, checked where they are written.

Pure (no Google client imports): the client (`xm_local.Vertex`) checks them when the executor is
built and the daemon when a work unit is added, so a wrong name never reaches Vertex AI, which
would refuse the CustomJob only when it is created.
"""

from __future__ import annotations

import re

# CustomJobSpec.network: a Compute Engine network by project *number* (not id) and name.
NETWORK_FORM = "projects/PROJECT_NUMBER/global/networks/NETWORK"
_NETWORK = re.compile(r"projects/[0-9]+/global/networks/[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
# CustomJobSpec.tensorboard: a TensorBoard instance in a project (id or number) and region.
TENSORBOARD_FORM = "projects/PROJECT/locations/REGION/tensorboards/ID"
_TENSORBOARD = re.compile(
    r"projects/([^/\s]+)/locations/([a-z]+-[a-z]+[0-9]+)"
    r"/tensorboards/([0-9]+)"
)


def network_problem(network: str) -> str | None:
    """Why `network` is not a name Vertex AI accepts for CustomJobSpec.network, or None."""
    if _NETWORK.fullmatch(network):
        return None
    hint = ""
    if "/" not in network:
        hint = f" (a bare name: write projects/PROJECT_NUMBER/global/networks/{network})"
    elif re.fullmatch(r"projects/[^/]+/global/networks/[^/]+", network):
        hint = " (the project must be given by its number, e.g. 123456789012, not its id)"
    return f"{network!r} is not {NETWORK_FORM}{hint}"


def tensorboard_region(name: str) -> str | None:
    """The region of a TensorBoard instance's resource name, or None if it is not one."""
    match = _TENSORBOARD.fullmatch(name)
    return match.group(2) if match else None


def tensorboard_problem(name: str) -> str | None:
    """Why `name` is not a TensorBoard instance's resource name, or None."""
    if tensorboard_region(name) is None:
        return f"{name!r} is not {TENSORBOARD_FORM}"
    return None
