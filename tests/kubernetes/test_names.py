"""Kubernetes names: valid DNS labels, deterministic, distinct for distinct jobs."""

from __future__ import annotations

import pytest

from xmanager.launcher import kubernetes_names as names


@pytest.mark.parametrize(
    "job",
    ["worker", "Worker_0", "_x", "a.b-c", "x" * 63, "UPPER.case_and-dots.", "0", "a_b", "a-b"],
)
def test_job_names_are_dns_labels_leaving_room_for_the_replica_index(job: str) -> None:
    name = names.job_name(123456789, 98765, job)
    assert names.is_dns_label(name), name
    assert len(name) <= names.JOB_NAME_MAX
    assert names.is_dns_label(names.pod_hostname(name, names.MAX_REPLICAS - 1))
    assert names.job_name(123456789, 98765, job) == name  # deterministic
    assert names.is_label_value(names.job_label(job))


def test_readable_names_stay_readable() -> None:
    assert names.job_name(1, 2, "worker-0") == "xm-1-2-worker-0"
    assert names.unit_name(1, 2) == "xm-1-2"
    assert names.job_label("worker_0") == "worker_0"


def test_distinct_jobs_never_share_a_name() -> None:
    jobs = ["a_b", "a-b", "A-b", "a.b", "x" * 60, "x" * 61, "x" * 62]
    assert len({names.job_name(1, 1, job) for job in jobs}) == len(jobs)
    assert len({names.job_label(job) for job in ["_a", "a_", "-a"]}) == 3


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("cloud.google.com/gke-accelerator", True),
        ("disktype", True),
        ("kubernetes.io/arch", True),
        ("Bad_Prefix/x", False),
        ("/x", False),
        ("x/", False),
        ("-x", False),
        ("a" * 64, False),
        ("with space", False),
    ],
)
def test_label_keys(key: str, ok: bool) -> None:
    assert (names.label_key_problem(key) == "") is ok


def test_pod_domain_goes_through_the_units_headless_service() -> None:
    assert (
        names.pod_domain("xm-1-2-worker", 3, 1, 2, "team")
        == "xm-1-2-worker-3.xm-1-2.team.svc.cluster.local"
    )
