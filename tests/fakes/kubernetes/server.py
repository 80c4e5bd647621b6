"""An emulated Kubernetes API server: the HTTP/JSON protocol the official client speaks.

Serves create, get, list (label and field selectors), delete (graceful, with propagation),
status patches, watch streams (resourceVersion, bookmarks, 410 Gone) and pod logs, which it
proxies to the node's kubelet endpoint as the real API server does. Fault injection through
`/_emulator/faults`: disconnecting watches, compacting history (410 Gone), bursts of 429/5xx.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import urllib3

from tests.fakes.kubernetes.controller import evict
from tests.fakes.kubernetes.store import KINDS, ApiError, Obj, Store
from tests.fakes.kubernetes.store import field_match as store_field
from tests.fakes.kubernetes.store import label_match as store_label

_PATH = re.compile(
    r"/(?:api/v1|apis/batch/v1)"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[a-z]+))?"
)
_BOOKMARK_SECONDS = 5.0


def _merge(target: Obj, patch: Obj) -> None:
    """JSON merge patch (RFC 7386); strategic merge patches are treated the same here."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class Faults:
    """Injected failures, consumed by the next requests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.errors: list[int] = []  # status codes for the next non-watch requests
        self.watch_generation = 0  # bumping it ends every open watch abruptly

    def next_error(self) -> int | None:
        with self.lock:
            return self.errors.pop(0) if self.errors else None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients hanging up mid-stream are normal for watches and log follows


class ApiServer:
    """The emulator: a store, an HTTP server on loopback, request counts for benchmarks."""

    def __init__(self, store: Store, port: int = 0) -> None:
        self.store = store
        self.faults = Faults()
        self.requests: dict[str, int] = {}
        self.requests_lock = threading.Lock()
        self._http = urllib3.PoolManager()
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = _QuietServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.faults.watch_generation += 1
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, verb: str) -> None:
        with self.requests_lock:
            self.requests[verb] = self.requests.get(verb, 0) + 1

    def write_kubeconfig(self, path: Path, context: str = "emulator") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "emulator"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    def kubelet_url(self, node_name: str) -> str:
        node = self.store.get("nodes", "", node_name)
        status = node.get("status", {})
        address = next(
            (a["address"] for a in status.get("addresses", []) if a["type"] == "InternalIP"),
            "127.0.0.1",
        )
        port = status.get("daemonEndpoints", {}).get("kubeletEndpoint", {}).get("Port", 10250)
        return f"http://{address}:{port}"


class _Handler(BaseHTTPRequestHandler):
    api: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # -- plumbing ---------------------------------------------------------------------------

    def _send_json(self, code: int, body: Obj, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunked(self) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _body(self) -> Obj:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        data = json.loads(self.rfile.read(length) or b"{}")
        return data if isinstance(data, dict) else {"_list": data}

    def _dispatch(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        try:
            if parsed.path.rstrip("/") == "/version":
                self.api.count("GET")
                self._send_json(200, {"major": "1", "minor": "37", "gitVersion": "v1.37.0-emu"})
                return
            if parsed.path.startswith("/_emulator/"):
                self._control(parsed.path, method)
                return
            match = _PATH.fullmatch(parsed.path)
            if match is None or match["plural"] not in KINDS:
                raise ApiError(404, "NotFound", f"the server could not find {parsed.path}")
            watching = query.get("watch") in ("true", "1")
            self.api.count("WATCH" if watching else method)
            if not watching:
                code = self.api.faults.next_error()
                if code is not None:
                    headers = {"Retry-After": "1"} if code == 429 else {}
                    error = ApiError(
                        code,
                        "TooManyRequests" if code == 429 else "InternalError",
                        f"injected fault {code}",
                    )
                    self._send_json(code, error.status(), headers)
                    return
            self._route(method, match, query, watching)
        except ApiError as error:
            self._send_json(error.code, error.status())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- the API ----------------------------------------------------------------------------

    def _route(
        self, method: str, match: re.Match[str], query: dict[str, str], watching: bool
    ) -> None:
        store = self.api.store
        plural, name, sub = match["plural"], match["name"], match["sub"]
        namespace = match["ns"] if plural != "nodes" else ""
        if method == "GET" and name is None:
            if watching:
                self._watch(plural, match["ns"] if plural != "nodes" else None, query)
                return
            items, rv = store.list(
                plural,
                match["ns"] if plural != "nodes" else None,
                query.get("labelSelector", ""),
                query.get("fieldSelector", ""),
            )
            api_version, kind = KINDS[plural]
            self._send_json(
                200,
                {
                    "apiVersion": api_version,
                    "kind": f"{kind}List",
                    "metadata": {"resourceVersion": str(rv)},
                    "items": items,
                },
            )
        elif method == "GET" and sub == "log":
            self._logs(namespace, name, query)
        elif method == "GET":
            self._send_json(200, store.get(plural, namespace, name))
        elif method == "POST" and name is None:
            self._send_json(201, store.create(plural, namespace, self._body()))
        elif method in ("PATCH", "PUT") and name is not None:
            body = self._body()

            def mutate(obj: Obj) -> None:
                if method == "PUT":
                    if sub == "status":
                        obj["status"] = body.get("status", {})
                    else:
                        body["metadata"] = {**obj["metadata"], **body.get("metadata", {})}
                        obj.clear()
                        obj.update(body)
                else:
                    patch = body if sub != "status" else {"status": body.get("status", {})}
                    if sub == "status" and "metadata" in body:
                        patch["metadata"] = body["metadata"]
                    _merge(obj, patch)

            self._send_json(200, store.update(plural, namespace, name, mutate))
        elif method == "DELETE" and name is not None:
            body = self._body()
            propagation = body.get("propagationPolicy") or query.get("propagationPolicy")
            grace = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
            obj = store.delete(
                plural, namespace, name, propagation, None if grace is None else int(grace)
            )
            self._send_json(200, obj)
        else:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    def _watch(self, plural: str, namespace: str | None, query: dict[str, str]) -> None:
        store = self.api.store
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        timeout = float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        generation = self.api.faults.watch_generation
        requested = query.get("resourceVersion") or ""
        deadline = time.monotonic() + timeout
        self._start_chunked("application/json")

        def send(type_: str, obj: Obj) -> None:
            self._chunk(json.dumps({"type": type_, "object": obj}).encode() + b"\n")

        def matches(obj: Obj) -> bool:
            obj_ns = obj.get("metadata", {}).get("namespace", "")
            return (
                (namespace is None or obj_ns == namespace)
                and store_label(obj, labels)
                and store_field(obj, fields)
            )

        try:
            if requested in ("", "0"):
                items, rv = store.list(plural, namespace, labels, fields)
                for item in items:
                    send("ADDED", item)
            else:
                rv = int(requested)
            last_bookmark = time.monotonic()
            while time.monotonic() < deadline:
                if self.api.faults.watch_generation != generation:
                    # An abrupt disconnect: no terminating chunk.
                    self.close_connection = True
                    return
                try:
                    events = store.events_after(rv)
                except ApiError as error:
                    send("ERROR", error.status())
                    break
                for event in events:
                    rv = event.rv
                    if event.plural == plural and matches(event.obj):
                        send(event.type, event.obj)
                if not events:
                    if bookmarks and time.monotonic() - last_bookmark > _BOOKMARK_SECONDS:
                        api_version, kind = KINDS[plural]
                        send(
                            "BOOKMARK",
                            {
                                "apiVersion": api_version,
                                "kind": kind,
                                "metadata": {"resourceVersion": str(store.resource_version)},
                            },
                        )
                        last_bookmark = time.monotonic()
                    with store.changed:
                        if store.resource_version <= rv:
                            store.changed.wait(0.5)
            self._end_chunked()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _logs(self, namespace: str, name: str, query: dict[str, str]) -> None:
        pod = self.api.store.get("pods", namespace, name)
        node = pod.get("spec", {}).get("nodeName")
        container = query.get("container") or pod["spec"]["containers"][0]["name"]
        if not node:
            raise ApiError(
                400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start'
            )
        params = {
            k: v for k, v in query.items() if k in ("follow", "tailLines", "limitBytes", "stream")
        }
        url = (
            f"{self.api.kubelet_url(node)}/containerLogs/{namespace}/{name}/{container}"
            f"?{urllib.parse.urlencode(params)}"
        )
        try:
            response = self.api._http.request("GET", url, preload_content=False, timeout=None)
        except urllib3.exceptions.HTTPError as error:
            raise ApiError(500, "InternalError", f"kubelet unreachable: {error}") from None
        if response.status != 200:
            message = response.data.decode(errors="replace")
            raise ApiError(400, "BadRequest", message or f"kubelet answered {response.status}")
        self._start_chunked("text/plain")
        try:
            for data in _stream(response):
                self._chunk(data)
            self._end_chunked()
        finally:
            response.release_conn()

    # -- fault injection ----------------------------------------------------------------------

    def _control(self, path: str, method: str) -> None:
        body = self._body() if method == "POST" else {}
        faults = self.api.faults
        if path == "/_emulator/faults":
            with faults.lock:
                faults.errors.extend(int(c) for c in body.get("errors", []))
            if body.get("drop_watches"):
                faults.watch_generation += 1
            if body.get("compact"):
                self.api.store.compact()
            self._send_json(200, {})
        elif path == "/_emulator/evict":
            evict(self.api.store, body["namespace"], body["name"])
            self._send_json(200, {})
        elif path == "/_emulator/requests":
            with self.api.requests_lock:
                self._send_json(200, dict(self.api.requests))
        else:
            raise ApiError(404, "NotFound", path)


def _stream(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    while True:
        data = response.read1(64 * 1024) if hasattr(response, "read1") else response.read(4096)
        if not data:
            return
        yield data
