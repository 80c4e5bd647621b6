"""Debian archive formats: version comparison, dependency fields, Packages indices, .deb files.

Shared by the lock generator (deb_lock.py) and the layer tools (deb_layer.py, ca_bundle.py).
Standard library only: .deb members are `ar` archives; bookworm and trixie compress data.tar with
xz (lzma), older packages with gzip. zstd (used by Ubuntu) is not in the standard library.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import lzma
import re
import tarfile
from collections.abc import Iterator

PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}


class DebianError(Exception):
    """Bad Debian metadata or a broken .deb; the message says which."""


# --- Versions (the algorithm of dpkg's lib/dpkg/version.c) -----------------------------------


def _order(c: str) -> int:
    if c.isdigit():
        return 0
    if c.isascii() and c.isalpha():
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split_version(version: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in version:
        head, version = version.split(":", 1)
        epoch = int(head)
    upstream, _, revision = version.rpartition("-") if "-" in version else (version, "", "")
    return epoch, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """<0, 0 or >0 as Debian version `a` is older than, equal to or newer than `b`."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


def satisfies(version: str, op: str, wanted: str) -> bool:
    cmp = compare_versions(version, wanted)
    return {
        "<<": cmp < 0,
        "<=": cmp <= 0,
        "=": cmp == 0,
        ">=": cmp >= 0,
        ">>": cmp > 0,
    }[op]


# --- Relationship fields ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Relation:
    name: str
    op: str = ""
    version: str = ""

    def __str__(self) -> str:
        return f"{self.name} ({self.op} {self.version})" if self.op else self.name


_RELATION = re.compile(
    r"^([a-z0-9][a-z0-9+.\-]*)(?::[a-z0-9\-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?$"
)


def parse_relations(field: str) -> list[list[Relation]]:
    """`a (>= 1), b | c` -> [[a>=1], [b, c]]: groups that must all hold, of alternatives."""
    groups: list[list[Relation]] = []
    for group in field.split(","):
        if not group.strip():
            continue
        alternatives = []
        for alternative in group.split("|"):
            text = re.sub(r"\[[^]]*\]|<[^>]*>", "", alternative).strip()
            match = _RELATION.match(text)
            if not match:
                raise DebianError(f"cannot parse the relation {alternative.strip()!r}")
            name, op, version = match.groups()
            op = {"<": "<=", ">": ">="}.get(op or "", op or "")
            alternatives.append(Relation(name, op, version or ""))
        groups.append(alternatives)
    return groups


# --- Packages indices -------------------------------------------------------------------------


def parse_control(text: str) -> Iterator[dict[str, str]]:
    """Paragraphs of a deb822 file (Packages, control); continuation lines are folded in."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif line[0] in " \t":
            if key:
                fields[key] += "\n" + line
        elif not line.startswith("#"):
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    if fields:
        yield fields


# --- .deb files -------------------------------------------------------------------------------


def ar_members(data: bytes, what: str) -> dict[str, bytes]:
    """The members of an `ar` archive (the .deb container format)."""
    if not data.startswith(b"!<arch>\n"):
        raise DebianError(f"{what} is not a .deb (no ar header)")
    members: dict[str, bytes] = {}
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        try:
            size = int(header[48:58].decode().strip())
        except ValueError:
            raise DebianError(f"{what}: corrupt ar header at byte {offset}") from None
        start = offset + 60
        members[name] = data[start : start + size]
        offset = start + size + (size % 2)
    return members


def _decompress(name: str, payload: bytes, what: str) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(payload)
    if name.endswith(".gz"):
        return gzip.decompress(payload)
    if name.endswith(".tar"):
        return payload
    raise DebianError(
        f"{what}: {name} uses a compression the standard library cannot read "
        "(Debian bookworm and trixie use xz; zstd is not supported)"
    )


def deb_tar(deb: bytes, prefix: str, what: str) -> tarfile.TarFile:
    """The `control.tar.*` or `data.tar.*` member of a .deb, opened."""
    for name, payload in ar_members(deb, what).items():
        if name.startswith(prefix + ".tar"):
            return tarfile.open(fileobj=io.BytesIO(_decompress(name, payload, what)), mode="r:")
    raise DebianError(f"{what} has no {prefix}.tar member")


def deb_control(deb: bytes, what: str) -> str:
    with deb_tar(deb, "control", what) as tar:
        for member in tar.getmembers():
            if member.name.lstrip("./") == "control":
                f = tar.extractfile(member)
                assert f is not None
                return f.read().decode()
    raise DebianError(f"{what} has no control file")
