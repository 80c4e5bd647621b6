"""Reading whole work units: the queries behind GetWorkUnit and ListWorkUnits.

They are the daemon's most frequent reads, so they use Core statements with bound parameters,
whose compiled form SQLAlchemy caches, on a plain connection (no ORM session around them).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, select

from launcher_server.store import conversions
from launcher_server.store.batch import chunks
from launcher_server.store.models import JOBS, UNITS
from xmanager.launcher.v1 import launcher_pb2 as pb

UnitKey = tuple[int, int]

_UNIT = select(UNITS).where(
    UNITS.c.experiment_id == bindparam("e"), UNITS.c.work_unit_id == bindparam("w")
)
_UNIT_JOBS = select(JOBS).where(
    JOBS.c.experiment_id == bindparam("e"), JOBS.c.work_unit_id == bindparam("w")
)
_UNITS_OF = select(UNITS).where(
    UNITS.c.experiment_id == bindparam("e"),
    UNITS.c.work_unit_id.in_(bindparam("ids", expanding=True)),
)
_JOBS_OF = select(JOBS).where(
    JOBS.c.experiment_id == bindparam("e"),
    JOBS.c.work_unit_id.in_(bindparam("ids", expanding=True)),
)


def get_unit(connection: Connection, key: UnitKey) -> pb.WorkUnit | None:
    """One whole unit, or None."""
    params = {"e": key[0], "w": key[1]}
    row = connection.execute(_UNIT, params).first()
    if row is None:
        return None
    return conversions.unit_message(row, connection.execute(_UNIT_JOBS, params))


def load_units(connection: Connection, keys: Sequence[UnitKey]) -> dict[UnitKey, pb.WorkUnit]:
    """Whole units, two queries per experiment and chunk of units."""
    by_experiment: dict[int, list[int]] = collections.defaultdict(list)
    for experiment_id, work_unit_id in sorted(set(keys)):
        by_experiment[experiment_id].append(work_unit_id)
    units: dict[UnitKey, pb.WorkUnit] = {}
    for experiment_id, ids in by_experiment.items():
        for chunk in chunks(ids):
            params = {"e": experiment_id, "ids": chunk}
            rows = {row.work_unit_id: row for row in connection.execute(_UNITS_OF, params)}
            jobs: dict[int, list[Any]] = {work_unit_id: [] for work_unit_id in rows}
            for job in connection.execute(_JOBS_OF, params):
                jobs[job.work_unit_id].append(job)
            for work_unit_id, row in rows.items():
                units[(experiment_id, work_unit_id)] = conversions.unit_message(
                    row, jobs[work_unit_id]
                )
    return units


class UnitCache:
    """Recently read whole units, serialized, dropped as soon as a write changes them.

    Exact because every write goes through the store: `invalidate` runs after each commit. A
    read that overlapped a commit changing one of its units does not cache that unit (it may
    hold what the commit changed); its other units are cached, so a dashboard listing a sweep
    while it runs reconverts only the units that changed.
    """

    def __init__(self, capacity: int = 4096, changes_kept: int = 8192) -> None:
        self._lock = threading.Lock()
        self._units: collections.OrderedDict[UnitKey, bytes] = collections.OrderedDict()
        self._capacity = capacity
        self._generation = 0
        # The generation each recently changed unit was last invalidated at, oldest first.
        self._changed: collections.OrderedDict[UnitKey, int] = collections.OrderedDict()
        self._changes_kept = changes_kept
        # Reads begun before this generation are not cached: changes they overlapped were
        # forgotten (or everything was dropped).
        self._floor = 0

    @property
    def generation(self) -> int:
        """Taken before a read: `put` then knows which commits the read may have overlapped."""
        with self._lock:
            return self._generation

    def get(self, key: UnitKey) -> pb.WorkUnit | None:
        data = self.get_serialized(key)
        return None if data is None else pb.WorkUnit.FromString(data)

    def get_serialized(self, key: UnitKey) -> bytes | None:
        with self._lock:
            data = self._units.get(key)
            if data is not None:
                self._units.move_to_end(key)
            return data

    def put(self, key: UnitKey, unit: pb.WorkUnit, generation: int) -> None:
        """Caches a unit read from the store by a read begun at `generation`, unless a commit
        changed it since."""
        data = unit.SerializeToString()
        with self._lock:
            if generation < self._floor or self._changed.get(key, -1) > generation:
                return
            self._units[key] = data
            self._units.move_to_end(key)
            while len(self._units) > self._capacity:
                self._units.popitem(last=False)

    def invalidate(self, keys: Iterable[UnitKey]) -> None:
        with self._lock:
            self._generation += 1
            for key in keys:
                self._units.pop(key, None)
                self._changed[key] = self._generation
                self._changed.move_to_end(key)
            while len(self._changed) > self._changes_kept:
                _, forgotten = self._changed.popitem(last=False)
                self._floor = max(self._floor, forgotten)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._floor = self._generation
            self._units.clear()
            self._changed.clear()


def repeated_field(number: int, items: Iterable[bytes]) -> bytes:
    """The wire form of a repeated message field holding already serialized messages: a list
    response is parsed once from it, not built message by message in Python."""
    tag = bytes([(number << 3) | 2])  # length-delimited; fields 1..15 fit in one byte
    parts = []
    for item in items:
        size, length = len(item), bytearray()
        while True:
            byte = size & 0x7F
            size >>= 7
            length.append(byte | (0x80 if size else 0))
            if not size:
                break
        parts += [tag, bytes(length), item]
    return b"".join(parts)
