"""Regenerates a lock file of Debian packages from a short list of package names.

    bazel run //xm_rules/debian:python_lock.update

Reads the Packages indices of a distribution's suites (e.g. bookworm, bookworm-updates and
bookworm-security) from the machine's own apt mirrors, takes each package's newest version,
follows Pre-Depends and Depends (first satisfiable alternative; Provides for virtual packages)
from the root names, and writes, per package: name, version, architecture, the archive it comes
from by a neutral name ("debian" or "debian-security"), its path in that archive's pool, size
and sha256. No host names: the mirrors come from apt's sources (or XM_DEBIAN_MIRROR and
XM_DEBIAN_SECURITY_MIRROR), as for the repository rule that downloads the packages.

Each index is checked against its suite's InRelease file, whose signature is checked with gpgv
and the archive keyring.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from xm_rules.tools.debian import (
    PRIORITY_RANK,
    DebianError,
    Relation,
    compare_versions,
    parse_control,
    parse_relations,
    satisfies,
)

ARCHIVES = ("debian", "debian-security")
MIRROR_ENV = {"debian": "XM_DEBIAN_MIRROR", "debian-security": "XM_DEBIAN_SECURITY_MIRROR"}
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LOCK_VERSION = 1


class LockError(Exception):
    """The lock cannot be generated; the message says what to fix."""


# --- Mirrors from apt's configuration ---------------------------------------------------------


@dataclasses.dataclass
class Source:
    uri: str
    suites: list[str]
    signed_by: str = ""


def archive_of(uri: str, suites: Iterable[str]) -> str:
    """Security updates live in their own archive; everything else is the main one."""
    if any(s.endswith("-security") or s.endswith("/updates") for s in suites):
        return "debian-security"
    return "debian"


def apt_sources(root: str = "/") -> list[Source]:
    """The `deb` sources of apt's sources.list (one-line format) and sources.list.d (both)."""
    etc = os.path.join(root, "etc/apt")
    sources: list[Source] = []
    one_line = [
        os.path.join(etc, "sources.list"),
        *sorted(glob.glob(f"{etc}/sources.list.d/*.list")),
    ]
    for path in one_line:
        if not os.path.isfile(path):
            continue
        for raw in Path(path).read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            match = re.match(r"^deb\s+(\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if not match:
                continue
            options = match.group(1) or ""
            signed = re.search(r"signed-by=(\S+?)[\s\]]", options + " ")
            sources.append(
                Source(match.group(2), [match.group(3)], signed.group(1) if signed else "")
            )
    for path in sorted(glob.glob(f"{etc}/sources.list.d/*.sources")):
        for fields in parse_control(Path(path).read_text()):
            if "deb" not in fields.get("Types", "").split():
                continue
            if fields.get("Enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("URIs", "").split():
                sources.append(
                    Source(uri, fields.get("Suites", "").split(), fields.get("Signed-By", ""))
                )
    return sources


def mirrors(sources: Sequence[Source], env: dict[str, str]) -> dict[str, list[Source]]:
    """Per archive, the candidate mirrors: the environment's override first, then apt's."""
    found: dict[str, list[Source]] = {archive: [] for archive in ARCHIVES}
    for archive in ARCHIVES:
        override = env.get(MIRROR_ENV[archive], "").strip()
        if override:
            found[archive].append(Source(override.rstrip("/"), []))
    for source in sources:
        archive = archive_of(source.uri, source.suites)
        uri = source.uri.rstrip("/")
        if all(s.uri != uri for s in found[archive]):
            found[archive].append(Source(uri, source.suites, source.signed_by))
    return found


# --- Fetching and verifying indices -----------------------------------------------------------


def fetch(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "xmanager-deb-lock"})
    with urllib.request.urlopen(request, timeout=120) as response:
        data: bytes = response.read()
        return data


def verified_release(data: bytes, keyring: str, verify: bool, what: str) -> str:
    """The signed content of an InRelease file, after gpgv checked its signature."""
    if not verify:
        text = data.decode()
        body = text.split("\n\n", 1)[1] if text.startswith("-----BEGIN PGP") else text
        return body.split("\n-----BEGIN PGP SIGNATURE", 1)[0]
    gpgv = shutil.which("gpgv")
    if not gpgv or not os.path.isfile(keyring):
        raise LockError(
            f"cannot check the signature of {what}: gpgv or the keyring {keyring} is missing "
            "(apt-get install gpgv debian-archive-keyring), or pass --no-verify"
        )
    with tempfile.TemporaryDirectory() as tmp:
        signed = os.path.join(tmp, "InRelease")
        Path(signed).write_bytes(data)
        result = subprocess.run(
            [gpgv, "--keyring", keyring, "--output", "-", signed],
            capture_output=True,
            check=False,
        )
    if result.returncode != 0:
        raise LockError(f"bad signature on {what}:\n{result.stderr.decode(errors='replace')}")
    return result.stdout.decode()


def index_entry(release: str, name: str) -> tuple[str, int]:
    """The SHA256 and size that a Release file records for one of its index files."""
    section = release.split("\nSHA256:", 1)
    if len(section) != 2:
        raise LockError("the Release file has no SHA256 section")
    for line in section[1].splitlines()[1:]:
        if not line.startswith(" "):
            break
        digest, size, path = line.split()
        if path == name:
            return digest, int(size)
    raise LockError(f"the Release file does not list {name}")


@dataclasses.dataclass
class Package:
    name: str
    version: str
    architecture: str
    archive: str
    suite: str
    path: str
    sha256: str
    size: int
    priority: str
    depends: list[list[Relation]]
    provides: list[Relation]


def load_suite(mirror: Source, archive: str, suite: str, arch: str, verify: bool) -> list[Package]:
    base = f"{mirror.uri}/dists/{suite}"
    keyring = mirror.signed_by if mirror.signed_by.startswith("/") else DEFAULT_KEYRING
    release = verified_release(fetch(f"{base}/InRelease"), keyring, verify, f"{suite}/InRelease")
    name = f"main/binary-{arch}/Packages.xz"
    digest, size = index_entry(release, name)
    by_hash = re.search(r"^Acquire-By-Hash:\s*yes", release, re.MULTILINE)
    url = f"{base}/main/binary-{arch}/by-hash/SHA256/{digest}" if by_hash else f"{base}/{name}"
    data = fetch(url)
    if hashlib.sha256(data).hexdigest() != digest or len(data) != size:
        raise LockError(f"{url} does not match the checksum in {suite}/InRelease")
    packages = []
    for fields in parse_control(lzma.decompress(data).decode()):
        depends = parse_relations(fields.get("Pre-Depends", "")) + parse_relations(
            fields.get("Depends", "")
        )
        provides = [group[0] for group in parse_relations(fields.get("Provides", ""))]
        packages.append(
            Package(
                name=fields["Package"],
                version=fields["Version"],
                architecture=fields["Architecture"],
                archive=archive,
                suite=suite,
                path=fields["Filename"],
                sha256=fields["SHA256"],
                size=int(fields["Size"]),
                priority=fields.get("Priority", "optional"),
                depends=depends,
                provides=provides,
            )
        )
    return packages


# --- Resolution -------------------------------------------------------------------------------


class Universe:
    """The newest version of every package, and who provides each virtual package."""

    def __init__(self, packages: Iterable[Package]) -> None:
        self.newest: dict[str, Package] = {}
        for package in packages:
            current = self.newest.get(package.name)
            if current is None or compare_versions(package.version, current.version) > 0:
                self.newest[package.name] = package
        self.providers: dict[str, list[Package]] = {}
        for package in self.newest.values():
            for provided in package.provides:
                self.providers.setdefault(provided.name, []).append(package)

    def candidate(self, relation: Relation) -> Package | None:
        real = self.newest.get(relation.name)
        if real is not None and (
            not relation.op or satisfies(real.version, relation.op, relation.version)
        ):
            return real
        providers = [
            p
            for p in self.providers.get(relation.name, [])
            if not relation.op
            or any(
                v.name == relation.name
                and v.op == "="
                and satisfies(v.version, relation.op, relation.version)
                for v in p.provides
            )
        ]
        providers.sort(key=lambda p: (PRIORITY_RANK.get(p.priority, 9), p.name))
        return providers[0] if providers else None


def resolve(universe: Universe, roots: Sequence[str], exclude: Sequence[str]) -> list[Package]:
    selected: dict[str, Package] = {}
    excluded = set(exclude)

    def satisfied(relation: Relation) -> bool:
        chosen = selected.get(relation.name)
        if chosen and (not relation.op or satisfies(chosen.version, relation.op, relation.version)):
            return True
        return (
            any(any(v.name == relation.name for v in p.provides) for p in selected.values())
            and not relation.op
        )

    pending: list[tuple[Package, str]] = []
    for root in roots:
        package = universe.candidate(Relation(root))
        if package is None:
            raise LockError(f"package {root!r} is in none of the indices read")
        pending.append((package, "(root)"))
    while pending:
        package, why = pending.pop(0)
        if package.name in selected:
            continue
        selected[package.name] = package
        for group in package.depends:
            if any(r.name in excluded for r in group[:1]) or any(satisfied(r) for r in group):
                continue
            for relation in group:
                if relation.name in excluded:
                    continue
                candidate = universe.candidate(relation)
                if candidate is not None:
                    pending.append((candidate, package.name))
                    break
            else:
                alternatives = " | ".join(str(r) for r in group)
                raise LockError(
                    f"cannot satisfy {alternatives!r}, needed by {package.name} {package.version} "
                    f"(reached from {why})"
                )
    return [selected[name] for name in sorted(selected)]


def lock_document(
    packages: Sequence[Package],
    *,
    roots: Sequence[str],
    exclude: Sequence[str],
    distribution: str,
    arch: str,
    suites: dict[str, list[str]],
    command: str,
) -> dict[str, object]:
    return {
        "comment": f"Generated by `{command}`; do not edit.",
        "lock_version": LOCK_VERSION,
        "distribution": distribution,
        "architecture": arch,
        "roots": list(roots),
        "exclude": sorted(exclude),
        "archives": suites,
        "packages": [
            {
                "name": p.name,
                "version": p.version,
                "architecture": p.architecture,
                "archive": p.archive,
                "path": p.path,
                "sha256": p.sha256,
                "size": p.size,
            }
            for p in packages
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="the lock file, relative to the workspace")
    parser.add_argument("--package", action="append", required=True, help="a root package name")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="a package not to install (needed only by maintainer scripts)",
    )
    parser.add_argument("--distribution", default="bookworm")
    parser.add_argument("--arch", default="amd64")
    parser.add_argument("--command", default="bazel run", help="how to rerun this, for the header")
    parser.add_argument("--no-verify", action="store_true", help="skip InRelease signature checks")
    args = parser.parse_args(argv)

    suites = {
        "debian": [args.distribution, f"{args.distribution}-updates"],
        "debian-security": [f"{args.distribution}-security"],
    }
    found = mirrors(apt_sources(), dict(os.environ))
    packages: list[Package] = []
    try:
        for archive, names in suites.items():
            if not found[archive]:
                raise LockError(
                    f"no apt source for the {archive!r} archive: add one to "
                    f"/etc/apt/sources.list.d or set {MIRROR_ENV[archive]}=<mirror URL>"
                )
            mirror = found[archive][0]
            for suite in names:
                print(f"reading {archive} {suite}/main/binary-{args.arch}", file=sys.stderr)
                packages += load_suite(mirror, archive, suite, args.arch, not args.no_verify)
        selected = resolve(Universe(packages), args.package, args.exclude)
    except (LockError, DebianError, OSError) as e:
        print(f"deb_lock: {e}", file=sys.stderr)
        return 1
    document = lock_document(
        selected,
        roots=args.package,
        exclude=args.exclude,
        distribution=args.distribution,
        arch=args.arch,
        suites=suites,
        command=args.command,
    )
    workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY", ".")
    output = Path(workspace, args.output)
    output.write_text(json.dumps(document, indent=2) + "\n")
    total = sum(p.size for p in selected)
    print(f"wrote {args.output}: {len(selected)} packages, {total / 1e6:.1f} MB of .deb files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
