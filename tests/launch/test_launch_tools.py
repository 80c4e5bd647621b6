"""The xm_launch tools without Bazel: the manifest action and the launcher's entry point."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from xm_rules.tools import launch_main, launch_manifest
from xmanager.client import daemon_process
from xmanager.state_dir import StateDir

DIGEST = "sha256:" + "ab" * 32


def _spec(tmp_path: Path, **image: Any) -> dict[str, Any]:
    binary = tmp_path / "train"
    binary.write_bytes(b"#!/bin/sh\n")
    digest_file = tmp_path / "train_image.digest"
    digest_file.write_text(image.pop("digest", DIGEST))
    return {
        "version": 1,
        "launcher": "//exp:launch",
        "manifest": "_main/exp/launch.xm_manifest.json",
        "artifacts": [
            {
                "label": "@@//exp:train",
                "names": ["@@//exp:train", "//exp:train"],
                "kind": "binary",
                "runfile": "_main/exp/train",
                "file": str(binary),
            },
            {
                "label": "@@other~//lib:image",
                "names": ["@@other~//lib:image"],
                "kind": "image",
                "runfile": "other~/lib/train_image.tar",
                "digest_file": str(digest_file),
            },
        ],
    }


def test_manifest_lists_every_spelling_with_paths_relative_to_itself(tmp_path: Path) -> None:
    manifest = launch_manifest.build(_spec(tmp_path))
    assert manifest["launcher"] == "//exp:launch"
    artifacts = manifest["artifacts"]
    assert set(artifacts) == {"@@//exp:train", "//exp:train", "@@other~//lib:image"}
    assert artifacts["//exp:train"] == {
        "label": "@@//exp:train",
        "kind": "binary",
        "path": "train",
        "digest": "sha256:" + hashlib.sha256(b"#!/bin/sh\n").hexdigest(),
    }
    image = artifacts["@@other~//lib:image"]
    assert image["path"] == "../../other~/lib/train_image.tar"
    assert image["digest"] == DIGEST


def test_manifest_refuses_a_digest_file_without_a_digest(tmp_path: Path) -> None:
    with pytest.raises(launch_manifest.ManifestError, match="not a digest"):
        launch_manifest.build(_spec(tmp_path, digest="latest"))


def test_runfiles_root_from_the_environment_or_the_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    main = tmp_path / "launch.runfiles" / "_main" / "exp" / "launch.xm_main.py"
    main.parent.mkdir(parents=True)
    main.write_text("")
    monkeypatch.setenv("RUNFILES_DIR", str(tmp_path / "launch.runfiles"))
    root = launch_main.runfiles_root("_main/exp/launch.xm_main.py", "/elsewhere/x.py")
    assert root == tmp_path / "launch.runfiles"
    monkeypatch.delenv("RUNFILES_DIR")
    assert launch_main.runfiles_root("_main/exp/launch.xm_main.py", str(main)) == root
    with pytest.raises(launch_main.LaunchError, match="cannot find the runfiles"):
        launch_main.runfiles_root("_main/exp/launch.xm_main.py", str(tmp_path / "main.py"))


def test_script_path_prefers_the_workspace_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    source = workspace / "exp" / "launch.py"
    source.parent.mkdir(parents=True)
    source.write_text("")
    runfiles = tmp_path / "launch.runfiles"
    (runfiles / "_main" / "exp").mkdir(parents=True)
    (runfiles / "_main" / "exp" / "launch.py").symlink_to(source)
    monkeypatch.setenv("BUILD_WORKSPACE_DIRECTORY", str(workspace))
    assert launch_main.script_path(runfiles, "_main/exp/launch.py", "exp/launch.py") == source
    # Not a source file of the workspace (generated, or another repository's): where it links.
    assert launch_main.script_path(runfiles, "_main/exp/launch.py", "") == source.resolve()
    monkeypatch.delenv("BUILD_WORKSPACE_DIRECTORY")
    assert launch_main.script_path(runfiles, "_main/exp/launch.py", "exp/launch.py") == (
        source.resolve()
    )


def test_no_daemon_and_no_xmanager_command_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client without the daemon's code (a launch script under Bazel) and no installed
    `xmanager` command says how to start a daemon."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no `xmanager` here
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(daemon_process.DaemonStartError, match="xmanager daemon start"):
        daemon_process.daemon_command(StateDir.resolve(tmp_path / "state"))


def test_without_the_daemons_code_the_installed_command_starts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "xmanager"
    installed.write_text("#!/bin/sh\n")
    installed.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    state = StateDir.resolve(tmp_path / "state")
    assert daemon_process.daemon_command(state, ["--max_running_jobs=2"]) == [
        str(installed),
        "daemon",
        "start",
        "--foreground",
        f"--state_dir={state.root}",
        "--max_running_jobs=2",
    ]
