"""The OCI distribution API without a container engine: push an image, pull one.

Push order: every blob the registry lacks (a HEAD first; a cross-repository mount when the
source repository on the same registry has it; else a chunked upload: POST, PATCH per chunk,
PUT with the digest), then the config, then the manifest, last, so a failed push never leaves a
manifest naming missing blobs. Requests are retried with exponential backoff on connection
errors, 429 and 5xx. Authentication: HTTP basic or the registry's bearer-token service, with
credentials from `auth` (never printed).

Every pull and push goes through `locate`, which applies `$XM_REGISTRY_MIRRORS` (see `mirrors`):
what is pushed or pulled, and the reference a push returns, are at the mirror's location.

Registries on loopback (localhost, 127.0.0.1, ::1) are tried over HTTPS then plain HTTP, as
Docker Engine does; a private CA is read from `/etc/docker/certs.d/HOST:PORT/ca.crt`,
`/etc/containers/certs.d/HOST:PORT/ca.crt` or `$XM_REGISTRY_CERTS_DIR/HOST:PORT/ca.crt`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from xmanager.oci import auth, mirrors
from xmanager.oci.image import Image, ImageFiles
from xmanager.oci.image import read as read_image
from xmanager.oci.spec import (
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_LAYOUT_FILE,
    OCI_MANIFEST,
    blob_path,
    dump_canonical,
    sha256_digest,
)

CHUNK_SIZE = 16 << 20
ATTEMPTS = 4
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
_REFERENCE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/)?"
    r"(?P<repository>[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)

Progress = Callable[[str, int, int], None]  # (what, done bytes, total bytes)


class RegistryError(Exception):
    """A registry refused or could not be reached; the message names it and what to do."""


class AuthError(RegistryError):
    """The registry refused the credentials (or wants some)."""


@dataclasses.dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> Reference:
        match = _REFERENCE.match(text)
        if match is None:
            raise RegistryError(
                f"{text!r} is not an image reference like 'registry.example:5000/repo/name:tag'"
            )
        registry = match.group("registry")
        repository = match.group("repository")
        first = text.split("/", 1)[0]
        if registry is None or ("." not in first and ":" not in first and first != "localhost"):
            # Docker Hub, as Docker reads it: `name` is `docker.io/library/name`.
            registry = "docker.io"
            repository = (
                text.split("@", maxsplit=1)[0].rsplit(":", 1)[0]
                if match.group("tag")
                else text.split("@", maxsplit=1)[0]
            )
            if "/" not in repository:
                repository = f"library/{repository}"
        return cls(registry, repository, match.group("tag") or "", match.group("digest") or "")

    def with_digest(self, digest: str) -> str:
        return f"{self.registry}/{self.repository}@{digest}"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def locate(reference: str) -> Reference:
    """The reference parsed and moved to its mirror's location: the one place where
    `$XM_REGISTRY_MIRRORS` applies."""
    ref = Reference.parse(reference)
    try:
        host, repository = mirrors.Mirrors.from_env().rewrite(ref.registry, ref.repository)
    except mirrors.MirrorsError as error:
        raise RegistryError(str(error)) from None
    return dataclasses.replace(ref, registry=host, repository=repository)


@dataclasses.dataclass
class PushResult:
    reference: str  # registry/repository@digest
    digest: str
    uploaded: list[str]
    mounted: list[str]
    present: list[str]


class Client:
    """One registry: its base URL, its credentials, one HTTP session."""

    def __init__(self, registry: str, *, credentials: auth.Credentials | None = None) -> None:
        self.registry = registry
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "xmanager-oci"
        self._credentials = credentials
        self._credentials_looked_up = credentials is not None
        self._token: dict[str, str] = {}  # scope -> bearer token
        self._basic = False
        host = "docker.io" if registry == "docker.io" else registry
        self.host = "registry-1.docker.io" if host == "docker.io" else host
        self.base = ""
        # Passed with every request: requests lets $REQUESTS_CA_BUNDLE override a session's.
        ca = _ca_file(self.host)
        self.verify: str | bool = str(ca) if ca is not None else True

    # -- plumbing ----------------------------------------------------------------------------------

    def _base_url(self) -> str:
        if self.base:
            return self.base
        schemes = ["https", "http"] if self.host.startswith(_LOOPBACK) else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            try:
                answer = self.session.get(
                    f"{scheme}://{self.host}/v2/", timeout=10, verify=self.verify
                )
            except requests.exceptions.SSLError as error:
                last = error
                continue
            except requests.exceptions.ConnectionError as error:
                last = error
                if scheme == "http":
                    break
                continue
            if scheme == "http" and answer.status_code == 400 and last is not None:
                # It speaks TLS (plain HTTP gets 400) and its certificate is not trusted.
                break
            self.base = f"{scheme}://{self.host}"
            return self.base
        raise RegistryError(
            f"registry {self.registry} is unreachable ({_short(last)}); check the host and port, "
            "and for a private CA put it in /etc/docker/certs.d/HOST:PORT/ca.crt"
        )

    def credentials(self) -> auth.Credentials | None:
        if not self._credentials_looked_up:
            self._credentials_looked_up = True
            try:
                self._credentials = auth.lookup(self.registry)
            except auth.CredentialsError as error:
                raise AuthError(str(error)) from None
        return self._credentials

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scope: str,
        ok: tuple[int, ...],
        data: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One call with authentication and retries; raises RegistryError unless `ok`."""
        url = path_or_url if "://" in path_or_url else self._base_url() + path_or_url
        delay = 0.5
        authenticated_once = False
        for attempt in range(1, ATTEMPTS + 1):
            request_headers = dict(headers or {})
            self._authorize(request_headers, scope)
            body = data() if callable(data) else data
            try:
                response = self.session.request(
                    method, url, data=body, headers=request_headers, params=params,
                    stream=stream, timeout=300, allow_redirects=True, verify=self.verify,
                )  # fmt: skip
            except requests.exceptions.ConnectionError as error:
                if attempt == ATTEMPTS:
                    raise RegistryError(
                        f"registry {self.registry}: {method} failed after {ATTEMPTS} attempts "
                        f"({_short(error)})"
                    ) from None
                time.sleep(delay)
                delay *= 2
                continue
            if response.status_code == 401 and not authenticated_once:
                authenticated_once = True
                self._authenticate(response, scope)
                continue
            if response.status_code in {401, 403}:
                raise self._refused(response)
            if (response.status_code == 429 or response.status_code >= 500) and attempt < ATTEMPTS:
                time.sleep(delay)
                delay *= 2
                continue
            if response.status_code not in ok:
                raise RegistryError(
                    f"registry {self.registry}: {method} {urllib.parse.urlsplit(url).path} "
                    f"answered {response.status_code}: {_errors(response)}"
                )
            return response
        raise RegistryError(f"registry {self.registry}: {method} {url} kept failing")

    def _authorize(self, headers: dict[str, str], scope: str) -> None:
        if scope in self._token:
            headers["Authorization"] = f"Bearer {self._token[scope]}"
        elif self._basic:
            credentials = self.credentials()
            if credentials is not None:
                pair = requests.auth._basic_auth_str(credentials.username, credentials.secret)
                headers["Authorization"] = pair

    def _authenticate(self, response: requests.Response, scope: str) -> None:
        challenge = response.headers.get("WWW-Authenticate", "")
        kind, _, rest = challenge.partition(" ")
        if kind.lower() == "basic":
            if self.credentials() is None:
                raise AuthError(
                    f"registry {self.registry} wants a user name and password, and none is "
                    "configured: run `docker login` (or `podman login`) for it, or set "
                    "$REGISTRY_AUTH_FILE"
                )
            self._basic = True
            return
        if kind.lower() != "bearer":
            raise AuthError(f"registry {self.registry}: unsupported authentication {kind!r}")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        params = {"service": fields.get("service", "")}
        params["scope"] = fields.get("scope") or scope
        credentials = self.credentials()
        token_auth = (credentials.username, credentials.secret) if credentials else None
        try:
            answer = self.session.get(
                fields["realm"], params=params, auth=token_auth, timeout=60, verify=self.verify
            )
        except (KeyError, requests.exceptions.RequestException) as error:
            raise AuthError(
                f"registry {self.registry}: its token service failed ({_short(error)})"
            ) from None
        if answer.status_code in (401, 403):
            raise self._refused(answer)
        if answer.status_code != 200:
            raise AuthError(
                f"registry {self.registry}: its token service answered {answer.status_code}"
            )
        body = answer.json()
        self._token[scope] = str(body.get("token") or body.get("access_token"))

    def _refused(self, response: requests.Response) -> AuthError:
        credentials = self.credentials()
        if credentials is None:
            return AuthError(
                f"registry {self.registry} refused anonymous access ({response.status_code}): "
                "log in with `docker login` / `podman login`, or set $REGISTRY_AUTH_FILE"
            )
        return AuthError(
            f"registry {self.registry} refused the credentials of user {credentials.username!r} "
            f"from {credentials.source} ({response.status_code}); check the password or token "
            "and log in again"
        )

    # -- blobs and manifests -----------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scope=_pull(repository), ok=(200, 404)
        )
        return response.status_code == 200

    def upload_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        opener: Callable[[], Any],
        *,
        mount_from: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Uploads one blob; returns "mounted" or "uploaded". Chunks of CHUNK_SIZE are PATCHed;
        a failed chunk restarts the blob's upload (with backoff) up to ATTEMPTS times."""
        scope = _push(repository, mount_from)
        params = {"mount": digest, "from": mount_from} if mount_from else None
        delay = 0.5
        for attempt in range(1, ATTEMPTS + 1):
            start = self.request(
                "POST", f"/v2/{repository}/blobs/uploads/", scope=scope, ok=(201, 202),
                params=params, headers={"Content-Length": "0"},
            )  # fmt: skip
            if start.status_code == 201:
                return "mounted"
            location = self._location(start)
            sent = 0
            try:
                with opener() as f:
                    while True:
                        chunk = f.read(CHUNK_SIZE)
                        if not chunk and sent:
                            break
                        end = sent + len(chunk) - 1
                        answer = self.request(
                            "PATCH", location, scope=scope, ok=(202, 204), data=chunk,
                            headers={
                                "Content-Type": "application/octet-stream",
                                "Content-Range": f"{sent}-{max(end, sent)}",
                                "Content-Length": str(len(chunk)),
                            },
                        )  # fmt: skip
                        location = self._location(answer)
                        sent += len(chunk)
                        if progress is not None:
                            progress(len(chunk))
                        if not chunk:
                            break
                separator = "&" if "?" in location else "?"
                self.request(
                    "PUT", f"{location}{separator}digest={urllib.parse.quote(digest)}",
                    scope=scope, ok=(201, 204), headers={"Content-Length": "0"},
                )  # fmt: skip
                return "uploaded"
            except RegistryError:
                if attempt == ATTEMPTS or (sent == 0 and size == 0):
                    raise
                if progress is not None:
                    progress(-sent)
                time.sleep(delay)
                delay *= 2
        raise RegistryError(f"registry {self.registry}: uploading {digest} kept failing")

    def _location(self, response: requests.Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.registry}: an upload answer has no Location")
        return urllib.parse.urljoin(self._base_url() + "/", location)

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        response = self.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", scope=_push(repository),
            ok=(200, 201), data=body, headers={"Content-Type": media_type},
        )  # fmt: skip
        return response.headers.get("Docker-Content-Digest") or sha256_digest(body)

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        accept = ",".join(
            [
                *MANIFEST_TYPES,
                OCI_INDEX,
                "application/vnd.docker.distribution.manifest.list.v2+json",
            ]
        )
        response = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", scope=_pull(repository),
            ok=(200,), headers={"Accept": accept},
        )  # fmt: skip
        return response.content, response.headers.get("Content-Type", "")

    def get_blob(self, repository: str, digest: str) -> Iterator[bytes]:
        response = self.request(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=_pull(repository), ok=(200,),
            stream=True,
        )  # fmt: skip
        yield from response.iter_content(1 << 20)


