"""`JobRequirements`: what one job (each of its replicas) needs from the machine it runs on."""

from __future__ import annotations

import enum
import itertools
import math
import numbers
from collections.abc import Mapping
from typing import TypeAlias

from xmanager.xm.resource_groups import Architecture
from xmanager.xm.resources import (
    GiB,
    KiB,
    MiB,
    PiB,
    ResourceKind,
    ResourceType,
    TiB,
    Topology,
)

# A count, a size in bytes, a number of vCPUs, or (TPUs only) a topology such as '4x4'.
ResourceQuantity: TypeAlias = int | float | str | Topology


class ServiceTier(enum.IntEnum):
    """Scheduling priority class, as in XManager."""

    PROD = 200
    BATCH = 100
    FREEBIE = 25


_BYTE_UNITS = (("PiB", PiB), ("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB))


def _check_number(resource: ResourceType, value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Resource {resource.display_name} must be a number, got {type(value).__name__}: "
            f"{value!r}."
        )
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(
            f"Resource {resource.display_name} must be a positive finite number, got {value!r}."
        )
    return value if isinstance(value, int) else number


def _check_count(resource: ResourceType, value: object) -> int:
    number = _check_number(resource, value)
    if number != int(number):
        raise ValueError(
            f"Resource {resource.display_name} counts whole devices, got {value!r}; use an int."
        )
    return int(number)


def _parse_quantity(resource: ResourceType, value: object) -> tuple[float | int, Topology | None]:
    """Returns the scalar quantity and, for TPUs, the topology."""
    kind = resource.kind
    if kind is ResourceKind.TPU:
        if isinstance(value, Topology):
            return value.chip_count, value
        if isinstance(value, str):
            topology = Topology(value)
            return topology.chip_count, topology
        count = _check_count(resource, value)
        return count, Topology(str(count))
    if isinstance(value, str | Topology):
        raise TypeError(
            f"Resource {resource.display_name} takes a number, not {value!r}; only TPU resources "
            "accept a topology such as '4x4'."
        )
    if kind in (ResourceKind.GPU, ResourceKind.LOCAL_GPU):
        return _check_count(resource, value), None
    return _check_number(resource, value), None


def _parse_service_tier(value: ServiceTier | str | None) -> ServiceTier | None:
    if value is None or isinstance(value, ServiceTier):
        return value
    if isinstance(value, str):
        try:
            return ServiceTier[value.upper()]
        except KeyError:
            pass
    valid = ", ".join(tier.name for tier in ServiceTier)
    raise ValueError(f"Unknown service tier {value!r}; valid tiers: {valid}.")


class JobRequirements:
    """Resources for a job, e.g. `JobRequirements(cpu=4, memory=8 * xm.GiB, T4=1)`.

    Resource names are matched case-insensitively against `ResourceType` names and aliases, and
    may be given in `resources` or as keywords (not both for the same resource). A job requests
    at most one accelerator (one GPU model, one TPU version, or `local_gpu`). TPU quantities may
    be a chip count or a topology string such as '4x4'; `.resources` then holds the chip count
    and `.topology` the shape. All quantities are per replica.
    """

    def __init__(
        self,
        resources: Mapping[ResourceType | str, ResourceQuantity] | None = None,
        *,
        architecture: Architecture | None = None,
        location: str | None = None,
        replicas: int | None = None,
        service_tier: ServiceTier | str | None = None,
        **kw_resources: ResourceQuantity,
    ) -> None:
        self._resources: dict[ResourceType, float | int] = {}
        self._accelerator: ResourceType | None = None
        self._topology: Topology | None = None
        if resources is not None and not isinstance(resources, Mapping):
            raise TypeError(
                f"resources must be a mapping of resource name to quantity, got "
                f"{type(resources).__name__}: {resources!r}."
            )
        given = itertools.chain((resources or {}).items(), kw_resources.items())
        for key, value in given:
            resource = key if isinstance(key, ResourceType) else ResourceType.from_name(key)
            if resource in self._resources:
                raise ValueError(
                    f"Resource {resource.display_name} is given twice (also check aliases such "
                    "as ram/memory and disk/ephemeral_storage)."
                )
            quantity, topology = _parse_quantity(resource, value)
            if resource.is_accelerator:
                if self._accelerator is not None:
                    raise ValueError(
                        f"A job can request at most one accelerator type, got "
                        f"{self._accelerator.display_name} and {resource.display_name}."
                    )
                self._accelerator = resource
                self._topology = topology
            self._resources[resource] = quantity

        if location is not None and (not isinstance(location, str) or not location):
            raise ValueError(f"location must be a non-empty str or None, got {location!r}.")
        if replicas is not None and (
            isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1
        ):
            raise ValueError(f"replicas must be a positive int or None, got {replicas!r}.")
        if architecture is not None and not isinstance(architecture, Architecture):
            raise TypeError(
                f"architecture must be an xm.Architecture or None, got {architecture!r}."
            )
        self._architecture = architecture
        self._location = location
        self._replicas = replicas
        self._service_tier = _parse_service_tier(service_tier)

    @property
    def resources(self) -> dict[ResourceType, float | int]:
        """The requested quantities (a copy); TPUs as chip counts."""
        return dict(self._resources)

    @property
    def task_requirements(self) -> dict[ResourceType, float | int]:
        """XManager's name for `resources`."""
        return self.resources

    @property
    def accelerator(self) -> ResourceType | None:
        return self._accelerator

    @property
    def topology(self) -> Topology | None:
        """The TPU topology, when the accelerator is a TPU."""
        return self._topology

    @property
    def architecture(self) -> Architecture | None:
        """The CPU architecture asked for (XManager's; no backend reads it yet)."""
        return self._architecture

    @property
    def location(self) -> str | None:
        return self._location

    @property
    def replicas(self) -> int | None:
        return self._replicas

    @property
    def service_tier(self) -> ServiceTier | None:
        return self._service_tier

    def _quantities(self) -> dict[ResourceType, float | int | Topology]:
        """Quantities as they could be passed to the constructor: TPUs by topology, which keeps
        the shape that a chip count alone would lose."""
        quantities: dict[ResourceType, float | int | Topology] = dict(self._resources)
        if self._accelerator is not None and self._topology is not None:
            quantities[self._accelerator] = self._topology
        return quantities

    def merge(self, other: JobRequirements) -> JobRequirements:
        """Returns new requirements: `other`'s values win; an accelerator in `other` replaces
        this one's accelerator; unset location/replicas/service_tier in `other` keep ours."""
        quantities: dict[ResourceType | str, ResourceQuantity] = {
            resource: value
            for resource, value in self._quantities().items()
            if not (other.accelerator is not None and resource.is_accelerator)
        }
        for resource, value in other._quantities().items():
            quantities[resource] = value
        return JobRequirements(
            quantities,
            architecture=(
                other.architecture if other.architecture is not None else self.architecture
            ),
            location=other.location if other.location is not None else self.location,
            replicas=other.replicas if other.replicas is not None else self.replicas,
            service_tier=(
                other.service_tier if other.service_tier is not None else self.service_tier
            ),
        )

    def _key(self) -> tuple[object, ...]:
        return (
            self._resources,
            self._topology,
            self._architecture,
            self._location,
            self._replicas,
            self._service_tier,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JobRequirements):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # Mutable-looking value object, like XManager's.

    def __repr__(self) -> str:
        parts = [
            f"{resource.display_name}={_format_quantity(resource, value)}"
            for resource, value in self._quantities().items()
        ]
        if self._architecture is not None:
            parts.append(f"architecture=xm.Architecture.{self._architecture.name}")
        if self._location is not None:
            parts.append(f"location={self._location!r}")
        if self._replicas is not None:
            parts.append(f"replicas={self._replicas}")
        if self._service_tier is not None:
            parts.append(f"service_tier=xm.ServiceTier.{self._service_tier.name}")
        return f"xm.JobRequirements({', '.join(parts)})"


def _format_quantity(resource: ResourceType, value: float | int | Topology) -> str:
    if isinstance(value, Topology):
        return repr(value.name) if len(value.dimensions) > 1 else str(value.chip_count)
    if resource.kind in (ResourceKind.MEMORY, ResourceKind.DISK) and value == int(value):
        for unit_name, unit in _BYTE_UNITS:
            if int(value) % unit == 0:
                return f"{int(value) // unit} * xm.{unit_name}"
    return repr(value)
