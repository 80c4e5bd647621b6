"""xm.python_container builds and image pushes, against Docker in the same run.

    .venv/bin/python bench/image_push.py

Prints: the quickstart-like trainer (numpy) built with xm.python_container cold (empty cache:
pip resolves and downloads numpy) and warm after a one-line source edit; then its push to a
loopback registry (Debian's docker-registry), first and repeated, and `docker push` of the same
image to the same registry. Needs `./setup.sh setup` (the default base image), docker-registry
and Docker Engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.registry.conftest import _start  # noqa: E402
from xmanager import xm  # noqa: E402
from xmanager.oci import registry  # noqa: E402
from xmanager.xm_local import image_cache, python_image  # noqa: E402

T = TypeVar("T")


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def docker_push(reference: str) -> None:
    subprocess.run(["docker", "push", reference], capture_output=True, check=True)


def main() -> None:
    base = image_cache.default_base_image()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        os.environ[image_cache.ENV_VAR] = str(tmp / "cache")
        os.environ[image_cache.BASE_IMAGE_ENV] = str(base)
        project = tmp / "quickstart"
        (project / "trainer").mkdir(parents=True)
        (project / "trainer" / "__init__.py").write_text("")
        train = project / "trainer" / "train.py"
        train.write_text("import numpy\nprint(numpy.zeros(3).sum())\n")
        (project / "requirements.txt").write_text("numpy\n")
        spec = xm.PythonContainer(entrypoint=xm.ModuleName("trainer.train"), path=str(project))
        _, t_cold = timed(python_image.build, spec, print)
        train.write_text(train.read_text() + "# edit\n")
        warm, t_warm = timed(python_image.build, spec, print)
        print(f"python_container cold build (pip resolve + download numpy): {t_cold:.2f} s")
        print(f"python_container warm rebuild after a one-line edit:         {t_warm:.3f} s")
        (tmp / "reg").mkdir()
        os.environ["DOCKER_CONFIG"] = str(tmp / "no-docker-config")
        for host in _start(tmp / "reg", "", "http", True):
            target = f"{host}/bench/train:v1"
            first, t_first = timed(registry.push, warm.path, target)
            again, t_again = timed(registry.push, warm.path, target)
            print(f"push, first:    {t_first:.3f} s, {len(first.uploaded)} blobs uploaded")
            print(f"push, repeated: {t_again:.3f} s, {len(again.uploaded)} blobs uploaded")
            loaded = (
                subprocess.run(
                    ["docker", "load", "-i", str(warm.path)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .rsplit(" ", 1)[-1]
            )
            for name in ("bench/docker1:v1", "bench/docker1:v1"):
                subprocess.run(["docker", "tag", loaded, f"{host}/{name}"], check=True)
                _, t = timed(docker_push, f"{host}/{name}")
                print(f"docker push {name}: {t:.3f} s")
            subprocess.run(["docker", "rmi", "-f", f"{host}/bench/docker1:v1", loaded],
                           capture_output=True, check=False)  # fmt: skip


if __name__ == "__main__":
    main()