def _pull(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push(repository: str, mount_from: str = "") -> str:
    scope = f"repository:{repository}:pull,push"
    return f"{scope} repository:{mount_from}:pull" if mount_from else scope


def _short(error: object) -> str:
    text = str(error)
    return text if len(text) < 300 else text[:300] + "..."


def _errors(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return (
            "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or response.text[:300]
        )
    except ValueError:
        return response.text[:300]


def _ca_file(host: str) -> Path | None:
    dirs = [
        os.environ.get("XM_REGISTRY_CERTS_DIR", ""),
        "/etc/docker/certs.d",
        "/etc/containers/certs.d",
    ]
    for directory in dirs:
        if directory and (Path(directory) / host / "ca.crt").is_file():
            return Path(directory) / host / "ca.crt"
    return None


# -- push ------------------------------------------------------------------------------------------


def push(
    image_path: Path,
    reference: str,
    *,
    progress: Progress | None = None,
    client: Client | None = None,
    mount_from: str = "",
) -> PushResult:
    """Pushes the image in a tarball or OCI layout to `reference` (registry/repo[:tag]).
    Returns the pushed manifest's digest: what a job should name the image by, at the
    location `$XM_REGISTRY_MIRRORS` sends `reference` to."""
    ref = locate(reference)
    image = read_image(image_path)
    client = client or Client(ref.registry)
    manifest, media_type = _manifest_of(image)
    manifest_doc = json.loads(manifest)
    blobs = [manifest_doc["config"], *manifest_doc["layers"]]
    result = PushResult("", "", [], [], [])
    missing = []
    for blob in blobs:
        if client.has_blob(ref.repository, blob["digest"]):
            result.present.append(blob["digest"])
        else:
            missing.append(blob)
    total = sum(int(b["size"]) for b in missing)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(str(ref), done, total)

    if progress is not None:
        progress(str(ref), 0, total)
    config_bytes = image.config()
    with ImageFiles(image.path) as files:
        members = {
            blob_path(d["digest"]): m
            for d, m in zip(manifest_doc["layers"], image.layer_members, strict=True)
        }
        for blob in missing:
            digest = blob["digest"]
            opener: Callable[[], Any]
            if digest == manifest_doc["config"]["digest"]:
                opener = functools.partial(_BytesOpener, config_bytes)
            else:
                opener = functools.partial(files.open, members[blob_path(digest)])
            how = client.upload_blob(
                ref.repository, digest, int(blob["size"]), opener, mount_from=mount_from,
                progress=advance,
            )  # fmt: skip
            (result.mounted if how == "mounted" else result.uploaded).append(digest)
    # Last: the manifest, once every blob it names is there.
    pushed = client.put_manifest(
        ref.repository, ref.tag or sha256_digest(manifest), manifest, media_type
    )
    if pushed != sha256_digest(manifest):
        raise RegistryError(
            f"registry {ref.registry} recorded the manifest as {pushed}, not "
            f"{sha256_digest(manifest)}"
        )
    result.digest = pushed
    result.reference = ref.with_digest(pushed)
    return result


class _BytesOpener:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def __enter__(self) -> _BytesOpener:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self, n: int) -> bytes:
        chunk = self.data[self.offset : self.offset + n]
        self.offset += len(chunk)
        return chunk


def _manifest_of(image: Image) -> tuple[bytes, str]:
    """The image's manifest as stored (OCI layout), or one written for a `docker save`
    tarball, whose layers are uncompressed tars."""
    if image.manifest_digest:
        with ImageFiles(image.path) as files:
            return files.read(blob_path(image.manifest_digest)), OCI_MANIFEST
    config = image.config()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_digest(config),
            "size": len(config),
        },
        "layers": image.layer_descriptors(),
    }
    return dump_canonical(manifest), OCI_MANIFEST


