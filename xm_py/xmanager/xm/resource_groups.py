"""`xm.GpuType`, `xm.TpuType`, `xm.AcceleratorType`, `xm.Architecture`: subsets of ResourceType.

As XManager's, a subset's members are the ResourceType members themselves
(`xm.GpuType.V100 is xm.ResourceType.V100`), it iterates over them, and `in` tests membership.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

from xmanager.xm.resources import ResourceKind, ResourceType


class _SubsetMeta(type):
    _members: tuple[ResourceType, ...]

    def __getattr__(cls, name: str) -> ResourceType:
        for member in cls._members:
            if member.name == name:
                return member
        raise AttributeError(f"{cls.__name__} has no member {name!r}")

    def __getitem__(cls, name: str) -> ResourceType:
        return getattr(cls, name)  # type: ignore[no-any-return]

    def __contains__(cls, value: Any) -> bool:
        return value in cls._members

    def __iter__(cls) -> Iterator[ResourceType]:
        return iter(cls._members)

    def __len__(cls) -> int:
        return len(cls._members)


def _kinds(*kinds: ResourceKind) -> tuple[ResourceType, ...]:
    return tuple(member for member in ResourceType if member.value.kind in kinds)


class GpuType(metaclass=_SubsetMeta):
    """The GPU resource types (not LOCAL_GPU)."""

    _members = _kinds(ResourceKind.GPU)


class TpuType(metaclass=_SubsetMeta):
    """The TPU resource types."""

    _members = _kinds(ResourceKind.TPU)


class AcceleratorType(metaclass=_SubsetMeta):
    """LOCAL_GPU, the TPU types and the GPU types."""

    _members = (ResourceType.LOCAL_GPU, *_kinds(ResourceKind.TPU), *_kinds(ResourceKind.GPU))


class Architecture(enum.Enum):
    """CPU architectures."""

    HASWELL = 1
    ARM = 2
