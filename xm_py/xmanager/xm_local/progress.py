"""Waiting for an experiment's work units, with a progress display of units by status."""

from __future__ import annotations

import asyncio
import collections
import sys
from collections.abc import Sequence

from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.xm_local.watcher import FINAL_STATES, StatusWatcher

_REFRESH_SECONDS = 0.25


def _state_name(state: int) -> str:
    return str(pb.JobState.Name(state)).removeprefix("JOB_STATE_")


def summarize(watcher: StatusWatcher, ids: Sequence[int]) -> tuple[int, str]:
    """(number of final units, "SUCCEEDED 9, RUNNING 1") over the given units."""
    units = watcher.snapshot()
    counts: collections.Counter[int] = collections.Counter(
        units[i].status.state if i in units else pb.JOB_STATE_PENDING for i in ids
    )
    final = sum(n for state, n in counts.items() if state in FINAL_STATES)
    text = ", ".join(f"{_state_name(state)} {n}" for state, n in sorted(counts.items()))
    return final, text


def shows_live() -> bool:
    """Whether waiting shows a live display (on a terminal), which needs every update."""
    return sys.stderr.isatty()


async def wait_with_progress(
    watcher: StatusWatcher, experiment_id: int, ids: Sequence[int]
) -> None:
    """Returns once every unit is final; shows a live bar on a terminal, a summary otherwise."""
    # Imported here: rich is needed only once the launch script waits.
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    waits = {asyncio.wrap_future(watcher.wait_final(i)) for i in ids}
    console = Console(stderr=True)
    label = f"Experiment {experiment_id}"
    if console.is_terminal:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[states]}"),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(label, total=len(ids), states="")
            while waits:
                _, waits = await asyncio.wait(waits, timeout=_REFRESH_SECONDS)
                final, text = summarize(watcher, ids)
                bar.update(task, completed=final, states=text)
    else:
        await asyncio.wait(waits)
    for wait in waits:
        wait.result()  # re-raises a watcher failure
    _, text = summarize(watcher, ids)
    console.print(f"{label}: {len(ids)} work unit(s) finished: {text}")
