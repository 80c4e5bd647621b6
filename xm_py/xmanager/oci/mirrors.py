"""Registry mirrors: `$XM_REGISTRY_MIRRORS` sends pulls and pushes for one registry (or namespace)
to another location, for machines behind a firewall or with a pull-through mirror.

The value is a comma-separated list of `PREFIX=LOCATION`, modelled on containers-registries.conf's
`[[registry]] prefix/location`:

    XM_REGISTRY_MIRRORS='gcr.io=127.0.0.1:5000,docker.io=mirror.example:5000/hub'

PREFIX and LOCATION are `host[:port]` optionally followed by `/namespace...`. A reference whose
`registry/repository` is PREFIX or starts with `PREFIX/` has that part replaced by LOCATION; the
longest matching PREFIX wins; tag and digest are kept. Docker Hub references are normalized
first (`python:3.11` is `docker.io/library/python:3.11`). Unlike registries.conf, the rewrite
applies to pushes too, so the reference a job records is the one its cluster pulls.

Standard library only: `registry` applies it (`registry.locate`) to every pull and push.
"""

from __future__ import annotations

import dataclasses
import os
import re

ENV_VAR = "XM_REGISTRY_MIRRORS"
_EXAMPLE = "gcr.io=127.0.0.1:5000"
# host[:port] (a DNS name or an IPv6 literal in brackets), then repository-style path components.
_HOST = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])"
    r"(?::[0-9]+)?$"
)
_COMPONENT = re.compile(r"^[a-z0-9]+(?:[._-]+[a-z0-9]+)*$")


class MirrorsError(ValueError):
    """`$XM_REGISTRY_MIRRORS` is malformed; the message names the entry and the fix."""


@dataclasses.dataclass(frozen=True)
class Mirror:
    prefix: str  # host[:port][/namespace...]
    location: str


@dataclasses.dataclass(frozen=True)
class Mirrors:
    entries: tuple[Mirror, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Mirrors:
        entries: dict[str, Mirror] = {}
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            prefix, sep, location = (part.strip() for part in entry.partition("="))
            if not sep:
                raise _error(entry, "has no '='")
            if not prefix or not location:
                side = "PREFIX (before '=')" if not prefix else "LOCATION (after '=')"
                raise _error(entry, f"has an empty {side}")
            _check(entry, "prefix", prefix)
            _check(entry, "location", location)
            if prefix in entries:
                raise _error(entry, f"repeats the prefix {prefix!r}: give each prefix once")
            entries[prefix] = Mirror(prefix, location)
        # Longest prefix first: the first match is the one registries.conf would choose.
        ordered = sorted(entries.values(), key=lambda m: len(m.prefix), reverse=True)
        return cls(tuple(ordered))

    @classmethod
    def from_env(cls) -> Mirrors:
        return cls.parse(os.environ.get(ENV_VAR, ""))

    def rewrite(self, registry: str, repository: str) -> tuple[str, str]:
        """(registry, repository) at their mirror's location, or unchanged without a match."""
        name = f"{registry}/{repository}"
        for mirror in self.entries:
            if name == mirror.prefix or name.startswith(mirror.prefix + "/"):
                host, _, path = (mirror.location + name[len(mirror.prefix) :]).partition("/")
                return host, path
        return registry, repository


def _check(entry: str, what: str, value: str) -> None:
    if "://" in value:
        raise _error(entry, f"has a URL as its {what} ({value!r}): write host[:port], no scheme")
    if value.startswith(("/", ".", "~")):
        raise _error(
            entry, f"has a path as its {what} ({value!r}): it must be a registry host[:port]"
        )
    host, slash, path = value.partition("/")
    if not _HOST.match(host) or ("." not in host and ":" not in host and host != "localhost"):
        raise _error(
            entry,
            f"has {value!r} as its {what}, which does not start with a registry host[:port] "
            "(a host has a dot or a port, or is localhost)",
        )
    if slash and not all(_COMPONENT.match(part) for part in path.split("/")):
        raise _error(
            entry,
            f"has {value!r} as its {what}: after the host come lowercase repository path "
            "components only (no tag, digest or trailing '/')",
        )


def _error(entry: str, problem: str) -> MirrorsError:
    return MirrorsError(
        f"${ENV_VAR} entry {entry!r} {problem}; write comma-separated PREFIX=LOCATION entries "
        f"where both are host[:port][/namespace], e.g. {ENV_VAR}='{_EXAMPLE}'"
    )
