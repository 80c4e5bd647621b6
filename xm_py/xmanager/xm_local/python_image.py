"""`xm.python_container` without `docker build`: the image is assembled from layers in-process.

Layers, on top of the base image (by default this project's Debian-built Python base):
1. the project's dependencies (requirements.txt or pyproject.toml), resolved to wheels for the
   base's Python and installed under /opt/xm/site-packages (see `wheels`), cached;
2. the project's source directory, with `.dockerignore`-style exclusions (`.git`,
   `__pycache__`, virtual environments and caches by default).

XManager's semantics: the project lives at `/<dir>` and is the working directory, or, with
`use_deep_module`, at `/workdir/<dir>` with `/workdir` the working directory (so that
`python -m <dir>.module` works). A `ModuleName` runs `python3 -m module`; a `CommandList` runs its
commands in order, the job's arguments appended to the last (through `/bin/sh` when the image has
one, as XManager's entrypoint.sh does; the default base has no shell, and then each command is
split into words and run directly). The job's arguments are the container's arguments.

Every layer is deterministic (see `xmanager.oci.layers`): the same inputs give the same digest.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from xmanager import xm
from xmanager.oci import assemble
from xmanager.oci import image as oci_image
from xmanager.oci.layers import LayerBuilder
from xmanager.oci.spec import sha256_digest
from xmanager.xm_local import image_cache, wheels
from xmanager.xm_local.errors import PackagingError

ENTRYPOINT_RUNNER = "/opt/xm/entrypoint.py"
DEFAULT_PYTHON = "3.11"  # the default base's (Debian bookworm)
DEFAULT_EXCLUDES = (
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    "*.pyc",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".dockerignore",
    "bazel-*",
)

# Runs a CommandList: XManager's entrypoint.sh (commands joined by newlines, ` $@` appended)
# through /bin/sh when there is one; else word by word, `python` meaning this interpreter.
_RUNNER = """\
import os, shlex, subprocess, sys
COMMANDS = {commands}
args = sys.argv[1:]
if os.path.exists("/bin/sh"):
    script = "\\n".join(COMMANDS) + " $@"
    os.execv("/bin/sh", ["/bin/sh", "-c", script, "entrypoint", *args])
for number, command in enumerate(COMMANDS):
    last = number == len(COMMANDS) - 1
    words = []
    for word in shlex.split(command + (" $@" if last else "")):
        words.extend(args if word == "$@" else [word])
    if words and words[0] in ("python", "python3"):
        words[0] = sys.executable
    if not words:
        continue
    if last:
        os.execvp(words[0], words)
    code = subprocess.run(words).returncode
    if code:
        sys.exit(code)
"""


@dataclasses.dataclass(frozen=True)
class Built:
    path: Path
    digest: str


Say = Callable[[str], None]


def build(spec: xm.PythonContainer, say: Say | None = None) -> Built:
    """Builds (or finds in the cache) the image of a PythonContainer; returns its tarball."""
    say = say or _console_say()
    project = Path(spec.path)
    if not project.is_dir():
        raise PackagingError(
            f"xm.python_container(path={spec.path!r}): {project} is not a directory"
        )
    if spec.docker_instructions:
        # No Dockerfile is involved: say so rather than silently build something else.
        say(
            "docker_instructions are ignored (the image is assembled without docker build); "
            "use xm.Dockerfile for custom build steps"
        )
    base = resolve_base(spec.base_image, say)
    base_config = json.loads(base.config())
    target = wheels.Target(_python_version(base_config))
    layers: list[assemble.NewLayer] = []
    deps = wheels.dependency_layer(project, target, say)
    if deps is not None:
        layers.append(deps)
    directory = project.resolve().name
    if spec.use_deep_module:
        workdir, project_dir = "/workdir", f"/workdir/{directory}"
    else:
        workdir = project_dir = f"/{directory}"
    layers.append(_source_layer(project, project_dir, spec.entrypoint, say))
    env = {"LANG": "C.UTF-8"}
    if deps is not None:
        current = _env(base_config).get("PYTHONPATH")
        env["PYTHONPATH"] = wheels.SITE_PACKAGES + (f":{current}" if current else "")
    if isinstance(spec.entrypoint, xm.ModuleName):
        entrypoint = ["python3", "-m", spec.entrypoint.module_name]
    else:
        entrypoint = ["python3", ENTRYPOINT_RUNNER]
    settings = assemble.Settings(
        entrypoint=entrypoint,
        env=env,
        workdir=workdir,
        created_by=f"xm.python_container {directory}",
    )
    return _write_image(base, layers, settings, say)


def _write_image(
    base: oci_image.Image, layers: list[assemble.NewLayer], settings: assemble.Settings, say: Say
) -> Built:
    _, manifest, _ = assemble.documents(
        json.loads(base.config()), base.layer_descriptors(), layers, settings
    )
    digest = sha256_digest(manifest)
    out = image_cache.subdir("images") / (digest.removeprefix("sha256:") + ".tar")
    if not out.is_file():
        written = assemble.write_tarball(out, base, layers, settings)
        assert written.digest == digest, (written.digest, digest)
    say(f"image {digest[:19]}: {wheels.human_size(out.stat().st_size)} ({out})")
    return Built(out, digest)


def resolve_base(base_image: str | None, say: Say) -> oci_image.Image:
    """The base image: the default, an image tarball, an OCI layout directory, or a registry
    reference (pulled once, then cached by digest)."""
    if base_image is None:
        path = image_cache.default_base_image()
        if not path.exists():
            raise PackagingError(
                f"the default base image of xm.python_container, {path}, is missing: run "
                "`./setup.sh setup` (it builds //xm_rules/debian:python_base and puts it "
                f"there), set ${image_cache.BASE_IMAGE_ENV} to an image tarball, or pass "
                "base_image="
            )
        return _read(path)
    path = Path(base_image).expanduser()
    if path.exists():
        return _read(path)
    if base_image.startswith(("/", "./", "../", "~")) or base_image.endswith(".tar"):
        raise PackagingError(f"base_image {base_image!r}: no such image tarball or directory")
    from xmanager.oci import registry  # noqa: PLC0415  # requests, only for pulls

    try:
        layout = registry.pull_cached(base_image, image_cache.subdir("pulled"), say)
    except registry.RegistryError as error:
        raise PackagingError(f"base_image {base_image!r}: {error}") from None
    return _read(layout)


def _read(path: Path) -> oci_image.Image:
    try:
        return oci_image.read(path)
    except oci_image.ImageError as error:
        raise PackagingError(f"base image: {error}") from None


def _env(config: dict[str, object]) -> dict[str, str]:
    container = config.get("config") or {}
    assert isinstance(container, dict)
    return dict(item.partition("=")[::2] for item in container.get("Env") or [])


def _python_version(config: dict[str, object]) -> str:
    """The base's Python: official python images say it in $PYTHON_VERSION."""
    match = re.match(r"(\d+\.\d+)", _env(config).get("PYTHON_VERSION", ""))
    return match.group(1) if match else DEFAULT_PYTHON


