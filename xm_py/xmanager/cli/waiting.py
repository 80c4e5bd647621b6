"""`xmanager wait EXP[/WU]`: block until work units are final, showing progress.

One WatchWorkUnits stream (resumed after a daemon restart) rather than polling. On a terminal
a live rich bar counts units by state; otherwise one plain line per unit that ends.
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import grpc

from xmanager.cli.json_output import state_name
from xmanager.client.connection import Launcher, LauncherUnavailableError
from xmanager.launcher.v1 import launcher_pb2 as pb

FINAL_STATES = frozenset(
    {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED, pb.JOB_STATE_LOST}
)


def _updates(
    launcher: Launcher, experiment_id: int, work_unit_ids: Sequence[int]
) -> Iterator[pb.WorkUnit]:
    """Every change of the experiment's work units (or only of those named) until all are final,
    resuming the stream if the daemon restarts."""
    sequence = 0
    retry_until = 0.0
    while True:
        request = pb.WatchWorkUnitsRequest(
            experiment_id=experiment_id,
            after_sequence=sequence,
            until_all_final=True,
            work_unit_ids=work_unit_ids,
        )
        try:
            for response in launcher.stub.WatchWorkUnits(request):
                retry_until = 0.0
                for update in response.updates:
                    if update.event.sequence:
                        sequence = max(sequence, update.event.sequence)
                    yield update.work_unit
            return
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            retry_until = retry_until or time.monotonic() + launcher.retry_seconds
            if time.monotonic() > retry_until:
                raise LauncherUnavailableError(
                    f"lost the launcher daemon at {launcher.target}: {error.details()}"
                ) from error
            launcher.ensure_daemon()
            time.sleep(0.2)


def _summary(units: dict[int, int]) -> str:
    counts = collections.Counter(units.values())
    return ", ".join(f"{state_name(s)} {n}" for s, n in sorted(counts.items()))


def wait(launcher: Launcher, experiment_id: int, work_unit_id: int | None) -> bool:
    """Returns once the experiment's units (or the one unit) are final: whether all succeeded."""
    # The experiment must exist (NOT_FOUND otherwise), and so must the unit.
    launcher.call(launcher.stub.GetExperiment, pb.GetExperimentRequest(experiment_id=experiment_id))
    if work_unit_id is not None:
        launcher.call(
            launcher.stub.GetWorkUnit,
            pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id),
        )
    label = f"{experiment_id}" if work_unit_id is None else f"{experiment_id}/{work_unit_id}"
    states: dict[int, int] = {}
    live = sys.stderr.isatty()
    report = _live_report(label) if live else _plain_report(experiment_id)
    try:
        ids = [] if work_unit_id is None else [work_unit_id]
        for unit in _updates(launcher, experiment_id, ids):
            previous = states.get(unit.work_unit_id)
            states[unit.work_unit_id] = unit.status.state
            report(unit, previous, states)
    finally:
        report(None, None, states)
    succeeded = bool(states) and all(s == pb.JOB_STATE_SUCCEEDED for s in states.values())
    verdict = "succeeded" if succeeded else "did not succeed"
    print(f"{label}: {verdict} ({_summary(states) or 'no work units'})")
    return succeeded


_Report = Callable[[pb.WorkUnit | None, int | None, dict[int, int]], None]


def _plain_report(experiment_id: int) -> _Report:
    """A line on stderr for each unit that ends (logs and CI output stay readable)."""

    def report(unit: pb.WorkUnit | None, previous: int | None, states: dict[int, int]) -> None:
        if unit is None or unit.status.state not in FINAL_STATES or previous == unit.status.state:
            return
        done = sum(1 for s in states.values() if s in FINAL_STATES)
        reason = f": {unit.status.reason}" if unit.status.reason else ""
        print(
            f"{experiment_id}/{unit.work_unit_id} {state_name(unit.status.state)}{reason} "
            f"[{done}/{len(states)} final]",
            file=sys.stderr,
            flush=True,
        )

    return report


def _live_report(label: str) -> _Report:
    """A rich progress bar: final units over all units, with the counts by state."""
    # Imported here: only a terminal needs the live display.
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # noqa: PLC0415

    progress = Progress(
        TextColumn(f"waiting for {label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task("", total=None)
    progress.start()

    def report(unit: pb.WorkUnit | None, previous: int | None, states: dict[int, int]) -> None:
        if unit is None:
            progress.stop()
            return
        done = sum(1 for s in states.values() if s in FINAL_STATES)
        progress.update(task, completed=done, total=len(states), description=_summary(states))

    return report
