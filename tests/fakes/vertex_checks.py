"""What Vertex AI checks in a CreateCustomJob request, as the emulator enforces it.

Each check returns the problem (Vertex's INVALID_ARGUMENT message) or None.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import TypeVar

from google.cloud import aiplatform_v1 as aip

from tests.fakes import filters
from xmanager.cloud import vertex_machines as machines

PARENT = re.compile(
    r"projects/([a-z0-9][a-z0-9-]{0,61}[a-z0-9]|[0-9]+)/locations/([a-z]+-[a-z]+[0-9]+)"
)
JOB_NAME = re.compile(PARENT.pattern + r"/customJobs/([0-9]+)")
TENSORBOARD_NAME = re.compile(PARENT.pattern + r"/tensorboards/([0-9]+)")
OPERATION_NAME = re.compile(PARENT.pattern + r"/[a-zA-Z]+/[0-9]+/operations/([0-9]+)")
# A Compute Engine network by project number, as CustomJobSpec.network takes it.
NETWORK = re.compile(r"projects/[0-9]+/global/networks/[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
MAX_LABELS = 64
MAX_POOLS = 4
MAX_DISPLAY_NAME = 128

# A List call's page: Vertex's default and largest sizes.
DEFAULT_PAGE = 100
MAX_PAGE = 1000

T = TypeVar("T")


def page_of(items: Sequence[T], page_size: int, token: str) -> tuple[Sequence[T], str]:
    """The page of a List call's results that `token` starts (the first for ""), and the next
    page's token ("" after the last); raises ValueError for a token this server did not give."""
    size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    if not token:
        offset = 0
    elif token.isdigit():
        offset = int(token)
    else:
        raise ValueError(f"page_token: {token!r} is not a token this call returned")
    more = offset + size < len(items)
    return items[offset : offset + size], str(offset + size) if more else ""


def list_filter(parent: str, text: str, fields: Collection[str]) -> filters.Filter:
    """The filter of a List call under `parent` (on `fields` and labels); raises ValueError
    naming what is wrong, as Vertex answers INVALID_ARGUMENT."""
    if not PARENT.fullmatch(parent):
        raise ValueError(f"parent: {parent!r} is not valid")
    try:
        return filters.parse(text, lambda field: field in fields or field.startswith("labels."))
    except filters.FilterError as error:
        raise ValueError(f"filter: {error}") from None


def check_labels(labels: dict[str, str], field: str = "custom_job.labels") -> str | None:
    if len(labels) > MAX_LABELS:
        return f"{field}: at most {MAX_LABELS} labels, got {len(labels)}"
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key):
            return (
                f"{field}: invalid key {key!r}: 1-63 characters, lowercase letters, "
                "digits, '_' and '-', starting with a letter"
            )
        if not LABEL_VALUE.fullmatch(value):
            return (
                f"{field}[{key!r}]: invalid value {value!r}: at most 63 characters, "
                "lowercase letters, digits, '_' and '-'"
            )
    return None


def check_custom_job(parent: str, job: aip.CustomJob) -> str | None:
    if not PARENT.fullmatch(parent):
        return f"parent: {parent!r} is not projects/PROJECT/locations/LOCATION"
    if not job.display_name:
        return "custom_job.display_name is required"
    if len(job.display_name) > MAX_DISPLAY_NAME:
        return f"custom_job.display_name: at most {MAX_DISPLAY_NAME} characters"
    problem = check_labels(dict(job.labels))
    if problem:
        return problem
    pools = list(job.job_spec.worker_pool_specs)
    if not pools:
        return "custom_job.job_spec.worker_pool_specs is required"
    if len(pools) > MAX_POOLS:
        return f"custom_job.job_spec.worker_pool_specs: at most {MAX_POOLS} worker pools"
    for i, pool in enumerate(pools):
        field = f"custom_job.job_spec.worker_pool_specs[{i}]"
        if i == 0 and pool.replica_count != 1:
            return f"{field}.replica_count: the first worker pool (the chief) must have 1 replica"
        if pool.replica_count < 1:
            return f"{field}.replica_count must be positive"
        if not pool.container_spec.image_uri:
            return f"{field}.container_spec.image_uri is required"
        spec = pool.machine_spec
        if not spec.machine_type:
            return f"{field}.machine_spec.machine_type is required"
        accelerator = aip.AcceleratorType(spec.accelerator_type).name
        problem = machines.check_pair(
            spec.machine_type, accelerator, spec.accelerator_count, spec.tpu_topology
        )
        if problem:
            return f"{field}.machine_spec: {problem}"
        for variable in pool.container_spec.env:
            if not variable.name:
                return f"{field}.container_spec.env: a variable has no name"
    output = job.job_spec.base_output_directory.output_uri_prefix
    if output and not output.startswith("gs://"):
        return "custom_job.job_spec.base_output_directory.output_uri_prefix must start with gs://"
    network = job.job_spec.network
    if network and not NETWORK.fullmatch(network):
        return (
            f"custom_job.job_spec.network: {network!r} is not a valid network name; the form is "
            "projects/{project}/global/networks/{network} where {project} is a project number"
        )
    return check_tensorboard_use(parent, job.job_spec)


def check_tensorboard_use(parent: str, spec: aip.CustomJobSpec) -> str | None:
    """A CustomJob that streams to a TensorBoard: the instance's name and region, a service
    account and a base output directory (Vertex reads the logs from there as that account)."""
    if not spec.tensorboard:
        return None
    match = TENSORBOARD_NAME.fullmatch(spec.tensorboard)
    if match is None:
        return (
            f"custom_job.job_spec.tensorboard: {spec.tensorboard!r} is not "
            "projects/{project}/locations/{location}/tensorboards/{tensorboard}"
        )
    parent_match = PARENT.fullmatch(parent)
    if parent_match is not None and match.group(2) != parent_match.group(2):
        return (
            f"custom_job.job_spec.tensorboard: {spec.tensorboard} is not in the job's location "
            f"{parent_match.group(2)}"
        )
    if not spec.service_account:
        return "custom_job.job_spec.service_account is required when tensorboard is set"
    if not spec.base_output_directory.output_uri_prefix:
        return "custom_job.job_spec.tensorboard needs base_output_directory"
    return None


def check_tensorboard(parent: str, tensorboard: aip.Tensorboard) -> str | None:
    """A CreateTensorboard request."""
    if not PARENT.fullmatch(parent):
        return f"parent: {parent!r} is not projects/PROJECT/locations/LOCATION"
    if not tensorboard.display_name:
        return "tensorboard.display_name is required"
    if len(tensorboard.display_name) > MAX_DISPLAY_NAME:
        return f"tensorboard.display_name: at most {MAX_DISPLAY_NAME} characters"
    return check_labels(dict(tensorboard.labels), "tensorboard.labels")