# -- the source layer ------------------------------------------------------------------------------


def exclusions(project: Path) -> list[str]:
    patterns = list(DEFAULT_EXCLUDES)
    ignore = project / ".dockerignore"
    if ignore.is_file():
        for raw in ignore.read_text().splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                patterns.append(line.lstrip("/").removeprefix("./").rstrip("/"))
    return patterns


def _excluded(rel: str, patterns: list[str]) -> bool:
    """Docker's rules, simply: a pattern matches the path or any of its names; `!` re-includes."""
    excluded = False
    name = rel.rsplit("/", 1)[-1]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!").replace("**/", "")
        if "**/" in raw:
            hit = fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(name, pattern)
        elif "/" in pattern:
            hit = fnmatch.fnmatch(rel, pattern)
        else:
            hit = fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(rel, pattern)
        if hit:
            excluded = not negate
    return excluded


def _source_layer(
    project: Path, project_dir: str, entrypoint: xm.ModuleName | xm.CommandList, say: Say
) -> assemble.NewLayer:
    builder = LayerBuilder()
    patterns = exclusions(project)
    root = project_dir.strip("/")
    builder.add_dir(root)
    count = 0
    for dirpath, dirnames, filenames in os.walk(project):
        here = Path(dirpath)
        rel_dir = here.relative_to(project).as_posix()
        kept = []
        for name in sorted(dirnames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            path = here / name
            if _excluded(rel, patterns) or (path / "pyvenv.cfg").is_file():
                continue
            if path.is_symlink():
                builder.add_symlink(f"{root}/{rel}", os.readlink(path))
                continue
            builder.add_dir(f"{root}/{rel}")
            kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if _excluded(rel, patterns):
                continue
            path = here / name
            if path.is_symlink():
                builder.add_symlink(f"{root}/{rel}", os.readlink(path))
            elif path.is_file():
                builder.add_file(f"{root}/{rel}", src=str(path))
                count += 1
    if isinstance(entrypoint, xm.CommandList):
        runner = _RUNNER.format(commands=repr(list(entrypoint.commands)))
        builder.add_file(ENTRYPOINT_RUNNER, data=runner.encode(), mode=0o755)
    layers = image_cache.subdir("layers")
    fd, tmp = tempfile.mkstemp(dir=layers, prefix=".source-")
    os.close(fd)
    try:
        descriptor = builder.write_blob(Path(tmp))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    blob = layers / (descriptor["digest"].removeprefix("sha256:") + ".tar.gz")
    os.replace(tmp, blob)
    say(f"source: {count} files, {wheels.human_size(descriptor['size'])}")
    return assemble.NewLayer("source", blob, descriptor)


def _console_say() -> Say:
    """Progress lines on the launch script's terminal (rich), plain lines otherwise."""
    from rich.console import Console  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    console = Console(stderr=True)

    def say(text: str) -> None:
        console.print(Text.assemble(("python_container ", "dim"), text), highlight=False)

    return say
