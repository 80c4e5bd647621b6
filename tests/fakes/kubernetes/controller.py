"""The emulated control plane's controllers: the Job controller (Indexed Jobs, pod failure
policies, backoff limits, active deadlines) and a scheduler binding pods to registered nodes.

They run in the emulator's process against its store, as kube-controller-manager and
kube-scheduler run beside the real API server. Event-driven, with a periodic resync for
deadlines and for pods waiting for a node.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import threading
import time
import uuid
from typing import Any

from tests.fakes.kubernetes.store import ApiError, Obj, Store, now, parse_time

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
_FINAL = ("Complete", "Failed")
_RESYNC_SECONDS = 1.0


def _condition(type_: str, reason: str = "", message: str = "", status: str = "True") -> Obj:
    condition = {"type": type_, "status": status, "lastTransitionTime": now()}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _is_final(job: Obj) -> bool:
    return any(
        c["type"] in _FINAL and c["status"] == "True"
        for c in job.get("status", {}).get("conditions") or []
    )


def _index(pod: Obj) -> int:
    return int(pod["metadata"].get("annotations", {}).get(INDEX_ANNOTATION, "0"))


def _exit_code(pod: Obj) -> int | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        terminated = status.get("state", {}).get("terminated")
        if terminated is not None:
            return int(terminated.get("exitCode", 0))
    return None


def _rule_matches(rule: Obj, pod: Obj) -> bool:
    for want in rule.get("onPodConditions") or []:
        for have in pod.get("status", {}).get("conditions") or []:
            if have["type"] == want["type"] and have["status"] == want.get("status", "True"):
                return True
    codes = rule.get("onExitCodes")
    if codes:
        code = _exit_code(pod)
        if code is None:
            return False
        inside = code in codes["values"]
        return inside if codes["operator"] == "In" else not inside
    return False


def _ranges(indexes: set[int]) -> str:
    parts: list[str] = []
    for i in sorted(indexes):
        if parts and parts[-1].split("-")[-1] == str(i - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ",".join(parts)


class Controllers:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="controllers", daemon=True)
        self._counted: set[str] = set()  # failed pods already charged to their Job

    def start(self) -> Controllers:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        rv = self.store.resource_version
        last_resync = 0.0
        while not self._stop.is_set():
            try:
                events = self.store.events_after(rv)
            except ApiError:
                events = []
                rv = self.store.resource_version
                last_resync = 0.0
            jobs: set[tuple[str, str]] = set()
            schedule = False
            for event in events:
                rv = event.rv
                meta = event.obj["metadata"]
                if event.plural == "jobs":
                    jobs.add((meta["namespace"], meta["name"]))
                elif event.plural == "pods":
                    job = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
                    if job:
                        jobs.add((meta["namespace"], job))
                    schedule = schedule or not event.obj.get("spec", {}).get("nodeName")
                elif event.plural == "nodes":
                    schedule = True
            if time.monotonic() - last_resync > _RESYNC_SECONDS:
                last_resync = time.monotonic()
                items, _ = self.store.list("jobs", None)
                jobs |= {(j["metadata"]["namespace"], j["metadata"]["name"]) for j in items}
                schedule = True
            for namespace, name in sorted(jobs):
                with contextlib.suppress(ApiError):
                    self._reconcile(namespace, name)
            if schedule:
                self._schedule()
            if not events:
                with self.store.changed:
                    if self.store.resource_version <= rv:
                        self.store.changed.wait(0.2)

    # -- the Job controller ---------------------------------------------------------------------

    def _reconcile(self, namespace: str, name: str) -> None:
        job = self.store.get("jobs", namespace, name)
        if job["metadata"].get("deletionTimestamp") or _is_final(job):
            return
        spec = job["spec"]
        uid = job["metadata"]["uid"]
        pods, _ = self.store.list("pods", namespace, f"{CONTROLLER_UID_LABEL}={uid}")
        completions = int(spec.get("completions", 1))
        succeeded = {_index(p) for p in pods if p.get("status", {}).get("phase") == "Succeeded"}
        active = [
            p
            for p in pods
            if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
        ]
        terminating = [p for p in pods if p["metadata"].get("deletionTimestamp")]
        status = copy.deepcopy(job.get("status") or {})
        status.setdefault("startTime", now())
        failed = int(status.get("failed", 0))
        failure: tuple[str, str] | None = None
        for pod in pods:
            pod_uid = pod["metadata"]["uid"]
            if pod.get("status", {}).get("phase") != "Failed" or pod_uid in self._counted:
                continue
            self._counted.add(pod_uid)
            action = "Count"
            for i, rule in enumerate((spec.get("podFailurePolicy") or {}).get("rules") or []):
                if _rule_matches(rule, pod):
                    action = rule["action"]
                    if action == "FailJob":
                        failure = (
                            "PodFailurePolicy",
                            f"Container job for pod {namespace}/{pod['metadata']['name']} "
                            f"failed with exit code {_exit_code(pod)} matching FailJob rule "
                            f"at index {i}",
                        )
                    break
            if action in ("Count", "FailJob"):
                failed += 1
        if failure is None and failed > int(spec.get("backoffLimit", 6)):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        deadline = spec.get("activeDeadlineSeconds")
        if failure is None and deadline is not None:
            started = parse_time(status["startTime"])
            if datetime.datetime.now(datetime.UTC) - started >= datetime.timedelta(
                seconds=int(deadline)
            ):
                failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        conditions = list(status.get("conditions") or [])
        if failure is not None:
            for pod in active:
                with contextlib.suppress(ApiError):
                    self.store.delete("pods", namespace, pod["metadata"]["name"])
            conditions += [_condition("FailureTarget", *failure), _condition("Failed", *failure)]
            active = []
        elif len(succeeded) >= completions:
            conditions += [
                _condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                ),
                _condition(
                    "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
                ),
            ]
            status["completionTime"] = now()
        else:
            busy = {_index(p) for p in active} | {_index(p) for p in terminating}
            for index in range(completions):
                if index not in succeeded and index not in busy:
                    active.append(self._create_pod(job, index))
        status.update(
            active=len(active),
            succeeded=len(succeeded),
            failed=failed,
            terminating=len(terminating),
            ready=sum(
                1
                for p in active
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p.get("status", {}).get("conditions") or []
                )
            ),
            completedIndexes=_ranges(succeeded),
            conditions=conditions,
        )
        if failure is not None:
            status["active"] = 0

        def write(obj: Obj) -> None:
            obj["status"] = status

        self.store.update("jobs", namespace, name, write)

    def _create_pod(self, job: Obj, index: int) -> Obj:
        template = copy.deepcopy(job["spec"]["template"])
        name = job["metadata"]["name"]
        metadata = template.get("metadata") or {}
        metadata["name"] = f"{name}-{index}-{uuid.uuid4().hex[:5]}"
        metadata["labels"] = {
            **(metadata.get("labels") or {}),
            JOB_NAME_LABEL: name,
            CONTROLLER_UID_LABEL: job["metadata"]["uid"],
            INDEX_LABEL: str(index),
        }
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            INDEX_ANNOTATION: str(index),
        }
        metadata["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": name,
                "uid": job["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        spec = template["spec"]
        spec.setdefault("hostname", f"{name}-{index}")
        for container in spec["containers"]:
            container.setdefault("env", []).append(
                {"name": "JOB_COMPLETION_INDEX", "value": str(index)}
            )
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": spec,
        }
        return self.store.create("pods", job["metadata"]["namespace"], pod)

    # -- the scheduler ----------------------------------------------------------------------------

    def _schedule(self) -> None:
        pods, _ = self.store.list("pods", None, fields="spec.nodeName=")
        pending = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if not pending:
            return
        nodes, _ = self.store.list("nodes", None)
        ready = [
            n
            for n in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions") or []
            )
        ]
        for pod in pending:
            node, message = self._fit(pod, ready)
            namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]

            def bind(obj: Obj, node: Obj | None = node, message: str = message) -> None:
                conditions = [
                    c
                    for c in obj.setdefault("status", {}).get("conditions") or []
                    if c["type"] != "PodScheduled"
                ]
                if node is None:
                    conditions.append(_condition("PodScheduled", "Unschedulable", message, "False"))
                else:
                    obj["spec"]["nodeName"] = node["metadata"]["name"]
                    conditions.append(_condition("PodScheduled"))
                obj["status"]["conditions"] = conditions

            previous = [
                c
                for c in pod.get("status", {}).get("conditions") or []
                if c["type"] == "PodScheduled"
            ]
            if node is None and previous and previous[0].get("message") == message:
                continue
            with contextlib.suppress(ApiError):
                self.store.update("pods", namespace, name, bind)

    @staticmethod
    def _fit(pod: Obj, nodes: list[Obj]) -> tuple[Obj | None, str]:
        spec = pod["spec"]
        selector = spec.get("nodeSelector") or {}
        requests: dict[str, str] = {}
        for container in spec["containers"]:
            requests.update((container.get("resources") or {}).get("limits") or {})
        unmatched = insufficient = 0
        missing: set[str] = set()
        for node in nodes:
            labels = node["metadata"].get("labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                unmatched += 1
                continue
            allocatable = node.get("status", {}).get("allocatable") or {}
            lacking = [
                r
                for r, amount in requests.items()
                if r not in ("cpu", "memory", "ephemeral-storage")
                and float(allocatable.get(r, 0)) < float(amount)
            ]
            if lacking:
                insufficient += 1
                missing.update(lacking)
                continue
            return node, ""
        reasons = []
        if unmatched:
            reasons.append(f"{unmatched} node(s) didn't match Pod's node affinity/selector")
        if insufficient:
            reasons.append(f"{insufficient} Insufficient {', '.join(sorted(missing))}")
        total = len(nodes)
        detail = ", ".join(reasons) or "no nodes registered"
        return None, (
            f"0/{total} nodes are available: {detail}. preemption: 0/{total} nodes are "
            "available: Preemption is not helpful for scheduling."
        )


def evict(store: Store, namespace: str, name: str) -> None:
    """What the kubelet does under node pressure: the pod fails as Evicted (a disruption)."""

    def mark(obj: Obj) -> None:
        status = obj.setdefault("status", {})
        status["phase"] = "Failed"
        status["reason"] = "Evicted"
        status["message"] = "The node was low on resource: memory."
        status.setdefault("conditions", []).append(
            _condition("DisruptionTarget", "TerminationByKubelet", "evicted by the emulator")
        )

    store.update("pods", namespace, name, mark)
