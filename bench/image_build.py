"""Image builds: Bazel (xm_py_image) against `docker build` of the equivalent Dockerfile.

    .venv/bin/python bench/image_build.py [--edits=3] [--skip_docker]

For the quickstart image (//examples/quickstart:train_image) measures, with a warm Bazel server
of its own (a scratch output base, the disk cache off, the shared repository cache on): a cold
build (after `bazel clean`), a no-op rebuild and rebuilds after a one-line edit of first-party
code (examples/quickstart/train.py), each as wall time, actions executed and the bytes of layers
that changed; then a second clean build, whose digest must equal the first.

The same run builds the equivalent Dockerfile with Docker Engine's `docker build`: FROM the same
Debian-built base (//xm_rules/debian:python_base, `docker load`ed, plus pip, added once and not
timed), pip-installing the same pinned, hashed requirement (numpy, from requirements.lock), then
COPY of train.py; cold, no-op and after the same edit, and a second clean build, whose image ID
is compared with the first.
pip inside the build uses the machine's pip configuration (index URL and CA bundle, passed as
build arguments and a context file; nothing machine-specific is committed) and the host network.

Before each timed step the file system is synced; untimed builds warm up each tool first (a young
Bazel server's JIT compiler makes its first builds slower). The edit is made in the workspace
and always undone. Prints a table; bench/README.md records it.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gzip
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = "//examples/quickstart:train_image"
BASE_TARGET = "//xm_rules/debian:python_base"
TRAIN = ROOT / "examples" / "quickstart" / "train.py"
DOCKER_TAG = "xm-bench/quickstart-train"
WARM_UPS = 5
FLAGS = ["--color=no", "--curses=no", "--noshow_progress", "--disk_cache=", "--symlink_prefix=/"]


@dataclasses.dataclass
class Result:
    tool: str
    step: str
    seconds: float
    actions: str = ""
    changed_bytes: int | None = None
    total_bytes: int | None = None
    note: str = ""

    def changed(self) -> str:
        if self.changed_bytes is None or not self.total_bytes:
            return ""
        share = 100 * self.changed_bytes / self.total_bytes
        return f"{self.changed_bytes:,} B of {self.total_bytes:,} B ({share:.3f}%)"


def settle() -> None:
    """Flushes dirty pages first, so that one step's writes do not slow the next one's timing."""
    os.sync()


@contextmanager
def one_line_edit(path: Path, nonce: str) -> Iterator[None]:
    """Appends one comment line to `path`; restores the original bytes afterwards."""
    original = path.read_bytes()
    try:
        path.write_bytes(original + f"# bench edit {nonce}\n".encode())
        yield
    finally:
        path.write_bytes(original)


# --- Bazel ------------------------------------------------------------------------------------


class Bazel:
    def __init__(self, output_base: Path) -> None:
        self.output_base = output_base
        self.bin = output_base / "execroot" / "_main" / "bazel-out" / "k8-fastbuild" / "bin"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = ["bazel", f"--output_base={self.output_base}", *args]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
        return result

    def build(self, *targets: str) -> tuple[float, str]:
        """(wall seconds, actions executed) of one `bazel build`; no extra flags that cost time."""
        settle()
        start = time.perf_counter()
        result = self.run("build", *FLAGS, *targets)
        seconds = time.perf_counter() - start
        return seconds, self.actions(result.stderr)

    def actions(self, stderr: str) -> str:
        """`N (XmLayer 1, …)`: Bazel's count of executed actions and, from the JSON trace profile
        Bazel writes for every command, those of xm_rules by mnemonic."""
        total = re.search(r"Build completed successfully, (\d+) total action", stderr)
        profile = json.loads(
            gzip.decompress((self.output_base / "command.profile.gz").read_bytes())
        )
        mnemonics = collections.Counter(
            event["args"]["mnemonic"]
            for event in profile["traceEvents"]
            if event.get("cat") == "action processing"
            and event.get("args", {}).get("mnemonic", "").startswith("Xm")
        )
        listed = ", ".join(f"{m} {n}" for m, n in sorted(mnemonics.items()))
        return f"{total.group(1) if total else '?'} ({listed or 'none of xm_rules'})"

    def layers(self) -> list[tuple[str, int]]:
        image = self.bin / "examples" / "quickstart" / "train_image"
        manifest = json.loads(Path(f"{image}.manifest.json").read_text())
        return [(layer["digest"], int(layer["size"])) for layer in manifest["layers"]]

    def digest(self) -> str:
        return (self.bin / "examples" / "quickstart" / "train_image.digest").read_text()

    def shutdown(self) -> None:
        subprocess.run(
            ["bazel", f"--output_base={self.output_base}", "shutdown"],
            cwd=ROOT,
            capture_output=True,
            check=False,
        )


def changed_bytes(before: Sequence[tuple[str, int]], after: Sequence[tuple[str, int]]) -> int:
    old = {digest for digest, _ in before}
    return sum(size for digest, size in after if digest not in old)


def bench_bazel(scratch: Path, edits: int, base_copy: Path) -> list[Result]:
    """Bazel's figures; leaves a copy of the base image's tarball at `base_copy`."""
    bazel = Bazel(scratch / "output_base")
    results: list[Result] = []
    print("bazel: starting a server, fetching, warming up (not timed)", file=sys.stderr)
    bazel.build(TARGET, BASE_TARGET)
    for _ in range(WARM_UPS):
        bazel.build(TARGET)  # a young server's JIT compiler makes its first builds slower
    bazel.run("clean", "--symlink_prefix=/")  # keeps the workspace's bazel-* symlinks

    seconds, actions = bazel.build(TARGET)
    layers = bazel.layers()
    total = sum(size for _, size in layers)
    first_digest = bazel.digest()
    results.append(Result("bazel", "cold build", seconds, actions, total, total))

    for n in range(WARM_UPS):
        with one_line_edit(TRAIN, f"warm-up-{time.time_ns()}-{n}"):
            bazel.build(TARGET)  # not timed
    bazel.build(TARGET)  # back to the unedited outputs, not timed
    runs = [bazel.build(TARGET) for _ in range(edits)]
    no_op = Result("bazel", f"no-op rebuild (median of {edits})", 0.0, runs[0][1])
    no_op.seconds = statistics.median(seconds for seconds, _ in runs)
    no_op.changed_bytes, no_op.total_bytes = changed_bytes(layers, bazel.layers()), total
    results.append(no_op)

    times, changed, action_notes = [], [], []
    for n in range(edits):
        with one_line_edit(TRAIN, f"{time.time_ns()}-{n}"):
            seconds, actions = bazel.build(TARGET)
            after = bazel.layers()
        times.append(seconds)
        changed.append(changed_bytes(layers, after))
        action_notes.append(actions)
    results.append(
        Result(
            "bazel",
            f"one-line edit (median of {edits})",
            statistics.median(times),
            action_notes[0],
            max(changed),
            total,
            "runs: " + ", ".join(f"{t:.2f}" for t in times) + " s",
        )
    )
    bazel.build(TARGET, BASE_TARGET)  # back to the unedited outputs
    shutil.copyfile(bazel.bin / "xm_rules" / "debian" / "python_base.tar", base_copy)

    bazel.run("clean", "--symlink_prefix=/")  # keeps the workspace's bazel-* symlinks
    seconds, actions = bazel.build(TARGET)
    second_digest = bazel.digest()
    same = "identical" if second_digest == first_digest else "DIFFERENT"
    results.append(
        Result(
            "bazel", "second clean build", seconds, actions, note=f"digest {same}: {second_digest}"
        )
    )
    return results


# --- docker build -----------------------------------------------------------------------------

# The installer, set up once and not timed: the base plus pip (and the machine's CA bundle for
# pip's TLS), as a python image that ships pip would be.
INSTALLER_DOCKERFILE = """\
FROM {base}
COPY pip /opt/pip
COPY ca.crt /opt/ca.crt
"""

# The quickstart trainer the Dockerfile way. The base has no shell, so RUN uses the exec form;
# build arguments reach it as environment variables.
DOCKERFILE = """\
FROM {installer}
USER root
COPY requirements.txt /tmp/requirements.txt
ARG PIP_INDEX_URL
ARG PYTHONPATH=/opt/pip
ARG PIP_CERT=/opt/ca.crt
ARG PIP_DISABLE_PIP_VERSION_CHECK=1
RUN ["/usr/bin/python3.11", "-m", "pip", "install", "--no-cache-dir", "--no-deps", \\
     "--require-hashes", "--target", "/app/site-packages", "-r", "/tmp/requirements.txt"]
