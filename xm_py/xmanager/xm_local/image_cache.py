"""Where the client keeps what it builds and downloads for images: layers, wheels, base images.

`$XM_CACHE_DIR`, else `$XDG_CACHE_HOME/xmanager`, else `~/.cache/xmanager`. Everything in it is
named by content (a digest or the hash of its inputs), so it can be deleted at any time.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "XM_CACHE_DIR"
# The default base of xm.python_container: //xm_rules/debian:python_base, which setup.sh builds
# with Bazel and copies here (or wherever $XM_PYTHON_BASE_IMAGE points).
BASE_IMAGE_ENV = "XM_PYTHON_BASE_IMAGE"
BASE_IMAGE_NAME = "python_base.tar"


def root() -> Path:
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "xmanager"


def subdir(name: str) -> Path:
    path = root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_base_image() -> Path:
    configured = os.environ.get(BASE_IMAGE_ENV)
    return Path(configured).expanduser() if configured else root() / BASE_IMAGE_NAME
