"""The node agent: pods bound to this node become Docker containers; their status goes back."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import docker
import docker.errors
import kubernetes
from kubernetes.client.exceptions import ApiException

_log = logging.getLogger(__name__)
Obj = dict[str, Any]
NODE_LABEL = "xmanager.test/node"
POD_UID_LABEL = "xmanager.test/pod-uid"
_PULL_BACKOFF = 2.0
_FIELD = re.compile(r"metadata\.(?:annotations|labels)\['(?P<key>[^']+)'\]")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _docker_time(value: str) -> str:
    return value[:19] + "Z" if value and not value.startswith("0001") else _now()


def _condition(type_: str, status: str = "True", reason: str = "") -> Obj:
    condition = {"type": type_, "status": status, "lastTransitionTime": _now()}
    if reason:
        condition["reason"] = reason
    return condition


def _memory_bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 1000, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(float(quantity))


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


class _Pod:
    """One pod's life on this node, run by its own thread."""

    def __init__(self, agent: NodeAgent, pod: Obj) -> None:
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.container: Any = None
        self.deleting = threading.Event()
        self.stopped = threading.Event()
        self.started_at = ""
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)

    # -- status -----------------------------------------------------------------------------

    def _patch(self, status: Obj) -> None:
        try:
            self.agent.core.patch_namespaced_pod_status(
                self.name, self.namespace, {"status": status}
            )
        except ApiException as error:
            if error.status != 404:
                _log.warning("status of %s/%s: %s", self.namespace, self.name, error)

    def _container_status(self, state: Obj, ready: bool = False) -> Obj:
        spec = self.pod["spec"]["containers"][0]
        return {
            "name": spec["name"],
            "image": spec["image"],
            "imageID": self.container.image.id if self.container is not None else "",
            "containerID": f"docker://{self.container.id}" if self.container is not None else "",
            "ready": ready,
            "restartCount": 0,
            "started": "running" in state,
            "state": state,
        }

    def _waiting(self, reason: str, message: str = "") -> None:
        waiting: Obj = {"reason": reason}
        if message:
            waiting["message"] = message
        self._patch(
            {
                "phase": "Pending",
                "conditions": [_condition("PodScheduled"), _condition("Initialized")],
                "containerStatuses": [self._container_status({"waiting": waiting})],
            }
        )

    # -- the life cycle ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._pull() and not self.deleting.is_set():
                self._start()
                self._wait()
        except Exception:
            if not self.agent.stopping:
                _log.exception("pod %s/%s", self.namespace, self.name)
        finally:
            self.stopped.set()
            if self.deleting.is_set():
                self._confirm_deletion()

    def _pull(self) -> bool:
        image = self.pod["spec"]["containers"][0]["image"]
        self._waiting("ContainerCreating")
        attempts = 0
        while not self.deleting.is_set():
            try:
                self.agent.docker.images.get(image)
                return True
            except docker.errors.ImageNotFound:
                pass
            try:
                self.agent.docker.images.pull(image)
                return True
            except docker.errors.APIError as error:
                attempts += 1
                message = f'Failed to pull image "{image}": {error.explanation or error}'
                self._waiting("ErrImagePull" if attempts == 1 else "ImagePullBackOff", message)
                self.deleting.wait(_PULL_BACKOFF)
        return False

    def _env(self, container: Obj) -> dict[str, str]:
        meta = self.pod["metadata"]
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = item["value"]
                continue
            path = (item.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath", "")
            match = _FIELD.fullmatch(path)
            if match is not None:
                kind = "annotations" if ".annotations[" in path else "labels"
                env[item["name"]] = (meta.get(kind) or {}).get(match["key"], "")
            elif path in ("metadata.name", "metadata.namespace", "metadata.uid"):
                env[item["name"]] = meta[path.split(".")[1]]
            elif path == "spec.nodeName":
                env[item["name"]] = self.agent.node
        return env

    def _start(self) -> None:
        spec = self.pod["spec"]
        container = spec["containers"][0]
        hostname = spec.get("hostname") or self.name
        aliases = [hostname]
        search: list[str] = []
        if spec.get("subdomain"):
            base = f"{hostname}.{spec['subdomain']}"
            aliases += [
                base,
                f"{base}.{self.namespace}.svc",
                f"{base}.{self.namespace}.svc.cluster.local",
            ]
            search.append(f"{spec['subdomain']}.{self.namespace}.svc.cluster.local")
        search += [f"{self.namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        limits = (container.get("resources") or {}).get("limits") or {}
        options: dict[str, Any] = {}
        if "memory" in limits:
            options["mem_limit"] = options["memswap_limit"] = _memory_bytes(limits["memory"])
        if "cpu" in limits:
            options["nano_cpus"] = int(_cpu(limits["cpu"]) * 1e9)
        network = self.agent.docker.api.create_networking_config(
            {self.agent.network: self.agent.docker.api.create_endpoint_config(aliases=aliases)}
        )
        created = self.agent.docker.api.create_container(
            container["image"],
            command=container.get("args") or None,
            hostname=hostname,
            environment=self._env(container),
            labels={NODE_LABEL: self.agent.node, POD_UID_LABEL: self.uid},
            networking_config=network,
            host_config=self.agent.docker.api.create_host_config(
                network_mode=self.agent.network, dns_search=search, **options
            ),
            name=f"k8s_{self.namespace}_{self.name}",
            entrypoint=container.get("command") or None,
        )
        self.container = self.agent.docker.containers.get(created["Id"])
        self.container.start()
        self.container.reload()
        state = self.container.attrs["State"]
        self.started_at = _docker_time(state.get("StartedAt", ""))
        ip = self.container.attrs["NetworkSettings"]["Networks"][self.agent.network]["IPAddress"]
        ready = [_condition(t) for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
        self._patch(
            {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": "127.0.0.1",
                "startTime": self.started_at,
                "conditions": ready,
                "containerStatuses": [
                    self._container_status({"running": {"startedAt": self.started_at}}, True)
                ],
            }
        )

    def _wait(self) -> None:
        result = self.container.wait()
        self.container.reload()
        state = self.container.attrs["State"]
        code = int(result.get("StatusCode", state.get("ExitCode", 0)))
        reason = "Completed" if code == 0 else "Error"
        if state.get("OOMKilled"):
            reason = "OOMKilled"
        terminated = {
            "exitCode": code,
            "reason": reason,
            "startedAt": self.started_at,
            "finishedAt": _docker_time(state.get("FinishedAt", "")),
            "containerID": f"docker://{self.container.id}",
        }
        if self.agent.evicted(self.uid):
            return  # the eviction already wrote the pod's final status
        conditions = [_condition("PodScheduled"), _condition("Initialized")]
        conditions += [
            _condition("ContainersReady", "False", "PodCompleted"),
            _condition("Ready", "False", "PodCompleted"),
        ]
        self._patch(
            {
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": conditions,
                "containerStatuses": [self._container_status({"terminated": terminated})],
            }
        )

    # -- stopping ---------------------------------------------------------------------------

    def request_stop(self, grace: int) -> None:
        """Deletion asked: SIGTERM, then SIGKILL after the grace period (the container stop)."""
        if self.deleting.is_set():
            return
        self.deleting.set()
        if self.container is not None:
            threading.Thread(target=lambda: self._stop_container(grace), daemon=True).start()

    def _stop_container(self, grace: int) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self.container.stop(timeout=max(0, grace))

    def _confirm_deletion(self) -> None:
        with contextlib.suppress(ApiException):
            self.agent.core.delete_namespaced_pod(self.name, self.namespace, grace_period_seconds=0)

    def remove(self) -> None:
        self.deleting.set()
        if self.container is not None:
            with contextlib.suppress(docker.errors.APIError):
                self.container.remove(force=True)


class NodeAgent:
    """Registers `node`, runs the pods bound to it, serves their logs like a kubelet."""

    def __init__(
        self,
        api_client: Any,
        node: str,
        *,
        labels: Mapping[str, str] | None = None,
        allocatable: Mapping[str, str] | None = None,
        network: str | None = None,
    ) -> None:
        self.node = node
        # Any: the client is called with plain dicts, which its stubs do not admit.
        self.core: Any = kubernetes.client.CoreV1Api(api_client)
        self.docker: Any = docker.from_env(timeout=120)
        self.network = network or f"xm-k8s-{node}"
        self.labels = {"kubernetes.io/hostname": node, **(labels or {})}
        self.allocatable = {"cpu": "64", "memory": "256Gi", "pods": "1000", **(allocatable or {})}
        self._pods: dict[str, _Pod] = {}
        self._evicted: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        handler = type("Kubelet", (_Kubelet,), {"agent": self})
        self._kubelet = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._kubelet.daemon_threads = True
        self._threads = [
            threading.Thread(target=self._kubelet.serve_forever, daemon=True),
            threading.Thread(target=self._watch, name="node-agent-watch", daemon=True),
        ]

    def start(self) -> NodeAgent:
        if not self.docker.networks.list(names=[self.network]):
            self.docker.networks.create(self.network, labels={NODE_LABEL: self.node})
        self._register()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, remove_containers: bool = True) -> None:
        self._stop.set()
        self._kubelet.shutdown()
        self._kubelet.server_close()
        if remove_containers:
            for container in self.docker.containers.list(
                all=True, filters={"label": f"{NODE_LABEL}={self.node}"}
            ):
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True)
            for network in self.docker.networks.list(names=[self.network]):
                with contextlib.suppress(docker.errors.APIError):
                    network.remove()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def evicted(self, uid: str) -> bool:
        with self._lock:
            return uid in self._evicted

    def _register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node, "labels": self.labels},
        }
        try:
            self.core.create_node(body)
        except ApiException as error:
            if error.status != 409:
                raise
        status = {
            "conditions": [_condition("Ready", reason="KubeletReady")],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self._kubelet.server_address[1]}},
            "allocatable": self.allocatable,
            "capacity": self.allocatable,
        }
        self.core.patch_node_status(self.node, {"status": status})

    # -- pods bound here --------------------------------------------------------------------

    def _watch(self) -> None:
        selector = f"spec.nodeName={self.node}"
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    listing = self.core.list_pod_for_all_namespaces(field_selector=selector)
                    rv = listing.metadata.resource_version
                    for pod in listing.items:
                        self._handle("ADDED", self.core.api_client.sanitize_for_serialization(pod))
                response = self.core.list_pod_for_all_namespaces(
                    field_selector=selector,
                    watch=True,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=60,
                    _preload_content=False,
                    _request_timeout=(5, 90),
                )
                for line in _lines(response):
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        rv = "" if obj.get("code") == 410 else rv
                        break
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if event["type"] != "BOOKMARK":
                        self._handle(event["type"], obj)
                    if self._stop.is_set():
                        return
            except Exception as error:  # outages: retry, as a kubelet does
                _log.info("node agent watch: %s", error)
                self._stop.wait(1.0)

    def _handle(self, type_: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            known = self._pods.get(uid)
            if type_ == "DELETED":
                self._pods.pop(uid, None)
                self._evicted.discard(uid)
                if known is not None:
                    known.remove()
                return
            phase = pod.get("status", {}).get("phase")
            if known is None:
                if phase in ("Succeeded", "Failed"):
                    return
                known = self._pods[uid] = _Pod(self, pod)
                known.thread.start()
            else:
                known.pod = {**known.pod, "metadata": pod["metadata"]}
        if pod["metadata"].get("deletionTimestamp"):
            grace = int(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
            if known.stopped.is_set():
                known.deleting.set()
                known._confirm_deletion()
            else:
                known.request_stop(grace)
        elif phase == "Failed" and pod.get("status", {}).get("reason") == "Evicted":
            with self._lock:
                self._evicted.add(uid)
            known.request_stop(0)

    def container_of(self, namespace: str, name: str) -> Any:
        with self._lock:
            for pod in self._pods.values():
                if (pod.namespace, pod.name) == (namespace, name):
                    return pod.container
        return None


def _lines(response: Any) -> Iterator[bytes]:
    buffer = b""
    for chunk in response.stream(64 * 1024, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    response.release_conn()


class _Kubelet(BaseHTTPRequestHandler):
    """`/containerLogs/NAMESPACE/POD/CONTAINER`, the kubelet endpoint the API server proxies."""

    agent: NodeAgent
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        parts = parsed.path.strip("/").split("/")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        container = (
            self.agent.container_of(parts[1], parts[2])
            if len(parts) == 4 and parts[0] == "containerLogs"
            else None
        )
        if container is None:
            data = b"container not found"
            self.send_response(404)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        follow = query.get("follow") in ("true", "1")
        tail = int(query["tailLines"]) if "tailLines" in query else "all"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            which = query.get("stream", "All")
            output = container.logs(
                stream=True,
                follow=follow,
                tail=tail,
                stdout=which in ("All", "Stdout"),
                stderr=which in ("All", "Stderr"),
            )
            for data in output:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, docker.errors.APIError):
            self.close_connection = True
