"""Writes an image's config, manifest, index, Docker manifest.json and digest from descriptors.

Reads only the small JSON descriptors that layer actions wrote next to their blobs (and the base
image's config), never the blobs: assembly costs the same whatever the layers weigh. Everything
is deterministic: `created` is the epoch, JSON keys are sorted.

The rule writes the image's spec at analysis time:

    {"label": "//pkg:image", "base_config": "…/base.config.json" or null,
     "layers": [{"name": "numpy", "descriptor": "…", "blob": "…"}, …],   # the base's first
     "entrypoint": […], "cmd": […], "env": {…}, "workdir": "", "user": "",
     "labels": {…}, "annotations": {…}, "os": "", "architecture": "", "repo_tags": […]}

The layout and tarball tools assemble the same documents from the same spec, in parallel with
this action rather than after it.

Inheritance follows Dockerfile semantics: Env, Labels and the rest come from the base image and
the image's own settings override them; setting an entrypoint without a cmd clears the base cmd.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from xm_rules.tools import ocilib

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """The image cannot be assembled as asked."""


def merge_env(base: list[str], updates: dict[str, str]) -> list[str]:
    """`KEY=VALUE` entries: the base's, overridden in place, new keys appended; `${KEY}` expands."""
    current: dict[str, str] = {}
    for item in base:
        key, _, value = item.partition("=")
        current[key] = value
    for key, value in updates.items():
        current[key] = _VAR.sub(lambda m: current.get(m.group(1), ""), value)
    return [f"{key}={value}" for key, value in current.items()]


def assemble(spec: dict[str, Any]) -> dict[str, bytes]:
    """The image's JSON documents, from its spec (see `main`): only descriptors are read."""
    layers = spec["layers"]
    descriptors = [ocilib.read_descriptor(layer["descriptor"]) for layer in layers]
    base: dict[str, Any] = ocilib.read_json(spec["base_config"]) if spec.get("base_config") else {}
    base_diff_ids = base.get("rootfs", {}).get("diff_ids", [])
    actual = [d["diffId"] for d in descriptors[: len(base_diff_ids)]]
    if actual != base_diff_ids:
        raise ConfigError(
            "the base image's config does not list the diff_ids of its layers: "
            f"config {base_diff_ids}, layers {actual}"
        )
    new_layers = layers[len(base_diff_ids) :]
    container: dict[str, Any] = dict(base.get("config", {}))
    if spec.get("entrypoint"):
        container["Entrypoint"] = spec["entrypoint"]
        container.pop("Cmd", None)
    if spec.get("cmd"):
        container["Cmd"] = spec["cmd"]
    env = merge_env(container.get("Env", []), spec.get("env", {}))
    if env:
        container["Env"] = env
    if spec.get("workdir"):
        container["WorkingDir"] = spec["workdir"]
    if spec.get("user"):
        container["User"] = spec["user"]
    labels = {**container.get("Labels", {}), **spec.get("labels", {})}
    if labels:
        container["Labels"] = labels

    history = list(base.get("history", []))
    for layer in new_layers:
        created_by = f"xm_rules {spec.get('label', '')}: {layer['name']}"
        history.append({"created": ocilib.EPOCH, "created_by": created_by})
    config = {
        "architecture": spec.get("architecture") or base.get("architecture") or "amd64",
        "os": spec.get("os") or base.get("os") or "linux",
        "created": ocilib.EPOCH,
        "config": container,
        "rootfs": {"type": "layers", "diff_ids": [d["diffId"] for d in descriptors]},
        "history": history,
    }
    config_bytes = ocilib.dump_canonical(config)
    config_digest = ocilib.sha256_digest(config_bytes)
    annotations: dict[str, str] = spec.get("annotations", {})
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": ocilib.OCI_MANIFEST,
        "config": {
            "mediaType": ocilib.OCI_CONFIG,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"]}
            for d in descriptors
        ],
    }
    if annotations:
        manifest["annotations"] = annotations
    manifest_bytes = ocilib.dump_canonical(manifest)
    manifest_digest = ocilib.sha256_digest(manifest_bytes)
    descriptor: dict[str, Any] = {
        "mediaType": ocilib.OCI_MANIFEST,
        "digest": manifest_digest,
        "size": len(manifest_bytes),
        "platform": {"architecture": config["architecture"], "os": config["os"]},
    }
    repo_tags: list[str] = spec.get("repo_tags", [])
    if repo_tags:
        descriptor["annotations"] = {
            "io.containerd.image.name": repo_tags[0],
            "org.opencontainers.image.ref.name": repo_tags[0].rsplit(":", 1)[-1],
        }
    index = {"schemaVersion": 2, "mediaType": ocilib.OCI_INDEX, "manifests": [descriptor]}
    docker_manifest = [
        {
            "Config": ocilib.blob_path(config_digest),
            "RepoTags": repo_tags,
            "Layers": [ocilib.blob_path(d["digest"]) for d in descriptors],
        }
    ]
    return {
        "config": config_bytes,
        "manifest": manifest_bytes,
        "index": ocilib.dump_canonical(index),
        "docker_manifest": ocilib.dump_canonical(docker_manifest),
        "digest": manifest_digest.encode(),
    }


def blobs(spec: dict[str, Any], documents: dict[str, bytes]) -> dict[str, str | bytes]:
    """`blobs/sha256/<hex>` -> the config's and manifest's bytes, or a layer blob's path."""
    result: dict[str, str | bytes] = {}
    for name in ("config", "manifest"):
        result[ocilib.blob_path(ocilib.sha256_digest(documents[name]))] = documents[name]
    for layer in spec["layers"]:
        result[ocilib.blob_path(ocilib.read_descriptor(layer["descriptor"])["digest"])] = layer[
            "blob"
        ]
    return result


def load(spec_path: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """An image spec and the documents assembled from it (for the layout and tarball tools)."""
    spec: dict[str, Any] = ocilib.read_json(spec_path)
    return spec, assemble(spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], fromfile_prefix_chars="@")
    parser.add_argument("--spec", required=True, help="the image spec JSON the rule wrote")
    for output in ("config", "manifest", "index", "docker-manifest", "digest"):
        parser.add_argument(f"--out-{output}", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        _, outputs = load(args.spec)
    except (ConfigError, ocilib.LayerError, KeyError, ValueError, OSError) as e:
        print(f"image_config: {e}", file=sys.stderr)
        return 1
    for name, data in outputs.items():
        Path(getattr(args, f"out_{name}")).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(ocilib.run_tool(main))
