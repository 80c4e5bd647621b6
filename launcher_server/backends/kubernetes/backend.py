"""The Kubernetes backend: a work unit's Kubernetes jobs as one gang on a cluster.

start() computes the objects and hands their creation to a worker that retries through API
server outages (creation is idempotent: names are deterministic, AlreadyExists means adopted),
so it returns at once. States come from one watch per kind (Jobs, Pods) per namespace over the
launcher's labels; cancel deletes a Job's pods with the grace period and the Job with foreground
propagation, and reports CANCELLED when the Job is gone, which is when every pod is gone.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import functools
import logging
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from launcher_server.backends.base import (
    AVAILABLE,
    Availability,
    Backend,
    BackendContext,
    BackendUnavailableError,
)
from launcher_server.backends.kubernetes import checks, client, manifests, states
from launcher_server.backends.kubernetes.logs import LogCollector
from launcher_server.backends.kubernetes.watcher import Watch
from launcher_server.errors import InvalidArgumentError
from launcher_server.jobs import JobKey, JobObservation, LaunchSpec
from launcher_server.logs import LogSource
from xmanager.launcher import kubernetes_names as names
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)
Obj = Mapping[str, Any]
_AVAILABILITY_TTL = 10.0
_FIRST_PROBE_WAIT = 8.0
_REATTACH_WAIT = 5.0
_POD_DETAIL_WAIT = 2.0
_FINAL = frozenset(
    {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED, pb.JOB_STATE_LOST}
)
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


@dataclasses.dataclass(frozen=True)
class Handle:
    """Where a job lives: "namespace/name", with "?context=..." for a non-default context."""

    context: str
    namespace: str
    name: str

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}?context={urllib.parse.quote(self.context)}" if self.context else base

    @classmethod
    def parse(cls, text: str) -> Handle:
        base, _, query = text.partition("?context=")
        namespace, _, name = base.partition("/")
        return cls(urllib.parse.unquote(query), namespace, name)


def key_of(obj: Obj) -> JobKey | None:
    """The launcher job an object (a Job or a pod of it) belongs to, from its labels."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    try:
        return JobKey(
            int(labels[names.EXPERIMENT_LABEL]),
            int(labels[names.WORK_UNIT_LABEL]),
            str(annotations.get(names.JOB_NAME_ANNOTATION) or labels[names.JOB_LABEL]),
        )
    except (KeyError, ValueError):
        return None


