"""The entry point of xm_launch targets: runs a launch script as `xmanager launch` would.

Each target's generated `<name>.xm_main.py` calls `main()` with runfiles paths. Under `bazel run`
the script then runs:

- with `XM_BAZEL_MANIFEST` naming the target's manifest of prebuilt executables, so that the
  client packages Bazel labels from it instead of running Bazel again;
- from the workspace (its source path is `XM_LAUNCH_SCRIPT`: relative paths in the script resolve
  against its own directory, as with `xmanager launch`);
- in the directory `bazel run` was started from (`BUILD_WORKING_DIRECTORY`), so that relative
  paths in its flags and `XM_STATE_DIR` mean what they mean in the user's shell.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from xmanager.cli import main as cli
from xmanager.xm_local.packaging import MANIFEST_ENV


class LaunchError(Exception):
    """The launch cannot start; the message says what to do."""


def runfiles_root(main_runfile: str, main_file: str) -> Path:
    """The launcher's runfiles tree: `RUNFILES_DIR` as Bazel's stub sets it, else derived from
    the path of the entry point (`main_file`, found at `main_runfile` in the tree)."""
    configured = os.environ.get("RUNFILES_DIR")
    if configured and (Path(configured) / main_runfile).is_file():
        return Path(configured)
    path = Path(os.path.abspath(main_file))
    depth = len(main_runfile.split("/"))
    if path.parts[-depth:] != tuple(main_runfile.split("/")):
        raise LaunchError(
            f"cannot find the runfiles of {main_file}: run the target with `bazel run`, or run "
            "bazel-bin/<package>/<name> after `bazel build`"
        )
    return path.parents[depth - 1]


def script_path(runfiles: Path, script_runfile: str, script_source: str) -> Path:
    """The launch script's path in the workspace when it is a source file there, else the file
    its runfile links to."""
    in_runfiles = runfiles / script_runfile
    workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    if workspace and script_source:
        candidate = Path(workspace) / script_source
        if candidate.is_file() and os.path.samefile(candidate, in_runfiles):
            return candidate
    return Path(os.path.realpath(in_runfiles))


def main(*, main: str, script: str, script_source: str, manifest: str) -> None:
    """Runs the launch script with the command line's arguments; exits with its status.

    Args:
      main: the runfiles path of the generated entry point (`__main__`).
      script: the runfiles path of the launch script.
      script_source: its path in the workspace when it is a source file there, else "".
      manifest: the runfiles path of the target's manifest.
    """
    try:
        runfiles = runfiles_root(main, sys.modules["__main__"].__file__ or "")
        path = script_path(runfiles, script, script_source)
        working = os.environ.get("BUILD_WORKING_DIRECTORY")
        if working:
            os.chdir(working)
        os.environ[MANIFEST_ENV] = str(runfiles / manifest)
    except LaunchError as error:
        print(f"xmanager: {error}", file=sys.stderr)
        sys.exit(1)
    sys.exit(cli.main(["xmanager", "launch", str(path), "--", *sys.argv[1:]]))
