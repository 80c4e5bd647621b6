"""Retries with backoff: the real registry behind a proxy that answers 503 to every third request
and drops the connection of every fifth; the push still completes with the right digest."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import requests

from tests.images import bazel
from tests.registry.conftest import Registry
from xmanager.oci import image as oci_image
from xmanager.oci import registry

BASE_LABEL = "//xm_rules/debian:python_base"


class _FlakyProxy(http.server.BaseHTTPRequestHandler):
    upstream = ""
    count = 0
    faults: ClassVar[list[str]] = []
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def _handle(self) -> None:
        with self.lock:
            type(self).count += 1
            number = self.count
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if number % 5 == 0:
            self.faults.append(f"drop {self.command}")
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if number % 3 == 0:
            self.faults.append(f"503 {self.command}")
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        answer = requests.request(
            self.command, f"http://{self.upstream}{self.path}", headers=headers, data=body,
            allow_redirects=False, timeout=60,
        )  # fmt: skip
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            proxy = f"127.0.0.1:{self.server.server_port}"  # type: ignore[attr-defined]
            self.send_header(key, value.replace(self.upstream, proxy))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = _handle  # noqa: N815


@pytest.fixture
def flaky(plain_registry: Registry) -> Iterator[tuple[str, list[str]]]:
    faults: list[str] = []
    handler = type("Handler", (_FlakyProxy,), {"upstream": plain_registry.host, "faults": faults})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}", faults
    server.shutdown()


def test_push_survives_503s_and_dropped_connections(
    flaky: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent")
    monkeypatch.setattr(registry, "CHUNK_SIZE", 4 << 20)
    tarball: Path = bazel.build_images([BASE_LABEL])[BASE_LABEL].tarball
    host, faults = flaky
    result = registry.push(tarball, f"{host}/xm/flaky:v1")
    assert result.digest == oci_image.read(tarball).manifest_digest
    assert any(f.startswith("503") for f in faults)
    assert any(f.startswith("drop") for f in faults)
