"""Pushes an image tarball to a registry: the program behind `xm_oci_push` targets.

    bazel run //examples/quickstart:train_image_push -- --tag=v2 --registry=127.0.0.1:5000

The target's `repository` and `remote_tags` come as `--default-repository` and `--default-tag`;
on the command line `--repository` replaces the repository, `--registry` only its host, and
`--tag` (repeatable) replaces the tags. Prints `REPOSITORY@sha256:...`; `--digest-file` also
writes the digest there. Credentials and CAs as `xmanager.oci.registry` finds them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from xmanager.oci import registry
from xmanager.oci.progress import PushProgress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, type=Path, help="the image tarball")
    parser.add_argument("--default-repository", default="")
    parser.add_argument("--default-tag", action="append", default=[])
    parser.add_argument("--repository", default="", help="registry/repository to push to")
    parser.add_argument("--registry", default="", help="replace only the registry host[:port]")
    parser.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    parser.add_argument("--digest-file", type=Path, help="write the pushed digest here")
    args = parser.parse_args(argv)
    repository = args.repository or args.default_repository
    if not repository:
        parser.error("no repository: set `repository` on the target or pass --repository")
    if args.registry:
        repository = args.registry + "/" + repository.split("/", 1)[1]
    tags = args.tag or args.default_tag or [""]
    digest_file = args.digest_file
    if digest_file is not None and not digest_file.is_absolute():
        # `bazel run` starts programs in the runfiles; a relative path means the user's directory.
        digest_file = Path(os.environ.get("BUILD_WORKING_DIRECTORY", ".")) / digest_file
    result = None
    try:
        for tag in tags:
            reference = f"{repository}:{tag}" if tag else repository
            progress = PushProgress()
            try:
                result = registry.push(args.image, reference, progress=progress)
            finally:
                progress.close()
            print(
                f"pushed {reference}: {result.reference} ({len(result.uploaded)} blobs uploaded, "
                f"{len(result.mounted)} mounted, {len(result.present)} already there)"
            )
    except registry.RegistryError as error:
        print(f"xm_oci_push: {error}", file=sys.stderr)
        return 1
    assert result is not None
    if digest_file is not None:
        digest_file.write_text(result.digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
