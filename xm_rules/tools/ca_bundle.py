"""Builds /etc/ssl/certs/ca-certificates.crt from the ca-certificates .deb, as its postinst would.

`update-ca-certificates` concatenates the certificates that /etc/ca-certificates.conf enables, which
by default are all of /usr/share/ca-certificates/mozilla/*.crt. This does the same, in file-name
order, each certificate ending with a newline.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from pathlib import Path

from xm_rules.tools.debian import DebianError, deb_tar

CERT_DIR = "usr/share/ca-certificates/mozilla/"


def bundle(deb_path: str) -> bytes:
    certificates: dict[str, bytes] = {}
    with deb_tar(Path(deb_path).read_bytes(), "data", deb_path) as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./")
            if name.startswith(CERT_DIR) and name.endswith(".crt") and member.isreg():
                f = tar.extractfile(member)
                assert f is not None
                certificates[name] = f.read()
    if not certificates:
        raise DebianError(f"{deb_path} holds no /{CERT_DIR}*.crt: is it ca-certificates?")
    parts = []
    for name in sorted(certificates):
        data = certificates[name]
        parts.append(data if data.endswith(b"\n") else data + b"\n")
    return b"".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb", required=True, help="the ca-certificates .deb")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        args.out.write_bytes(bundle(args.deb))
    except (DebianError, tarfile.TarError, OSError) as e:
        print(f"ca_bundle: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
