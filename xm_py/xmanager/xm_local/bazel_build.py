"""Building Bazel labels outside `bazel run`: one `bazel build`, outputs read from the Build
Event Protocol (no guessing of bazel-bin paths)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from xmanager.xm.executables import launch_script_dir
from xmanager.xm_local.errors import PackagingError


def pick_executable(label: str, outputs: Sequence[Path]) -> Path:
    """The target's executable among its outputs: the file named like the target."""
    target = label.rsplit(":", 1)[-1] if ":" in label else label.rsplit("/", 1)[-1]
    for path in outputs:
        if path.name == target and os.access(path, os.X_OK):
            return path
    executables = [p for p in outputs if p.is_file() and os.access(p, os.X_OK)]
    if len(executables) == 1:
        return executables[0]
    raise PackagingError(
        f"cannot tell which output of {label} is its executable: {[str(p) for p in outputs]}"
    )


def workspace_dir() -> Path:
    """The Bazel workspace to build in: `bazel run`'s, else the launch script's."""
    configured = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    return Path(configured) if configured else Path(launch_script_dir())


def build_bazel_targets(
    labels: Iterable[str], bazel_args: Sequence[str] = ()
) -> dict[str, list[Path]]:
    """Builds the labels with one `bazel build`; returns each label's output files."""
    labels = list(dict.fromkeys(labels))
    workspace = workspace_dir()
    with tempfile.TemporaryDirectory(prefix="xm-bep-") as tmp:
        bep = Path(tmp) / "bep.json"
        command = [
            "bazel",
            "build",
            f"--build_event_json_file={bep}",
            "--build_event_json_file_path_conversion=true",
            *bazel_args,
            "--",
            *labels,
        ]
        result = subprocess.run(
            command, cwd=workspace, stderr=subprocess.PIPE, text=True, check=False
        )
        if result.returncode != 0:
            tail = "\n".join(result.stderr.splitlines()[-15:])
            raise PackagingError(f"`bazel build {' '.join(labels)}` failed in {workspace}:\n{tail}")
        return outputs_from_bep(bep.read_text().splitlines(), labels)


def outputs_from_bep(lines: Iterable[str], labels: Sequence[str]) -> dict[str, list[Path]]:
    """Reads each target's default outputs from Build Event Protocol JSON lines."""
    file_sets: dict[str, dict[str, list[str]]] = {}
    completed: dict[str, list[str]] = {}
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        event_id = event.get("id", {})
        if "namedSet" in event_id:
            named = event.get("namedSetOfFiles", {})
            file_sets[event_id["namedSet"]["id"]] = {
                "files": [f.get("uri", "") for f in named.get("files", [])],
                "sets": [s["id"] for s in named.get("fileSets", [])],
            }
        elif "targetCompleted" in event_id:
            label = event_id["targetCompleted"]["label"]
            sets = [
                file_set["id"]
                for group in event.get("completed", {}).get("outputGroup", [])
                if group.get("name") == "default"
                for file_set in group.get("fileSets", [])
            ]
            completed[label] = sets

    def expand(set_id: str, seen: set[str]) -> list[str]:
        if set_id in seen or set_id not in file_sets:
            return []
        seen.add(set_id)
        uris = list(file_sets[set_id]["files"])
        for child in file_sets[set_id]["sets"]:
            uris.extend(expand(child, seen))
        return uris

    result: dict[str, list[Path]] = {}
    for label in labels:
        match = _match_label(label, completed)
        if match is None:
            raise PackagingError(f"Bazel reported no outputs for {label}")
        seen: set[str] = set()
        uris = [uri for set_id in completed[match] for uri in expand(set_id, seen)]
        result[label] = [
            Path(uri.removeprefix("file://")) for uri in uris if uri.startswith("file://")
        ]
    return result


def _match_label(label: str, completed: dict[str, list[str]]) -> str | None:
    """BEP spells labels canonically (`//pkg:name`, sometimes `@@//pkg:name`)."""
    candidates = {label, f"@@{label}", f"@{label}"}
    if ":" not in label:
        candidates |= {f"{c}:{label.rsplit('/', 1)[-1]}" for c in list(candidates)}
    return next((c for c in completed if c in candidates), None)
