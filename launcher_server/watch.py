"""WatchWorkUnits: a snapshot of the units as they are, then every update after it.

Recent updates come from the event hub's memory; a watcher that resumes from further back
catches up from the store's event log. Each response carries each unit once, with its newest
status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from launcher_server import limits
from launcher_server.aggregation import FINAL_STATES
from launcher_server.errors import (
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    UnavailableError,
)
from launcher_server.event_hub import EventHub, Update, watch_response
from launcher_server.store.batch import WatchUpdate
from launcher_server.store.store import Store
from xmanager.launcher.v1 import launcher_pb2 as pb

_POLL_SECONDS = 1.0
_SNAPSHOT_PAGE = 1000


class Watcher:
    def __init__(self, store: Store, hub: EventHub) -> None:
        self._store = store
        self._hub = hub

    def watch(
        self, request: pb.WatchWorkUnitsRequest, is_active: Callable[[], bool]
    ) -> Iterator[pb.WatchWorkUnitsResponse]:
        """The responses of one watch, until the caller goes away (or all units are final,
        with `until_all_final`). Raises UnavailableError when the daemon stops."""
        if request.experiment_id < 0:
            raise InvalidArgumentError("experiment_id", "must not be negative")
        if request.experiment_id:
            self._store.get_experiment(request.experiment_id)
        elif request.until_all_final:
            raise InvalidArgumentError("until_all_final", "needs an experiment_id")
        elif request.work_unit_ids:
            raise InvalidArgumentError("work_unit_ids", "needs an experiment_id")
        units = self._watched_units(request)
        if request.after_sequence > self._hub.last_sequence:
            raise OutOfRangeError(
                f"after_sequence {request.after_sequence} is beyond the last event "
                f"({self._hub.last_sequence}); resume from a sequence this daemon sent, or 0"
            )
        wanted = frozenset(request.states)
        sequence = request.after_sequence
        if sequence == 0:
            # Updates after this point come from the hub; the snapshot may repeat some of them,
            # which is harmless (an update is the unit's whole status).
            sequence = self._hub.last_sequence
            for page in self._snapshot(request.experiment_id, units):
                selected = [unit for unit in page if not wanted or unit.status.state in wanted]
                if selected:
                    yield pb.WatchWorkUnitsResponse(
                        updates=[pb.WorkUnitUpdate(work_unit=unit) for unit in selected]
                    )
        while is_active():
            # Asked before reading the updates: the ones that made every unit final are sent
            # before the stream ends.
            finished = request.until_all_final and self._all_final(request.experiment_id, units)
            updates, up_to = self._updates_after(sequence, request.experiment_id)
            if up_to == sequence:
                if finished:
                    return
                if self._hub.closed:
                    raise UnavailableError("the daemon is stopping; resume the watch")
                self._hub.wait_beyond(sequence, _POLL_SECONDS)
                continue
            sequence = up_to
            # Each unit once, with its newest status and the event that led to it.
            newest = {(u.experiment_id, u.work_unit_id): u for u in updates}
            send = [
                update
                for key, update in sorted(newest.items(), key=lambda item: item[1].sequence)
                if (not wanted or update.state in wanted) and (not units or key in units)
            ]
            if send:
                yield watch_response(send)

    def _updates_after(self, sequence: int, experiment_id: int) -> tuple[list[Update], int]:
        """Updates after `sequence` and how far they go: recent ones from memory, older ones
        rebuilt from the store's event log."""
        recent = self._hub.updates_after(sequence, experiment_id)
        if recent is not None:
            return recent
        events = self._store.events_after(sequence, experiment_id)
        if not events:
            return [], sequence
        unit_events = [
            e for e in events if e.subject in (pb.EVENT_SUBJECT_WORK_UNIT, pb.EVENT_SUBJECT_JOB)
        ]
        statuses = self._store.unit_statuses(
            [(e.experiment_id, e.work_unit_id) for e in unit_events]
        )
        updates = [
            Update.of(WatchUpdate(event, statuses[(event.experiment_id, event.work_unit_id)]))
            for event in unit_events
        ]
        return updates, events[-1].sequence

    def _watched_units(self, request: pb.WatchWorkUnitsRequest) -> frozenset[tuple[int, int]]:
        """The units a request names (empty: it names none, so watches all); each must exist."""
        if not request.work_unit_ids:
            return frozenset()
        for i, work_unit_id in enumerate(request.work_unit_ids):
            limits.check_id(work_unit_id, f"work_unit_ids[{i}]")
        units = frozenset((request.experiment_id, w) for w in request.work_unit_ids)
        missing = sorted(units - self._store.unit_statuses(list(units)).keys())
        if missing:
            ids = ", ".join(str(work_unit_id) for _, work_unit_id in missing[:10])
            raise NotFoundError(
                f"experiment {request.experiment_id} has no work unit {ids}; "
                f"`xmanager show {request.experiment_id}` lists its units"
            )
        return units

    def _snapshot(
        self, experiment_id: int, units: frozenset[tuple[int, int]]
    ) -> Iterator[list[pb.WorkUnit]]:
        """The watched units (all of one experiment, or of those with active units, unless
        some are named) as they are, in pages."""
        if units:
            keys = sorted(units)
            statuses = self._store.unit_statuses(keys)
            yield [statuses[key] for key in keys if key in statuses]  # less any deleted since
            return
        experiments = (
            [experiment_id] if experiment_id else self._store.experiment_ids_with_active_work()
        )
        for exp_id in experiments:
            ids = self._store.work_unit_ids(exp_id)
            for start in range(0, len(ids), _SNAPSHOT_PAGE):
                keys = [
                    (exp_id, work_unit_id) for work_unit_id in ids[start : start + _SNAPSHOT_PAGE]
                ]
                statuses = self._store.unit_statuses(keys)
                yield [statuses[key] for key in keys if key in statuses]  # less any deleted since

    def _all_final(self, experiment_id: int, units: frozenset[tuple[int, int]]) -> bool:
        if units:
            statuses = self._store.unit_statuses(list(units))
            return all(unit.status.state in FINAL_STATES for unit in statuses.values())
        experiment = self._store.get_experiment(experiment_id)
        finished = sum(
            count
            for state, count in experiment.work_unit_state_counts.items()
            if state in FINAL_STATES
        )
        return finished == experiment.work_unit_count
