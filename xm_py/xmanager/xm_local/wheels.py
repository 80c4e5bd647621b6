"""The dependency layer of `xm.python_container`: requirements resolved to wheels for the base
image's Python and platform, installed into their own deterministic layer.

pip resolves and installs with `--only-binary=:all:` and explicit `--python-version`,
`--platform` (manylinux tags the base's glibc runs) and `--target`: no build step runs on this
machine, and nothing depends on the machine's own Python. The layer is cached twice:
by the hash of the requirements file (so a launch with unchanged requirements runs no pip at all)
and by the hash of the resolved set (names, versions and wheel hashes), so requirements that
resolve to the same wheels share one layer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xmanager.oci.assemble import NewLayer
from xmanager.oci.layers import LayerBuilder
from xmanager.xm_local import image_cache
from xmanager.xm_local.errors import PackagingError

# Where the layer puts the packages; the image's PYTHONPATH names it.
SITE_PACKAGES = "/opt/xm/site-packages"
# Debian bookworm's glibc is 2.36: wheels for any manylinux up to it run.
_GLIBC_MINOR = 36


@dataclasses.dataclass(frozen=True)
class Target:
    """The Python the wheels are for."""

    python_version: str  # "3.11"
    glibc_minor: int = _GLIBC_MINOR
    machine: str = "x86_64"

    def pip_args(self) -> list[str]:
        platforms = [f"manylinux_2_{m}_{self.machine}" for m in range(self.glibc_minor, 16, -1)]
        platforms += [f"manylinux2014_{self.machine}", f"manylinux2010_{self.machine}"]
        platforms += [f"manylinux1_{self.machine}", "linux_" + self.machine]
        abi = "cp" + self.python_version.replace(".", "")
        args = ["--python-version", self.python_version, "--implementation", "cp"]
        args += ["--abi", abi, "--abi", "abi3", "--abi", "none"]
        for platform in platforms:
            args += ["--platform", platform]
        return args

    def key(self) -> str:
        return f"cp{self.python_version}-glibc2.{self.glibc_minor}-{self.machine}"


def requirements_of(project: Path) -> list[str] | None:
    """The project's requirement lines: requirements.txt, else pyproject.toml's
    [project].dependencies; None when it declares none."""
    txt = project / "requirements.txt"
    if txt.is_file():
        lines = []
        for raw in txt.read_text().splitlines():
            line = raw.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
        return lines
    pyproject = project / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except tomllib.TOMLDecodeError as error:
            raise PackagingError(f"{pyproject} is not valid TOML: {error}") from None
        dependencies = (data.get("project") or {}).get("dependencies")
        return [str(d) for d in dependencies] if dependencies else None
    return None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def dependency_layer(project: Path, target: Target, say: Callable[[str], None]) -> NewLayer | None:
    """The layer of the project's dependencies (None without requirements), from the cache
    when the same requirements (or the same resolved wheels) were installed before."""
    requirements = requirements_of(project)
    if not requirements:
        return None
    layers = image_cache.subdir("layers")
    index = image_cache.subdir("requirements")
    request_key = _sha(json.dumps([requirements, target.key()]))
    known = index / f"{request_key}.json"
    if known.is_file():
        layer = _cached_layer(layers, json.loads(known.read_text())["resolved_key"])
        if layer is not None:
            say(f"dependencies: cached layer, {_size(layer.descriptor['size'])}")
            return layer
    with tempfile.TemporaryDirectory(dir=image_cache.root(), prefix="wheels-") as tmp:
        resolved = _pip_install(requirements, target, Path(tmp), project, say)
        resolved_key = _sha(json.dumps([resolved, target.key()]))
        layer = _cached_layer(layers, resolved_key)
        if layer is None:
            say(f"writing layer dependencies ({len(resolved)} packages)")
            layer = _write_layer(Path(tmp) / "site", layers, resolved_key)
            say(f"dependencies: {_size(layer.descriptor['size'])}")
    _atomic_write(known, json.dumps({"resolved_key": resolved_key, "resolved": resolved}))
    return layer


def _cached_layer(layers: Path, resolved_key: str) -> NewLayer | None:
    descriptor_path = layers / f"deps-{resolved_key}.json"
    if not descriptor_path.is_file():
        return None
    descriptor = json.loads(descriptor_path.read_text())
    blob = layers / (descriptor["digest"].removeprefix("sha256:") + ".tar.gz")
    if not blob.is_file():
        return None
    return NewLayer("dependencies", blob, descriptor)


def _pip_install(
    requirements: list[str], target: Target, tmp: Path, project: Path, say: Callable[[str], None]
) -> list[str]:
    """Installs the wheels into tmp/site; returns the resolved set (name==version sha256)."""
    req_file = tmp / "requirements.txt"
    req_file.write_text("\n".join(requirements) + "\n")
    report = tmp / "report.json"
    command = [
        sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
        "--no-input", "--no-compile", "--no-warn-script-location", "--only-binary=:all:",
        "--target", str(tmp / "site"), "--report", str(report), "--progress-bar", "off",
        *target.pip_args(), "-r", str(req_file),
    ]  # fmt: skip
    say(f"resolving {len(requirements)} requirements for Python {target.python_version}")
    process = subprocess.Popen(
        command,
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PIP_REQUIRE_VIRTUALENV": "0"},
    )
    assert process.stdout is not None
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        text = line.strip()
        if text.startswith(("Collecting", "Downloading", "Using cached", "Installing")):
            say(text)
    if process.wait() != 0:
        tail = "".join(output[-15:])
        raise PackagingError(
            f"pip could not resolve the requirements of {project} to wheels for Python "
            f"{target.python_version} on manylinux {target.machine} (only binary wheels are "
            f"used; a package without a wheel needs one built first):\n{tail}"
        )
    data: dict[str, Any] = json.loads(report.read_text())
    resolved = []
    for item in data.get("install", []):
        metadata = item.get("metadata", {})
        hashes = (item.get("download_info", {}).get("archive_info") or {}).get("hashes") or {}
        resolved.append(f"{metadata.get('name')}=={metadata.get('version')} {hashes}")
    return sorted(resolved)


def _write_layer(site: Path, layers: Path, resolved_key: str) -> NewLayer:
    builder = LayerBuilder()
    root = SITE_PACKAGES.strip("/")
    builder.add_dir(root)
    for dirpath, dirnames, filenames in os.walk(site):
        rel = Path(dirpath).relative_to(site)
        # pip --target writes scripts whose #! names this machine's Python: useless in the image.
        skip = {"__pycache__", "bin"} if rel == Path(".") else {"__pycache__"}
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in dirnames:
            path = Path(dirpath) / name
            if path.is_symlink():
                builder.add_symlink(f"{root}/{rel / name}", os.readlink(path))
            else:
                builder.add_dir(f"{root}/{rel / name}")
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                builder.add_symlink(f"{root}/{rel / name}", os.readlink(path))
            else:
                builder.add_file(f"{root}/{rel / name}", src=str(path))
    fd, tmp = tempfile.mkstemp(dir=layers, prefix=".deps-")
    os.close(fd)
    descriptor = builder.write_blob(Path(tmp))
    blob = layers / (descriptor["digest"].removeprefix("sha256:") + ".tar.gz")
    os.replace(tmp, blob)
    _atomic_write(layers / f"deps-{resolved_key}.json", json.dumps(descriptor))
    return NewLayer("dependencies", blob, descriptor)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _size(n: int) -> str:
    return human_size(n)


def human_size(n: float) -> str:
    """1234567 -> '1.2 MB'."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"
