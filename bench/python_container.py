"""xm.python_container (no Docker) against `docker build` of XManager's generated Dockerfile,
from the same local base image, in the same run.

    .venv/bin/python bench/python_container.py

The base is the project's Python base (`./setup.sh setup` puts it in the client cache) plus a
layer with what XManager's Dockerfile needs and the project's base leaves out: a shell and
coreutils (busybox-static), pip, and `python`. XManager's default steps are kept except
`apt-get` (no apt in the base); `USER root` comes first (the base runs as 1000), pip may install
into Debian's Python (PEP 668), and the machine's CA bundle is copied in so pip inside the build
can reach the index through this network.

Prints, for the quickstart trainer with numpy: cold build (nothing cached), and warm rebuild
after a one-line source edit, for both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pip  # noqa: E402

from xmanager import xm  # noqa: E402
from xmanager.oci import assemble  # noqa: E402
from xmanager.oci import image as oci_image  # noqa: E402
from xmanager.oci.layers import LayerBuilder  # noqa: E402
from xmanager.xm_local import image_cache, python_image  # noqa: E402

BASE_TAG = "xm-bench/python-base-with-pip:latest"
CA = "/etc/ssl/certs/ca-certificates.crt"
TRAIN = "import numpy\nprint(numpy.zeros(3).sum())\n"
# XManager's default instructions (xmanager/cloud/build_image.py), less apt-get.
DOCKERFILE = """\
FROM {base}
USER root
COPY ca.crt /etc/ssl/certs/bench-ca.crt
ENV PIP_CERT=/etc/ssl/certs/bench-ca.crt PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore
ENV LANG=C.UTF-8
RUN python -m pip install --upgrade pip setuptools
COPY quickstart/requirements.txt /quickstart/requirements.txt
RUN python -m pip install -r quickstart/requirements.txt
COPY quickstart/ /quickstart
RUN chown -R 1000:root /quickstart && chmod -R 775 /quickstart
WORKDIR quickstart

COPY entrypoint.sh ./entrypoint.sh
RUN chmod +x ./entrypoint.sh
ENTRYPOINT ["./entrypoint.sh"]
"""


def base_with_pip(project_base: Path, out: Path, work: Path) -> Path:
    """The project's base plus busybox (sh, chown, chmod), pip and `python`."""
    base = oci_image.read(project_base)
    builder = LayerBuilder()
    builder.add_file("bin/busybox", src="/bin/busybox", mode=0o755)
    for tool in ("sh", "chown", "chmod", "mkdir", "rm", "ls", "cat"):
        builder.add_symlink(f"bin/{tool}", "busybox")
    builder.add_symlink("usr/local/bin/python", "/usr/bin/python3")
    site = "usr/local/lib/python3.11/dist-packages"
    pip_dir = Path(pip.__file__).parent
    for path in sorted(pip_dir.rglob("*")):
        if "__pycache__" in path.parts or path.is_dir():
            continue
        builder.add_file(f"{site}/pip/{path.relative_to(pip_dir)}", src=str(path), mode=0o644)
    descriptor = builder.write_blob(work / "extra.tar.gz")
    layer = assemble.NewLayer("busybox and pip", work / "extra.tar.gz", descriptor)
    assemble.write_tarball(out, base, [layer], assemble.Settings(created_by="bench"))
    return out


def docker(*args: str, quiet: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=quiet, text=True, check=False)
    if result.returncode != 0:
        output = result.stdout[-3000:] + result.stderr
        raise SystemExit(f"docker {' '.join(args)} failed:\n{output}")
    return result.stdout or ""


def timed_docker_build(context: Path, tag: str, *extra: str) -> float:
    start = time.perf_counter()
    docker("build", *extra, "-t", tag, str(context))
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        project_base = image_cache.default_base_image()
        os.environ[image_cache.ENV_VAR] = str(tmp / "cache")
        base = base_with_pip(project_base, tmp / "base.tar", tmp)
        loaded = docker("load", "-i", str(base)).strip().rsplit(" ", 1)[-1]
        docker("tag", loaded, BASE_TAG)
        project = tmp / "context" / "quickstart"
        (project / "trainer").mkdir(parents=True)
        (project / "trainer" / "__init__.py").write_text("")
        train = project / "trainer" / "train.py"
        train.write_text(TRAIN)
        (project / "requirements.txt").write_text("numpy\n")
        spec = xm.PythonContainer(
            entrypoint=xm.ModuleName("trainer.train"), path=str(project), base_image=str(base)
        )
        start = time.perf_counter()
        python_image.build(spec, say=lambda _: None)
        ours_cold = time.perf_counter() - start

        context = tmp / "context"
        (context / "Dockerfile").write_text(DOCKERFILE.format(base=BASE_TAG))
        (context / "entrypoint.sh").write_text("#!/bin/sh\n\npython -m trainer.train $@\n")
        shutil.copyfile(CA, context / "ca.crt")
        tag = "xm-bench/quickstart:latest"
        docker_cold = timed_docker_build(context, tag, "--no-cache")

        train.write_text(TRAIN + "# one line more\n")
        start = time.perf_counter()
        python_image.build(spec, say=lambda _: None)
        ours_warm = time.perf_counter() - start
        docker_warm = timed_docker_build(context, tag)
        size = json.loads(docker("image", "inspect", tag))[0]["Size"]
        docker("rmi", "-f", tag, BASE_TAG)
        print(
            f"python_container cold: {ours_cold:6.2f} s   docker build cold: {docker_cold:6.2f} s"
        )
        print(
            f"python_container warm: {ours_warm:6.3f} s   docker build warm: {docker_warm:6.3f} s"
        )
        print(f"(docker's image: {size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
