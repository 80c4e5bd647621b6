#!/usr/bin/env bash
# Builds every image target of the workspace with Bazel, then pushes each xm_oci_push target.
#
#   REGISTRY=host:port  push there instead of each target's registry (the repository path stays)
#   TAG=name            the tag to push (default: the commit's short hash)
#   XM_BAZEL_DISK_CACHE the Bazel disk cache (default: ~/.cache/xm-bazel-disk), kept between runs
#
# The CI workflow (github-actions.yml) runs it; so does the project's test command, against a
# registry on loopback (tests/registry/test_ci_example.py), so this example cannot rot.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

flags=(--disk_cache="${XM_BAZEL_DISK_CACHE:-$HOME/.cache/xm-bazel-disk}" --color=no --curses=no)
if [[ -n "${CI:-}" ]]; then
  flags+=(--show_progress_rate_limit=30)
fi
mapfile -t images < <(bazel query --color=no \
  'kind("xm_(oci|py)_image rule", //...) except attr(tags, manual, //...)')
mapfile -t pushes < <(bazel query --color=no \
  'attr(tags, "\bxm_oci_push\b", //...) except attr(tags, manual, //...)')
echo "images: ${images[*]}"
echo "push targets: ${pushes[*]}"
bazel build "${flags[@]}" "${images[@]}" "${pushes[@]}"

tag="${TAG:-$(git rev-parse --short HEAD)}"
for target in "${pushes[@]}"; do
  args=(--tag="$tag")
  if [[ -n "${REGISTRY:-}" ]]; then
    args+=(--registry="$REGISTRY")
  fi
  bazel run "${flags[@]}" "$target" -- "${args[@]}"
done
