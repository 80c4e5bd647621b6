"""Settings and cluster helpers for Vertex AI, with XManager's names.

Settings are read the way XManager and gcloud read them: environment variables first
(`GOOGLE_CLOUD_PROJECT`, `GOOGLE_CLOUD_REGION`, `GOOGLE_CLOUD_BUCKET_NAME`, and gcloud's own
`CLOUDSDK_CORE_PROJECT` / `CLOUDSDK_COMPUTE_REGION`), then the active gcloud configuration file.
The cluster helpers read the `CLUSTER_SPEC` Vertex AI gives every replica.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import urllib.request
from collections.abc import Sequence
from pathlib import Path

DEFAULT_REGION = "us-central1"
_LATE_BINDING = re.compile(r"%objectname\(([^)]*)\)%")


def _gcloud_config_dir() -> Path:
    configured = os.environ.get("CLOUDSDK_CONFIG")
    return Path(configured) if configured else Path.home() / ".config" / "gcloud"


def gcloud_setting(section: str, name: str) -> str | None:
    """A property of the active gcloud configuration (e.g. ('core', 'project')), or None."""
    directory = _gcloud_config_dir()
    active = os.environ.get("CLOUDSDK_ACTIVE_CONFIG_NAME")
    if not active:
        try:
            active = (directory / "active_config").read_text().strip() or "default"
        except OSError:
            active = "default"
    parser = configparser.ConfigParser()
    try:
        parser.read(directory / "configurations" / f"config_{active}")
    except configparser.Error:
        return None
    value = parser.get(section, name, fallback="").strip()
    return value or None


def get_project() -> str | None:
    """The GCP project from the environment or gcloud's configuration; None when unset."""
    for variable in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    return gcloud_setting("core", "project")


def get_default_region() -> str:
    """The Vertex AI region from the environment or gcloud's configuration; us-central1 else."""
    for variable in ("GOOGLE_CLOUD_REGION", "CLOUDSDK_COMPUTE_REGION"):
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    return gcloud_setting("compute", "region") or DEFAULT_REGION


def get_bucket_name() -> str | None:
    """$GOOGLE_CLOUD_BUCKET_NAME, or None."""
    return os.environ.get("GOOGLE_CLOUD_BUCKET_NAME", "").strip() or None


def get_master_address_port() -> tuple[str, str]:
    """The chief (first worker pool's first replica) as (address, port) from CLUSTER_SPEC.

    Outside Vertex AI (no CLUSTER_SPEC): ('127.0.0.1', '29500'), as XManager returns.
    """
    raw = os.environ.get("CLUSTER_SPEC")
    if not raw or "workerpool0" not in raw:
        return "127.0.0.1", "29500"
    chief = json.loads(raw)["cluster"]["workerpool0"][0]
    address, _, port = chief.rpartition(":")
    return address, port


def get_world_size_rank() -> tuple[int, int]:
    """(number of replicas over all pools, this replica's rank) from CLUSTER_SPEC; (1, 0) else."""
    raw = os.environ.get("CLUSTER_SPEC")
    if not raw:
        return 1, 0
    spec = json.loads(raw)
    task = spec["task"]
    world_size = 0
    rank = 0
    for pool, replicas in spec["cluster"].items():
        if pool == task["type"]:
            rank = world_size + int(task["index"])
        world_size += len(replicas)
    return world_size, rank


def create_cluster_specs(workers: Sequence[str]) -> list[str]:
    """One CLUSTER_SPEC (JSON) per worker address, worker i being pool `workerpool{i}`.

    Each task's index is 0, its index within its one-replica pool, as Vertex AI writes it
    (XManager writes i, which makes `get_world_size_rank` count ranks twice).
    """
    cluster = {f"workerpool{i}": [address] for i, address in enumerate(workers)}
    return [
        json.dumps({"cluster": cluster, "task": {"type": f"workerpool{i}", "index": 0}})
        for i in range(len(workers))
    ]


def get_workerpool_address(workerpool: str) -> str:
    """A late binding of a worker pool's address, resolved at run time from CLUSTER_SPEC."""
    return f"%objectname({workerpool})%"


def _resolve(value: str, cluster: dict[str, list[str]]) -> str:
    return _LATE_BINDING.sub(lambda match: cluster[match.group(1)][0], value)


def map_workerpool_address_args(args: list[str]) -> list[str]:
    """Replaces late bindings in `args` with the worker pools' addresses."""
    raw = os.environ.get("CLUSTER_SPEC")
    if raw is None:
        return args
    cluster = json.loads(raw)["cluster"]
    return [_resolve(arg, cluster) for arg in args]


def print_workerpool_address_args(argv: list[str]) -> None:
    """Prints argv[1:] with late bindings resolved, one per line (for entrypoint wrappers)."""
    for arg in map_workerpool_address_args(argv[1:]):
        print(arg)


def create_workerpool_address_env_vars_script(path: str) -> None:
    """Writes a bash script exporting every environment variable whose value is a late binding,
    resolved."""
    lines = ["#!/bin/bash", ""]
    raw = os.environ.get("CLUSTER_SPEC")
    if raw is not None:
        cluster = json.loads(raw)["cluster"]
        for key, value in os.environ.items():
            if _LATE_BINDING.fullmatch(value):
                lines.append(f"export {key}={_resolve(value, cluster)}")
    Path(path).write_text("\n".join(lines) + "\n")


def get_region() -> str:
    """The region of the Compute Engine VM this runs on (from the metadata server)."""
    request = urllib.request.Request(
        "http://metadata.google.internal/computeMetadata/v1/instance/zone",
        headers={"Metadata-Flavor": "Google"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        zone = str(response.read().decode()).strip().rsplit("/", 1)[-1]
    return zone.rsplit("-", 1)[0]


def get_closest_bucket(bucket_names: list[str]) -> str:
    """The first bucket located in this VM's region, else the first bucket."""
    from google.cloud import storage  # type: ignore[attr-defined]  # noqa: PLC0415

    region = get_region()
    client = storage.Client()
    for name in bucket_names:
        bucket = client.get_bucket(name)
        if region.startswith(str(bucket.location).lower()):
            return name
    return bucket_names[0]
