"""A real OCI registry on loopback (Debian's docker-registry, the CNCF distribution registry), in
two configurations: plain HTTP, and TLS with a self-signed CA plus htpasswd basic auth."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import skip_or_fail

USER = "xm-user"
PASSWORD = "s3cret-pass"


@dataclasses.dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    root: Path  # its storage
    certs_dir: Path | None = None  # HOST:PORT/ca.crt inside, for clients
    auth_file: Path | None = None  # a containers auth.json with the right password


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(tmp: Path, extra: str, scheme: str, verify: str | bool) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        skip_or_fail("docker-registry is not installed (./setup.sh test installs it)")
    port = _free_port()
    storage = tmp / "storage"
    storage.mkdir()
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{extra}"
    )
    log = (tmp / "registry.log").open("w")
    process = subprocess.Popen([str(binary), "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{scheme}://127.0.0.1:{port}/v2/", timeout=1, verify=verify)
                break
            except requests.exceptions.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(
                        f"docker-registry did not start: {(tmp / 'registry.log').read_text()}"
                    )
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("registry-plain")
    for host in _start(tmp, "", "http", True):
        yield Registry(host, tmp / "storage")


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("registry-tls")
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        skip_or_fail("htpasswd is not installed (./setup.sh test installs apache2-utils)")
    _make_certs(tmp)
    users = subprocess.run(
        [str(htpasswd), "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True
    ).stdout
    (tmp / "htpasswd").write_text(users)
    extra = (
        f"  tls:\n    certificate: {tmp / 'server.crt'}\n    key: {tmp / 'server.key'}\n"
        f"auth:\n  htpasswd:\n    realm: xm-test\n    path: {tmp / 'htpasswd'}\n"
    )
    for host in _start(tmp, extra, "https", str(tmp / "ca.crt")):
        certs = tmp / "certs.d"
        (certs / host).mkdir(parents=True)
        shutil.copyfile(tmp / "ca.crt", certs / host / "ca.crt")
        auth_file = tmp / "auth.json"
        import base64
        import json

        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        auth_file.write_text(json.dumps({"auths": {host: {"auth": token}}}))
        yield Registry(host, tmp / "storage", certs, auth_file)


def _make_certs(tmp: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "2", "-subj", "/CN=xm test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2",
            "-extfile", "san.ext")  # fmt: skip