COPY train.py /app/train.py
ENV PYTHONPATH=/app/site-packages
USER 1000:1000
ENTRYPOINT ["/usr/bin/python3.11", "/app/train.py"]
"""


def locked_requirement(name: str) -> str:
    """`name==version` with its hash lines, from requirements.lock."""
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    for start, line in enumerate(lines):
        if line.startswith(f"{name}=="):
            block = [line]
            for follow in lines[start + 1 :]:
                if not follow.startswith("    --hash"):
                    break
                block.append(follow)
            return "\n".join(block).rstrip(" \\") + "\n"
    raise SystemExit(f"{name} is not in requirements.lock")


def pip_config(key: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", key],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def docker(*args: str, stdin: Any = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the engine's builder; no buildx here
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, env=env, stdin=stdin
    )
    if result.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:2])} failed:\n{result.stderr[-4000:]}")
    return result


def docker_build(context: Path, tag: str, *, no_cache: bool) -> float:
    args = ["build", "--network=host", "-q", "-t", tag]
    if no_cache:
        args.append("--no-cache")
    index = os.environ.get("PIP_INDEX_URL") or pip_config("global.index-url")
    if index:
        args += ["--build-arg", f"PIP_INDEX_URL={index}"]
    settle()
    start = time.perf_counter()
    docker(*args, str(context))
    return time.perf_counter() - start


def docker_layers(tag: str) -> list[tuple[str, int]]:
    """(diff_id, uncompressed size) of each layer, read from `docker save` without extracting."""
    process = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
    assert process.stdout is not None
    sizes: dict[str, int] = {}
    documents: dict[str, bytes] = {}  # manifest.json and the config, both small
    with tarfile.open(fileobj=process.stdout, mode="r|") as tar:
        for member in tar:
            sizes[member.name] = member.size
            if member.name.endswith(".json"):
                f = tar.extractfile(member)
                if f is not None:
                    documents[member.name] = f.read()
    process.wait()
    manifest = json.loads(documents["manifest.json"])
    config = json.loads(documents[manifest[0]["Config"]])
    diff_ids = config["rootfs"]["diff_ids"]
    return [
        (diff_id, sizes.get(path, 0))
        for diff_id, path in zip(diff_ids, manifest[0]["Layers"], strict=True)
    ]


def image_id(tag: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


def bench_docker(scratch: Path, base_tarball: Path, edits: int) -> list[Result]:
    base = json.loads(
        subprocess.run(
            ["tar", "-xOf", str(base_tarball), "manifest.json"], capture_output=True, check=True
        ).stdout
    )[0]["RepoTags"][0]
    base_was_loaded = (
        subprocess.run(
            ["docker", "image", "inspect", base], capture_output=True, check=False
        ).returncode
        == 0
    )
    with open(base_tarball, "rb") as f:
        docker("load", "-q", stdin=f)
    installer_context = scratch / "docker-installer"
    installer_context.mkdir()
    (installer_context / "Dockerfile").write_text(INSTALLER_DOCKERFILE.format(base=base))
    pip_package = importlib.util.find_spec("pip")
    if pip_package is None or pip_package.origin is None:
        raise SystemExit(f"{sys.executable} has no pip to copy into the build context")
    shutil.copytree(
        Path(pip_package.origin).parent,
        installer_context / "pip" / "pip",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    cert = (
        os.environ.get("PIP_CERT")
        or pip_config("global.cert")
        or "/etc/ssl/certs/ca-certificates.crt"
    )
    shutil.copyfile(cert, installer_context / "ca.crt")
    installer = f"{DOCKER_TAG}:installer"
    docker_build(installer_context, installer, no_cache=False)

    context = scratch / "docker-context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE.format(installer=installer))
    (context / "requirements.txt").write_text(locked_requirement("numpy"))
    shutil.copyfile(TRAIN, context / "train.py")

    results: list[Result] = []
    tags = [f"{DOCKER_TAG}:first", f"{DOCKER_TAG}:second", f"{DOCKER_TAG}:edit", installer]
    try:
        seconds = docker_build(context, tags[0], no_cache=True)
        layers = docker_layers(tags[0])
        total = sum(size for _, size in layers)
        results.append(Result("docker build", "cold build (--no-cache)", seconds, "", total, total))
        no_op = Result("docker build", f"no-op rebuild (median of {edits})", 0.0)
        no_op.seconds = statistics.median(
            docker_build(context, tags[0], no_cache=False) for _ in range(edits)
        )
        no_op.changed_bytes, no_op.total_bytes = (
            changed_bytes(layers, docker_layers(tags[0])),
            total,
        )
        results.append(no_op)
        for n in range(WARM_UPS):
            with one_line_edit(context / "train.py", f"warm-up-{time.time_ns()}-{n}"):
                docker_build(context, tags[2], no_cache=False)  # not timed, as for Bazel
        times, changed = [], []
        for n in range(edits):
            with one_line_edit(context / "train.py", f"{time.time_ns()}-{n}"):
                times.append(docker_build(context, tags[2], no_cache=False))
                changed.append(changed_bytes(layers, docker_layers(tags[2])))
        results.append(
            Result(
                "docker build",
                f"one-line edit (median of {edits})",
                statistics.median(times),
                "",
                max(changed),
                total,
                "runs: " + ", ".join(f"{t:.2f}" for t in times) + " s",
            )
        )
        seconds = docker_build(context, tags[1], no_cache=True)
        first, second = image_id(tags[0]), image_id(tags[1])
        same = "identical" if first == second else "DIFFERENT"
        results.append(
            Result(
                "docker build",
                "second clean build",
                seconds,
                note=f"image ID {same}: {first} vs {second}",
            )
        )
    finally:
        for tag in tags + ([] if base_was_loaded else [base]):
            subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)
    return results


def table(results: Sequence[Result]) -> str:
    lines = [
        "| tool | step | wall time | actions executed | bytes of layers changed | note |",
        "| --- | --- | ---: | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.tool} | {r.step} | {r.seconds:.2f} s | {r.actions} | {r.changed()} | {r.note} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=5, help="timed repetitions of each rebuild")
    parser.add_argument("--skip_docker", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="xm-bench-image-"))
    bazel = Bazel(scratch / "output_base")
    try:
        base_tarball = scratch / "python_base.tar"
        results = bench_bazel(scratch, args.edits, base_tarball)
        if not args.skip_docker:
            results += bench_docker(scratch, base_tarball, args.edits)
    finally:
        bazel.shutdown()
        subprocess.run(["chmod", "-R", "u+w", str(scratch)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    print(table(results))
    bazel_edit = next(r for r in results if r.tool == "bazel" and r.step.startswith("one-line"))
    print()
    print(
        textwrap.dedent(f"""\
        Targets: after a one-line edit only the first-party layer changes (<1% of the image):
        {bazel_edit.changed()}; the rebuild takes at most 2 s: {bazel_edit.seconds:.2f} s.""")
    )
    docker_edit = [r for r in results if r.tool == "docker build" and r.step.startswith("one-line")]
    if docker_edit:
        verdict = "yes" if bazel_edit.seconds <= docker_edit[0].seconds else "NO"
        cached = docker_edit[0].seconds
        print(f"No longer than docker build's cached rebuild ({cached:.2f} s): {verdict}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
