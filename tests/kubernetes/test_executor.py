"""xm_local.Kubernetes: XManager 0.8.5's fields plus the cluster ones, carried to the contract."""

from __future__ import annotations

import datetime

import pytest

from xmanager import xm, xm_local
from xmanager.xm_local import job_proto


def test_xmanager_fields_and_spec() -> None:
    executor = xm_local.Kubernetes(
        xm.JobRequirements(t4=1), "GKE", xm_local.TpuCapability(tpu_runtime_version="2.12")
    )
    assert executor.cloud_provider == "GKE"
    spec = xm_local.KubernetesSpec(push_image_tag="r/x:y")
    assert xm_local.Kubernetes.Spec is xm_local.KubernetesSpec
    assert spec.push_image_tag == "r/x:y"


def test_cluster_fields_reach_the_contract() -> None:
    executor = xm_local.Kubernetes(
        requirements=xm.JobRequirements(cpu=2, memory=1 << 30, replicas=3),
        namespace="team-a",
        context="prod",
        service_account="trainer",
        node_selector={"pool": "a"},
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        priority_class="high",
        image_pull_secrets=["regcred"],
        active_deadline=datetime.timedelta(minutes=90),
        backoff_limit=2,
    )
    message = job_proto.executor_to_proto(executor).kubernetes
    assert message.namespace == "team-a"
    assert message.context == "prod"
    assert message.service_account == "trainer"
    assert dict(message.node_selector) == {"pool": "a"}
    assert message.tolerations[0].effect == "NoSchedule"
    assert message.priority_class == "high"
    assert list(message.image_pull_secrets) == ["regcred"]
    assert message.active_deadline_seconds == 5400
    assert message.backoff_limit == 2
    assert message.cloud_provider == "GKE"
    default = job_proto.executor_to_proto(xm_local.Kubernetes()).kubernetes
    assert default.HasField("backoff_limit")
    assert default.backoff_limit == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"active_deadline": 0},
        {"active_deadline": datetime.timedelta(seconds=-1)},
        {"backoff_limit": -1},
        {"image_pull_secrets": [""]},
        {"node_selector": {"a": 1}},
    ],
)
def test_bad_fields_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises((TypeError, ValueError)):
        xm_local.Kubernetes(**kwargs)  # type: ignore[arg-type]
