"""Tables and summaries printed by the CLI (rich)."""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import timestamp_pb2
from rich.console import Console
from rich.table import Table

from xmanager.cli.json_output import state_name, work_unit_args
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.state_dir import StateDir

_STYLES: dict[int, str] = {
    pb.JOB_STATE_PENDING: "dim",
    pb.JOB_STATE_STARTING: "cyan",
    pb.JOB_STATE_RUNNING: "blue",
    pb.JOB_STATE_SUCCEEDED: "green",
    pb.JOB_STATE_FAILED: "red",
    pb.JOB_STATE_CANCELLING: "yellow",
    pb.JOB_STATE_CANCELLED: "yellow",
    pb.JOB_STATE_LOST: "magenta",
}
ORDERED_STATES = tuple(_STYLES)


def _styled(state: int) -> str:
    style = _STYLES.get(state, "")
    return f"[{style}]{state_name(state)}[/]" if style else state_name(state)


def _time(stamp: timestamp_pb2.Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    local = stamp.ToDatetime(tzinfo=datetime.UTC).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S")


def _duration(status: pb.JobStatus) -> str:
    if not status.HasField("start_time"):
        return ""
    end = (
        status.end_time.ToDatetime(tzinfo=datetime.UTC)
        if status.HasField("end_time")
        else datetime.datetime.now(datetime.UTC)
    )
    seconds = (end - status.start_time.ToDatetime(tzinfo=datetime.UTC)).total_seconds()
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def console() -> Console:
    """A console for stdout; piped output is not cut to the terminal's width (tables stay
    whole for grep and less; `--json` is the format for programs)."""
    return Console(width=None if sys.stdout.isatty() else 250)


def counts_summary(counts: dict[int, int] | Iterable[tuple[int, int]]) -> str:
    items = dict(counts)
    return "  ".join(
        f"{_styled(state)} {items[state]}" for state in ORDERED_STATES if items.get(state)
    )


def print_experiments(experiments: Sequence[pb.Experiment]) -> None:
    table = Table(title="Experiments", title_justify="left")
    table.add_column("ID", justify="right")
    table.add_column("Title")
    table.add_column("Created")
    table.add_column("Work units", justify="right")
    table.add_column("By status")
    for experiment in experiments:
        table.add_row(
            str(experiment.id),
            experiment.title,
            _time(experiment.create_time),
            str(experiment.work_unit_count),
            counts_summary(experiment.work_unit_state_counts.items()),
        )
    console().print(table)


def _flat_args(args: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"args": {"lr": 0.1}} -> {"args.lr": "0.1"}: one column per hyperparameter."""
    flat: dict[str, str] = {}
    for key, value in args.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flat_args(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


def artifact_text(artifact: pb.Artifact) -> str:
    """The binary's path, or the image's digest (its reference when the digest is unknown)."""
    kind = artifact.WhichOneof("kind")
    if kind == "local_binary":
        return artifact.local_binary.path
    if kind == "oci_image":
        image = artifact.oci_image
        return image.digest or image.reference or image.tarball_path
    return ""


def print_experiment(experiment: pb.Experiment, units: Sequence[pb.WorkUnit]) -> None:
    out = console()
    out.print(f"[bold]Experiment {experiment.id}[/]: {experiment.title}")
    if experiment.tags:
        out.print(f"tags: {', '.join(experiment.tags)}")
    out.print(f"created {_time(experiment.create_time)} by {experiment.creator or '?'}")
    if experiment.launch_script_path:
        out.print(f"script: {experiment.launch_script_path}")
    out.print(counts_summary(experiment.work_unit_state_counts.items()))
    unit_args = {unit.work_unit_id: _flat_args(work_unit_args(unit)) for unit in units}
    arg_names = sorted({name for args in unit_args.values() for name in args})
    table = Table()
    table.add_column("WU", justify="right")
    # A narrow terminal wraps cells rather than cutting them: ids and names stay whole.
    for name in arg_names:
        table.add_column(name, style="bold", overflow="fold")
    for column in ("Job", "Status", "Exit", "Duration", "Artifact", "Reason"):
        table.add_column(column, justify="right" if column == "Exit" else "left", overflow="fold")
    for unit in units:
        args = unit_args[unit.work_unit_id]
        for i, job in enumerate(unit.jobs):
            status = job.status
            first = i == 0
            table.add_row(
                str(unit.work_unit_id) if first else "",
                *(args.get(name, "") if first else "" for name in arg_names),
                job.name,
                _styled(status.state),
                str(status.exit_code) if status.has_exit_code else "",
                _duration(status),
                artifact_text(job.artifact),
                status.reason,
            )
    out.print(table)
    # Jobs whose logs live in a cloud console (Vertex AI): the link, unwrapped.
    for unit in units:
        for job in unit.jobs:
            if job.log_location.startswith("https://"):
                out.print(
                    f"{unit.work_unit_id}/{job.name} console: {job.log_location}",
                    soft_wrap=True,
                    markup=False,
                    highlight=False,
                )


def server_info(info: pb.ServerInfo, state: StateDir) -> str:
    backends = ", ".join(
        f"{b.name}{'' if b.available else ' (unavailable)'}" for b in info.backends
    )
    return (
        f"running (pid {info.pid}), xmanager {info.version}, API {info.api_version}\n"
        f"socket: {state.socket}\nstore: {info.store}\nbackends: {backends}\n"
        f"since: {_time(info.start_time)}"
    )
