"""Compares generated layer listings with the committed golden files, or updates the golden files.

golden.py --actual DIR --golden DIR            # a test: fails with a diff on any difference
golden.py --actual DIR --golden DIR --update   # under `bazel run`: rewrites the golden files
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
from pathlib import Path

MAX_DIFF_LINES = 80


def compare(actual: Path, golden: Path, update_command: str) -> list[str]:
    problems = []
    want = {p.name for p in golden.glob("*.txt")} if golden.is_dir() else set()
    have = {p.name for p in actual.glob("*.txt")}
    for name in sorted(want - have):
        problems.append(f"{name}: golden file of a layer the image no longer has")
    for name in sorted(have - want):
        problems.append(f"{name}: the image has this layer but there is no golden file")
    for name in sorted(have & want):
        expected = (golden / name).read_text().splitlines()
        got = (actual / name).read_text().splitlines()
        if expected != got:
            diff = list(
                difflib.unified_diff(expected, got, f"golden/{name}", f"built/{name}", lineterm="")
            )
            shown = diff[:MAX_DIFF_LINES]
            if len(diff) > MAX_DIFF_LINES:
                shown.append(f"... {len(diff) - MAX_DIFF_LINES} more diff lines")
            problems.append(f"{name} differs:\n" + "\n".join(shown))
    if problems:
        problems.append(f"If the change is intended, update the golden files: {update_command}")
    return problems


def update(actual: Path, golden_dir: str) -> Path:
    workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    if not workspace:
        raise SystemExit("run this with `bazel run`, which says where the workspace is")
    golden = Path(workspace, golden_dir)
    golden.mkdir(parents=True, exist_ok=True)
    for old in golden.glob("*.txt"):
        old.unlink()
    for new in sorted(actual.glob("*.txt")):
        shutil.copyfile(new, golden / new.name)
    return golden


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actual", required=True, type=Path, help="the generated listings")
    parser.add_argument("--golden", required=True, help="the golden directory (workspace-relative)")
    parser.add_argument("--update-command", default="bazel run <the test's .update target>")
    parser.add_argument("--update", action="store_true")
    args = parser.parse_args(argv)
    if args.update:
        golden = update(args.actual, args.golden)
        print(f"updated {len(list(golden.glob('*.txt')))} golden files in {args.golden}")
        return 0
    problems = compare(args.actual, Path(args.golden), args.update_command)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
