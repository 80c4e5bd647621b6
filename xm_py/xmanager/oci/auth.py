"""Registry credentials as users already have them; never printed, never stored.

Looked up in order: `$REGISTRY_AUTH_FILE` (podman/skopeo's auth.json), then
`$XDG_RUNTIME_DIR/containers/auth.json`, then Docker's `config.json` (`$DOCKER_CONFIG` or
`~/.docker`): its `credHelpers` for the registry, its `auths` entry, its `credsStore`. For
Google's registries (gcr.io, *-docker.pkg.dev) with none of those, an access token from
application-default credentials, as `gcloud auth configure-docker` would give.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any


class CredentialsError(Exception):
    """Credentials exist but cannot be read; the message names where they come from."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    username: str
    secret: str = dataclasses.field(repr=False)
    # Where they came from, for error messages (never the secret).
    source: str = ""


def _auth_files() -> list[Path]:
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    docker_dir = os.environ.get("DOCKER_CONFIG")
    files.append((Path(docker_dir) if docker_dir else Path.home() / ".docker") / "config.json")
    return files


def _keys(registry: str) -> list[str]:
    """The ways config files name a registry."""
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"]
    if registry in ("docker.io", "registry-1.docker.io"):
        keys.append("https://index.docker.io/v1/")
    return keys


def lookup(registry: str) -> Credentials | None:
    """The credentials for `registry` (host[:port]), or None to go anonymous."""
    for path in _auth_files():
        if not path.is_file():
            continue
        try:
            config: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CredentialsError(
                f"cannot read registry credentials from {path}: {error}"
            ) from None
        helpers = config.get("credHelpers") or {}
        for key in _keys(registry):
            if key in helpers:
                return _from_helper(str(helpers[key]), registry, path)
        auths = config.get("auths") or {}
        for key in _keys(registry):
            entry = auths.get(key)
            if entry and entry.get("auth"):
                try:
                    user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    raise CredentialsError(
                        f"{path}: the auth entry of {key} is not base64 of user:password"
                    ) from None
                return Credentials(user, secret, f"{path} (auths.{key})")
            if entry and entry.get("identitytoken"):
                return Credentials("<token>", str(entry["identitytoken"]), f"{path} (auths.{key})")
        if config.get("credsStore"):
            found = _from_helper(str(config["credsStore"]), registry, path, missing_ok=True)
            if found is not None:
                return found
    if _is_google(registry):
        return _google_token(registry)
    return None


def _from_helper(
    helper: str, registry: str, config: Path, *, missing_ok: bool = False
) -> Credentials | None:
    program = f"docker-credential-{helper}"
    try:
        result = subprocess.run(
            [program, "get"],
            check=False,
            input=registry,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        if missing_ok:
            return None
        raise CredentialsError(
            f"{config} names the credential helper {program!r} for {registry}, and it is not on "
            "PATH; install it (for Google registries: gcloud) or edit the config"
        ) from None
    if result.returncode != 0:
        if missing_ok:
            return None
        raise CredentialsError(
            f"credential helper {program} found no credentials for {registry} "
            f"({result.stdout.strip() or result.stderr.strip()})"
        )
    try:
        data = json.loads(result.stdout)
        return Credentials(str(data["Username"]), str(data["Secret"]), f"{program} ({config})")
    except (ValueError, KeyError):
        raise CredentialsError(f"credential helper {program} printed no credentials") from None


def _is_google(registry: str) -> bool:
    host = registry.split(":", maxsplit=1)[0]
    return host == "gcr.io" or host.endswith((".gcr.io", "-docker.pkg.dev"))


def _google_token(registry: str) -> Credentials | None:
    try:
        import google.auth  # noqa: PLC0415
        import google.auth.exceptions  # noqa: PLC0415
        import google.auth.transport.requests  # noqa: PLC0415
    except ImportError:
        return None
    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    except google.auth.exceptions.GoogleAuthError as error:
        raise CredentialsError(
            f"no credentials for {registry}: none in Docker's config.json or auth.json, and "
            f"application-default credentials failed ({error}); run "
            "`gcloud auth application-default login` or `gcloud auth configure-docker`"
        ) from None
    return Credentials(
        "oauth2accesstoken", str(credentials.token), "application-default credentials"
    )