class _Cluster:
    """One kubeconfig context: its API client, watches and the objects they show."""

    def __init__(self, backend: KubernetesBackend, context: str, api_client: Any) -> None:
        import kubernetes  # noqa: PLC0415  # heavy: only when a cluster is used

        self.backend = backend
        self.context = context
        self.api_client = api_client
        # Any: called with plain dicts and raw responses, which the client's stubs do not admit.
        self.core: Any = kubernetes.client.CoreV1Api(api_client)
        self.batch: Any = kubernetes.client.BatchV1Api(api_client)
        self.version: Any = kubernetes.client.VersionApi(api_client)
        self.lock = threading.Lock()
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.watches: dict[str, list[Watch]] = {}

    def watch(self, namespace: str) -> list[Watch]:
        """Starts the namespace's two watches once; returns them."""
        with self.lock:
            existing = self.watches.get(namespace)
            if existing is not None:
                return existing
            stop = self.backend.stopping
            selector = names.EXPERIMENT_LABEL
            watches = [
                Watch(
                    list_fn=self.batch.list_namespaced_job,
                    namespace=namespace,
                    selector=selector,
                    on_list=functools.partial(self.on_job_list, namespace),
                    on_event=self.on_job_event,
                    stop=stop,
                    name=f"k8s-watch-jobs-{namespace}",
                ),
                Watch(
                    list_fn=self.core.list_namespaced_pod,
                    namespace=namespace,
                    selector=selector,
                    on_list=functools.partial(self.on_pod_list, namespace),
                    on_event=self.on_pod_event,
                    stop=stop,
                    name=f"k8s-watch-pods-{namespace}",
                ),
            ]
            self.watches[namespace] = watches
        for watch in watches:
            watch.start()
        return watches

    # -- the caches -------------------------------------------------------------------------

    def on_job_list(self, namespace: str, items: Sequence[Obj]) -> None:
        fresh = {(namespace, i["metadata"]["name"]): dict(i) for i in items}
        with self.lock:
            gone = [k for k in self.jobs if k[0] == namespace and k not in fresh]
        for item in fresh.values():
            self.on_job_event("ADDED", item)
        for namespace_, name in gone:
            job = self.jobs.get((namespace_, name))
            if job is not None:
                self.on_job_event("DELETED", job)

    def on_pod_list(self, namespace: str, items: Sequence[Obj]) -> None:
        with self.lock:
            for job_key in [k for k in self.pods if k[0] == namespace]:
                del self.pods[job_key]
            for item in items:
                job = (item.get("metadata", {}).get("labels") or {}).get(JOB_NAME_LABEL)
                if job:
                    self.pods.setdefault((namespace, job), {})[item["metadata"]["name"]] = dict(
                        item
                    )
            jobs = list(self.jobs.values())
        for job in jobs:
            self.backend.update(self, job["metadata"]["namespace"], job["metadata"]["name"])

    def on_job_event(self, kind: str, obj: Obj) -> None:
        meta = obj["metadata"]
        where = (meta["namespace"], meta["name"])
        with self.lock:
            if kind == "DELETED":
                self.jobs.pop(where, None)
            else:
                self.jobs[where] = dict(obj)
        self.backend.update(self, *where, deleted_job=dict(obj) if kind == "DELETED" else None)

    def on_pod_event(self, kind: str, obj: Obj) -> None:
        meta = obj["metadata"]
        job = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
        if not job:
            return
        where = (meta["namespace"], job)
        with self.lock:
            pods = self.pods.setdefault(where, {})
            if kind == "DELETED":
                pods.pop(meta["name"], None)
            else:
                pods[meta["name"]] = dict(obj)
        self.backend.update(self, *where)

    def snapshot(
        self, namespace: str, name: str
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        with self.lock:
            job = self.jobs.get((namespace, name))
            pods = list(self.pods.get((namespace, name), {}).values())
        return job, pods

    def unit_jobs(self, namespace: str, experiment_id: int, work_unit_id: int) -> list[str]:
        with self.lock:
            return [
                name
                for (ns, name), job in self.jobs.items()
                if ns == namespace
                and key_of(job) is not None
                and (key_of(job) or JobKey(0, 0, "")).unit == (experiment_id, work_unit_id)
            ]


class KubernetesBackend(Backend):
    """Runs jobs with the Kubernetes executor on the cluster of their kubeconfig context."""

    name: ClassVar[str] = "kubernetes"
    reports_starting: ClassVar[bool] = True

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._clusters: dict[str, _Cluster] = {}
        self._availability: tuple[float, Availability] | None = None
        self._probed = threading.Event()
        self._probing = True
        # Off the daemon's start path: importing the client and reaching the server take time.
        threading.Thread(target=self._refresh, name="k8s-probe", daemon=True).start()
        self._workers = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="k8s-api")
        self._cancelled: set[JobKey] = set()
        self._reported: dict[JobKey, tuple[int, str, str]] = {}
        self._logs = LogCollector(context.job_dirs, context.config.log_cap_bytes)
        self._following: set[JobKey] = set()
        self._deferred: set[JobKey] = set()

    # -- the cluster ------------------------------------------------------------------------

    @property
    def _default_context(self) -> str:
        return self.context.config.kubernetes_context

    def _cluster(self, context: str) -> _Cluster:
        context = context or self._default_context
        with self._lock:
            cluster = self._clusters.get(context)
            if cluster is not None:
                return cluster
        try:
            api_client = client.load(self.context.config.kubeconfig, context)
        except client.ConfigError as error:
            raise BackendUnavailableError(str(error)) from None
        with self._lock:
            return self._clusters.setdefault(context, _Cluster(self, context, api_client))

    def accepts(self, job: pb.Job) -> bool:
        return bool(job.executor.WhichOneof("kind") == "kubernetes")

    def check(self, job: pb.Job, field: str) -> None:
        checks.check_job(job, field)

    def availability(self) -> Availability:
        """The last probe's answer; probes run in the background, at most every 10 s."""
        with self._lock:
            cached = self._availability
            stale = cached is None or time.monotonic() - cached[0] > _AVAILABILITY_TTL
            if stale and not self._probing:
                self._probing = True
                threading.Thread(target=self._refresh, name="k8s-probe", daemon=True).start()
        if cached is None:
            # The first probe (started with the daemon) usually has answered by now.
            self._probed.wait(_FIRST_PROBE_WAIT)
            cached = self._availability
        if cached is None:
            return Availability(
                False, "still connecting to the Kubernetes API server; retry in a few seconds"
            )
        return cached[1]

    def _refresh(self) -> None:
        availability = self._probe()
        with self._lock:
            self._availability = (time.monotonic(), availability)
            self._probing = False
        self._probed.set()

    def _probe(self) -> Availability:
        try:
            cluster = self._cluster("")
        except BackendUnavailableError as error:
            return Availability(False, str(error))
        server = client.server_url(cluster.api_client)
        try:
            response = cluster.version.get_code(_preload_content=False, _request_timeout=(3, 5))
            response.release_conn()
        except Exception as error:  # any failure: say which server and why
            status = getattr(error, "status", None)
            if status in (401, 403):
                return Availability(
                    False,
                    f"the Kubernetes API server {server} refuses the daemon's credentials (HTTP "
                    f"{status}); fix the user of the kubeconfig context",
                )
            if status is not None and status not in client.RETRYABLE:
                return AVAILABLE  # it answers
            problem = f"HTTP {status}" if status else f"{type(error).__name__}: {error}"
            return Availability(
                False,
                f"the Kubernetes API server {server} does not answer ({problem}); check the "
                "daemon's --kubeconfig and --kubernetes_context, and that the cluster is reachable",
            )
        return AVAILABLE

    # -- starting ---------------------------------------------------------------------------

    def start(self, specs: Sequence[LaunchSpec]) -> list[str]:
        for spec in specs:
            try:
                checks.check_job(spec.job)
            except InvalidArgumentError as error:
                raise ValueError(str(error)) from None
        first = specs[0]
        executor = first.job.executor.kubernetes
        context = executor.context or self._default_context
        namespace = executor.namespace or "default"
        for spec in specs[1:]:
            other = spec.job.executor.kubernetes
            if (other.context or self._default_context, other.namespace or "default") != (
                context,
                namespace,
            ):
                raise ValueError(
                    "the Kubernetes jobs of one work unit must share their namespace and "
                    f"context: {first.key.job_name} and {spec.key.job_name} differ"
                )
        cluster = self._cluster(context)
        unit = manifests.Unit(
            first.key.experiment_id, first.key.work_unit_id, namespace, first.experiment_title
        )
        requests = [
            manifests.JobRequest(spec.key.job_name, spec.job, tuple(spec.args), spec.env)
            for spec in specs
        ]
        peers = _peer_requests(first, requests)
        cluster.watch(namespace)
        self._workers.submit(self._create_unit, cluster, unit, requests, peers)
        return [
            str(Handle(context if executor.context else "", namespace, unit.job_name(r.name)))
            for r in requests
        ]

    def _create(self, create: Any, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Creates an object, or returns the one of that name already there (idempotent)."""
        try:
            created: dict[str, Any] = client.call(create, namespace, body, stop=self.stopping)
            return created
        except client.ApiError as error:
            if error.status != 409:
                raise
        return {}

    def _create_unit(
        self,
        cluster: _Cluster,
        unit: manifests.Unit,
        requests: Sequence[manifests.JobRequest],
        peers: Sequence[manifests.JobRequest],
    ) -> None:
        try:
            parent = self._create(
                cluster.core.create_namespaced_config_map,
                unit.namespace,
                manifests.parent_manifest(unit, peers),
            ) or client.call(
                cluster.core.read_namespaced_config_map,
                unit.name,
                unit.namespace,
                stop=self.stopping,
            )
            self._create(
                cluster.core.create_namespaced_service,
                unit.namespace,
                manifests.service_manifest(unit, parent),
            )
        except Exception as error:  # every job of the unit fails with it
            for request in requests:
                self._refused(unit, request, error)
            return
        for request in requests:
            key = JobKey(unit.experiment_id, unit.work_unit_id, request.name)
            if key in self._cancelled:
                self._report_once(
                    JobObservation(
                        key, pb.JOB_STATE_CANCELLED, "Not created", "cancelled before it started"
                    )
                )
                continue
            try:
                self._create(
                    cluster.batch.create_namespaced_job,
                    unit.namespace,
                    manifests.job_manifest(unit, peers, request, parent),
                )
            except Exception as error:
                self._refused(unit, request, error)

    def _refused(self, unit: manifests.Unit, request: manifests.JobRequest, error: Any) -> None:
        if self.stopping.is_set():
            return
        key = JobKey(unit.experiment_id, unit.work_unit_id, request.name)
        _log.warning("creating %s on Kubernetes: %s", key, error)
        self._report_once(
            JobObservation(
                key,
                pb.JOB_STATE_FAILED,
                "Rejected",
                f"the Kubernetes API server refused the job: {error}",
            )
        )

    # -- observing --------------------------------------------------------------------------

    def _report_once(self, observation: JobObservation) -> None:
        signature = (observation.state, observation.native_state, observation.reason)
        with self._lock:
            previous = self._reported.get(observation.key)
            if previous == signature or (previous is not None and previous[0] in _FINAL):
                return
            self._reported[observation.key] = signature
        self.report(observation)

    def update(
        self,
        cluster: _Cluster,
        namespace: str,
        name: str,
        deleted_job: dict[str, Any] | None = None,
    ) -> None:
        """Recomputes the state of the launcher job behind Job `name` and reports a change."""
        job, pods = cluster.snapshot(namespace, name)
        key = key_of(job or deleted_job or {})
        if key is None:
            return
        with self._lock:
            cancelled = key in self._cancelled
        observation = states.observe(
            key, job, pods, deleted=deleted_job is not None, cancelled=cancelled
        )
        if observation is None:
            return
        if job is not None and states.lacks_pod_detail(job, pods):
            with self._lock:
                first = key not in self._deferred
                self._deferred.add(key)
            if first:
                # The pod watch usually brings the failed pod's reason within moments.
                timer = threading.Timer(
                    _POD_DETAIL_WAIT, self.update, (cluster, namespace, name, deleted_job)
                )
                timer.daemon = True
                timer.start()
                return
        if observation.state in _FINAL and job is not None:
            # Keep the last lines while the API server still has them.
            replicas = int((job.get("spec") or {}).get("parallelism") or 1)
            self._logs.capture(key, cluster.core, pods, replicas, follow=False)
        elif job is not None and key in self._following:
            replicas = int((job.get("spec") or {}).get("parallelism") or 1)
            self._logs.capture(key, cluster.core, pods, replicas, follow=True)
        self._report_once(observation)
        if deleted_job is not None:
            self._maybe_remove_unit(cluster, namespace, key)

    def _maybe_remove_unit(self, cluster: _Cluster, namespace: str, key: JobKey) -> None:
        """Once a cancelled unit has no Job left, its parent goes (and the Service with it)."""
        if cluster.unit_jobs(namespace, *key.unit):
            return
        with self._lock:
            if key not in self._cancelled:
                return
        parent = names.unit_name(*key.unit)
        self._workers.submit(self._delete_parent, cluster, namespace, parent)

    def _delete_parent(self, cluster: _Cluster, namespace: str, name: str) -> None:
        try:
            client.call(
                cluster.core.delete_namespaced_config_map,
                name,
                namespace,
                body={"propagationPolicy": "Background"},
                stop=self.stopping,
            )
        except client.ApiError as error:
            if error.status != 404:
                _log.warning("removing %s/%s: %s", namespace, name, error)

    # -- cancelling -------------------------------------------------------------------------

    def _is_final(self, key: JobKey) -> bool:
        with self._lock:
            reported = self._reported.get(key)
        return reported is not None and reported[0] in _FINAL

    def cancel(self, key: JobKey, handle: str, grace_period: datetime.timedelta) -> None:
        if self._is_final(key):
            return  # finished: its objects stay, with its logs and status
        with self._lock:
            self._cancelled.add(key)
        if not handle:
            # The start is under way: its worker skips the job if not created yet, else the
            # job is found by its labels and deleted.
            self._workers.submit(self._cancel_unrecorded, key, grace_period)
            return
        where = Handle.parse(handle)
        try:
            cluster = self._cluster(where.context)
        except BackendUnavailableError as error:
            _log.warning("cannot cancel %s: %s", key, error)
            return
        grace = max(0, round(grace_period.total_seconds()))
        self._workers.submit(self._delete_job, cluster, key, where, grace)

    def _cancel_unrecorded(self, key: JobKey, grace_period: datetime.timedelta) -> None:
        try:
            cluster = self._cluster("")
        except BackendUnavailableError:
            return
        for _ in range(20):
            found = self._find(cluster, key)
            if found is not None:
                grace = max(0, round(grace_period.total_seconds()))
                self._delete_job(cluster, key, found, grace)
                return
            if self._is_final(key) or self.stopping.wait(0.5):
                return

    def _delete_job(self, cluster: _Cluster, key: JobKey, where: Handle, grace: int) -> None:
        try:
            client.call(
                cluster.batch.delete_namespaced_job,
                where.name,
                where.namespace,
                body={"propagationPolicy": "Foreground", "gracePeriodSeconds": grace},
                stop=self.stopping,
            )
        except client.ApiError as error:
            if error.status == 404:
                job, _ = cluster.snapshot(where.namespace, where.name)
                if job is None:
                    self._report_once(
                        JobObservation(
                            key, pb.JOB_STATE_CANCELLED, "Deleted", "cancelled by request"
                        )
                    )
                return
            _log.warning("cancelling %s: %s", key, error)
            return
        # The garbage collector would give pods their own grace period: ask for ours.
        _, pods = cluster.snapshot(where.namespace, where.name)
        for pod in pods:
            try:
                client.call(
                    cluster.core.delete_namespaced_pod,
                    pod["metadata"]["name"],
                    where.namespace,
                    body={"gracePeriodSeconds": grace},
                    stop=self.stopping,
                    attempts=5,
                )
            except Exception as error:  # gone already, or the GC's grace
                _log.debug("deleting pod %s: %s", pod["metadata"]["name"], error)

    # -- after a restart --------------------------------------------------------------------

    def reattach(self, key: JobKey, handle: str) -> JobObservation:
        try:
            if handle:
                where = Handle.parse(handle)
                cluster = self._cluster(where.context)
            else:
                cluster = self._cluster("")
                found = self._find(cluster, key)
                if found is None:
                    return JobObservation(key, pb.JOB_STATE_PENDING)
                where = found
        except BackendUnavailableError as error:
            return JobObservation(
                key, pb.JOB_STATE_STARTING, "Unknown", f"cannot reach the cluster: {error}"
            )
        watches = cluster.watch(where.namespace)
        deadline = time.monotonic() + _REATTACH_WAIT
        for watch in watches:
            watch.synced.wait(timeout=max(0.0, deadline - time.monotonic()))
        if not all(watch.synced.is_set() for watch in watches):
            # Slow to answer: don't hold up the daemon's start. The watches report the real
            # state as soon as they have listed; until then the job is taken as still running.
            return JobObservation(key, pb.JOB_STATE_RUNNING)
        job, pods = cluster.snapshot(where.namespace, where.name)
        if job is None:
            # Never created (the daemon stopped first): the scheduler starts it, idempotently.
            return JobObservation(key, pb.JOB_STATE_PENDING)
        observation = states.observe(key, job, pods, deleted=False, cancelled=False)
        return observation or JobObservation(key, pb.JOB_STATE_RUNNING)

    def _find(self, cluster: _Cluster, key: JobKey) -> Handle | None:
        """A job of `key` created before the daemon could record it, by its labels."""
        selector = names.selector(names.job_labels(*key.unit, key.job_name))
        try:
            listing = client.call(
                cluster.batch.list_job_for_all_namespaces,
                label_selector=selector,
                stop=self.stopping,
                attempts=5,
            )
        except Exception as error:
            _log.warning("looking for %s: %s", key, error)
            return None
        for item in listing.get("items") or []:
            meta = item["metadata"]
            return Handle("", meta["namespace"], meta["name"])
        return None

    # -- logs -------------------------------------------------------------------------------

    def logs(self, key: JobKey, handle: str) -> LogSource:
        def follow() -> None:
            self._logs.wait(key, 10.0)
            with self._lock:
                if key in self._following:
                    return
                self._following.add(key)
            if not handle:
                return
            where = Handle.parse(handle)
            try:
                cluster = self._cluster(where.context)
            except BackendUnavailableError:
                return
            for watch in cluster.watch(where.namespace):
                watch.synced.wait(5.0)
            job, pods = cluster.snapshot(where.namespace, where.name)
            replicas = int(((job or {}).get("spec") or {}).get("parallelism") or 1)
            final = self._is_final(key)
            self._logs.capture(key, cluster.core, pods, replicas, follow=not final)
            if final:
                self._logs.wait(key, 10.0)

        return self._logs.source(key, follow)

    def log_location(self, key: JobKey, handle: str) -> str:
        if not handle:
            labels = names.selector(names.job_labels(*key.unit, key.job_name))
            return f"kubectl logs --all-namespaces --prefix -l {labels}"
        where = Handle.parse(handle)
        context = f" --context={where.context}" if where.context else ""
        return (
            f"kubectl{context} -n {where.namespace} logs --prefix -l {JOB_NAME_LABEL}={where.name}"
        )

    def close(self) -> None:
        self.stopping.set()
        with self._lock:
            clusters = list(self._clusters.values())
        for cluster in clusters:
            for watches in cluster.watches.values():
                for watch in watches:
                    watch.close()
        self._workers.shutdown(wait=False, cancel_futures=True)


def _peer_requests(
    first: LaunchSpec, requests: Sequence[manifests.JobRequest]
) -> list[manifests.JobRequest]:
    """Every job of the unit for peer addresses: the ones started here, then the others
    (single replicas: jobs of other backends, or started separately)."""
    by_name = {r.name: r for r in requests}
    result = list(requests)
    for peer in first.peers:
        if peer not in by_name:
            result.append(manifests.JobRequest(peer, pb.Job(name=peer), (), {}))
    return result


__all__ = ["Handle", "KubernetesBackend", "key_of"]