# -- pull ------------------------------------------------------------------------------------------


def pull_cached(reference: str, cache: Path, say: Callable[[str], None]) -> Path:
    """Pulls an image (this platform's, linux/amd64) into an OCI layout under `cache`, named by
    its manifest digest; a reference by digest already there is not fetched again. Pulled from
    where `$XM_REGISTRY_MIRRORS` sends `reference`."""
    ref = locate(reference)
    if ref.digest and (cache / ref.digest.replace(":", "-") / "index.json").is_file():
        return cache / ref.digest.replace(":", "-")
    client = Client(ref.registry)
    mirrored = str(ref) != str(Reference.parse(reference))
    say(f"pulling {reference}" + (f" from its mirror {ref}" if mirrored else ""))
    try:
        body, media_type = client.get_manifest(ref.repository, ref.digest or ref.tag or "latest")
        doc = json.loads(body)
        if doc.get("mediaType", media_type) in (
            OCI_INDEX,
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ):
            chosen = [
                m
                for m in doc["manifests"]
                if (m.get("platform") or {}).get("architecture") == "amd64"
                and (m.get("platform") or {}).get("os") == "linux"
            ]
            if not chosen:
                raise RegistryError(f"{reference} has no linux/amd64 image")
            body, media_type = client.get_manifest(ref.repository, chosen[0]["digest"])
            doc = json.loads(body)
        digest = sha256_digest(body)
        out = cache / digest.replace(":", "-")
        if (out / "index.json").is_file():
            return out
        tmp = cache / f".{digest.replace(':', '-')}.{os.getpid()}"
        (tmp / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        for blob in [doc["config"], *doc["layers"]]:
            target = tmp / blob_path(blob["digest"])
            with target.open("wb") as f:
                for chunk in client.get_blob(ref.repository, blob["digest"]):
                    f.write(chunk)
            if sha256_digest(target.read_bytes()) != blob["digest"]:
                raise RegistryError(f"{reference}: blob {blob['digest']} arrived corrupt")
        (tmp / blob_path(digest)).write_bytes(body)
        (tmp / "oci-layout").write_bytes(OCI_LAYOUT_FILE)
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": doc.get("mediaType") or media_type,
                    "digest": digest,
                    "size": len(body),
                }
            ],
        }
        (tmp / "index.json").write_bytes(dump_canonical(index))
        os.replace(tmp, out)
        return out
    except RegistryError as error:
        raise RegistryError(f"cannot pull {reference}: {error}") from None
