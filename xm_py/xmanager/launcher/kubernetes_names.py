"""Kubernetes object names and labels for launcher jobs: valid, deterministic, from ids alone.

Names are derived only from (experiment, work unit, job), so a restarted daemon finds the objects
it created before a crash by name or by label and never creates a job twice.
"""

from __future__ import annotations

import hashlib
import re

# Labels every object carries; selectors over them find an experiment's, a unit's or a job's.
LABEL_PREFIX = "launcher.xmanager"
EXPERIMENT_LABEL = f"{LABEL_PREFIX}/experiment"
WORK_UNIT_LABEL = f"{LABEL_PREFIX}/work-unit"
JOB_LABEL = f"{LABEL_PREFIX}/job"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "xmanager-launcher"
# The job's name verbatim (a label value cannot hold every launcher job name).
JOB_NAME_ANNOTATION = f"{LABEL_PREFIX}/job-name"
# Set on the Job controller's pods of Indexed Jobs.
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

# Where to find the managed objects: every kind carries the managed-by label.
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

DNS_LABEL_MAX = 63
# Indexed Jobs name their pods' hostnames "<job name>-<index>"; replicas are capped at 100,000
# (index up to 99999), so a Job name leaves room for "-99999" within a DNS label.
MAX_REPLICAS = 100_000
JOB_NAME_MAX = DNS_LABEL_MAX - len("-99999")
CONTAINER_NAME = "job"

_DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def is_dns_label(value: str) -> bool:
    """RFC 1123 label: namespaces, Services' DNS, hostnames."""
    return len(value) <= DNS_LABEL_MAX and _DNS_1123_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: str) -> bool:
    """RFC 1123 subdomain: object names of most kinds (service accounts, priority classes)."""
    return len(value) <= 253 and _DNS_1123_SUBDOMAIN.fullmatch(value) is not None


def label_key_problem(key: str) -> str:
    """Why `key` is not a valid label key (node selectors, tolerations), or ""."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return "the prefix before '/' is empty"
    if prefix and not is_dns_subdomain(prefix):
        return f"the prefix {prefix!r} is not a DNS subdomain (lower case, digits, '-', '.')"
    if not name or len(name) > DNS_LABEL_MAX or _LABEL_NAME.fullmatch(name) is None:
        return (
            "the name must be 1-63 characters of letters, digits, '-', '_', '.', starting and "
            "ending with a letter or digit"
        )
    return ""


def is_label_value(value: str) -> bool:
    return len(value) <= DNS_LABEL_MAX and _LABEL_VALUE.fullmatch(value) is not None


def _digest(text: str, length: int = 6) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _slug(text: str) -> str:
    """Lower case, runs of anything else than [a-z0-9] as one '-', no '-' at the ends."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def unit_name(experiment_id: int, work_unit_id: int) -> str:
    """The unit's parent object and headless Service (a DNS-1035 label: starts with a letter)."""
    return f"xm-{experiment_id}-{work_unit_id}"


def job_name(experiment_id: int, work_unit_id: int, name: str) -> str:
    """The batch/v1 Job of one launcher job: readable, unique, at most JOB_NAME_MAX characters.

    A hash of the original name is appended whenever the readable part is not the name itself
    (case folded, characters replaced, or cut), so distinct job names never collide.
    """
    prefix = f"{unit_name(experiment_id, work_unit_id)}-"
    slug = _slug(name)
    if slug == name and len(prefix) + len(slug) <= JOB_NAME_MAX:
        return prefix + slug
    suffix = _digest(name)
    room = JOB_NAME_MAX - len(prefix) - len(suffix) - 1
    head = slug[:room].strip("-")
    return f"{prefix}{head}-{suffix}" if head else f"{prefix}{suffix}"


def job_label(name: str) -> str:
    """The job label's value: the name itself when it is a valid label value, else a hash form."""
    if is_label_value(name):
        return name
    return f"{_slug(name)[:50].strip('-')}-{_digest(name, 10)}".lstrip("-")


def unit_labels(experiment_id: int, work_unit_id: int) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        EXPERIMENT_LABEL: str(experiment_id),
        WORK_UNIT_LABEL: str(work_unit_id),
    }


def job_labels(experiment_id: int, work_unit_id: int, name: str) -> dict[str, str]:
    return {**unit_labels(experiment_id, work_unit_id), JOB_LABEL: job_label(name)}


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def pod_hostname(job: str, index: int) -> str:
    """The hostname the Job controller gives the pod of completion index `index`."""
    return f"{job}-{index}"


def pod_domain(job: str, index: int, experiment_id: int, work_unit_id: int, namespace: str) -> str:
    """The stable DNS name of a replica, through the unit's headless Service."""
    service = unit_name(experiment_id, work_unit_id)
    return f"{pod_hostname(job, index)}.{service}.{namespace}.svc.cluster.local"
