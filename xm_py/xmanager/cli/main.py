"""The `xmanager` command line.

    xmanager launch SCRIPT [-- SCRIPT_FLAGS...]
    xmanager daemon start|stop|status [--foreground] [daemon flags]
    xmanager list
    xmanager show EXP
    xmanager logs EXP[/WU[/JOB]] [-f]
    xmanager cancel EXP[/WU]
    xmanager delete EXP

Errors are one line on stderr; the exit code is 0 on success, 1 on failure, 2 on bad usage.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Sequence

import grpc
from absl import app, flags

from xmanager import xm
from xmanager.cli import display
from xmanager.client import daemon_process
from xmanager.client.connection import (
    Launcher,
    LauncherUnavailableError,
    VersionMismatchError,
    connect,
)
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.state_dir import StateDir
from xmanager.xm_local.packaging import PackagingError
from xmanager.xm_local.submitter import WorkUnitRejectedError

# The command's own flags live apart from absl's global FLAGS, which belong to launch scripts
# (a script may define --limit or --follow without clashing with this command).
FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "state_dir",
    None,
    "Launcher state directory (default $XM_STATE_DIR or ~/.xmanager).",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "follow",
    False,
    "logs: follow the output until the job ends.",
    short_name="f",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "foreground", False, "daemon start: run in this terminal, not detached.", flag_values=FLAGS
)
flags.DEFINE_integer("limit", 50, "list: how many experiments to show.", flag_values=FLAGS)
flags.DEFINE_bool(
    "xm_wrap_late_bindings",
    False,
    "Accepted for compatibility with XManager; has no effect.",
    flag_values=FLAGS,
)

USAGE = __doc__.split("\n\n")[1]
SCRIPT_ENV = "XM_LAUNCH_SCRIPT"


class CliError(Exception):
    """A failure to report as one line on stderr."""


def _launcher() -> Launcher:
    return connect(FLAGS.state_dir)


def _state() -> StateDir:
    return StateDir.resolve(FLAGS.state_dir)


def parse_target(text: str) -> tuple[int, int | None, str | None]:
    """EXP[/WU[/JOB]] -> (experiment, work unit or None, job or None)."""
    parts = text.split("/")
    if len(parts) > 3 or not parts[0]:
        raise app.UsageError(f"{text!r}: expected EXP, EXP/WU or EXP/WU/JOB")
    try:
        experiment = int(parts[0])
        work_unit = int(parts[1]) if len(parts) > 1 and parts[1] else None
    except ValueError:
        raise app.UsageError(f"{text!r}: experiment and work unit ids are integers") from None
    job = parts[2] if len(parts) == 3 and parts[2] else None
    return experiment, work_unit, job


# -- commands ------------------------------------------------------------------------------------


def cmd_launch(args: Sequence[str]) -> int:
    if not args:
        raise app.UsageError("launch: which script? xmanager launch SCRIPT [-- FLAGS]")
    script, *script_args = args
    if script_args[:1] == ["--"]:
        script_args = script_args[1:]
    if not os.path.isfile(script):
        raise CliError(f"launch: no such file: {script}")
    path = os.path.abspath(script)
    os.environ[SCRIPT_ENV] = path
    if FLAGS.state_dir:
        os.environ["XM_STATE_DIR"] = FLAGS.state_dir
    sys.argv = [path, *script_args]
    sys.path.insert(0, os.path.dirname(path))
    # XManager's launcher defines these for every script: scripts and users pass them along.
    if "xm_wrap_late_bindings" not in flags.FLAGS:
        flags.DEFINE_bool(
            "xm_wrap_late_bindings", False, "Accepted for compatibility with XManager; no effect."
        )
    try:
        runpy.run_path(path, run_name="__main__")
    except (xm.ExperimentUnitError, WorkUnitRejectedError, PackagingError) as error:
        # Units that did not succeed, a refused unit, an executable that could not be
        # packaged: the message says it all; a traceback into this package would not help.
        print(f"xmanager: {error}", file=sys.stderr)
        return 1
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def cmd_daemon(args: Sequence[str]) -> int:
    if not args or args[0] not in ("start", "stop", "status"):
        raise app.UsageError("daemon: expected start, stop or status")
    action, extra = args[0], list(args[1:])
    state = _state()
    if action == "status":
        current = daemon_process.status(state)
        if not current.running:
            print(f"not running ({state.root})")
            return 3  # as `systemctl status` and LSB init scripts do
        launcher = connect(state.root, autostart=False)
        print(display.server_info(launcher.server_info, state))
        return 0
    if action == "stop":
        try:
            stopped = daemon_process.stop(state)
        except (TimeoutError, OSError) as error:
            print(f"xmanager daemon stop: {error}; see {state.log}", file=sys.stderr)
            return 1
        print("stopped" if stopped else f"not running ({state.root})")
        return 0
    if FLAGS.foreground:
        # Imported here: the server side is only needed to run a daemon in this process.
        from launcher_server.daemon import config_from_flags, serve  # noqa: PLC0415

        flags.FLAGS(["xmanager", f"--state_dir={state.root}", *extra])
        return serve(config_from_flags())
    if daemon_process.read_pid(state) is not None:
        print(f"already running (pid {daemon_process.read_pid(state)})")
        return 0
    pid = daemon_process.start_detached(state, extra)
    print(f"started (pid {pid}); log: {state.log}")
    return 0


def cmd_list(args: Sequence[str]) -> int:
    if args:
        raise app.UsageError("list takes no arguments")
    launcher = _launcher()
    response = launcher.call(
        launcher.stub.ListExperiments, pb.ListExperimentsRequest(page_size=FLAGS.limit)
    )
    display.print_experiments(response.experiments)
    return 0


def cmd_show(args: Sequence[str]) -> int:
    if len(args) != 1:
        raise app.UsageError("show: expected one experiment id")
    experiment_id, work_unit_id, _ = parse_target(args[0])
    launcher = _launcher()
    experiment = launcher.call(
        launcher.stub.GetExperiment, pb.GetExperimentRequest(experiment_id=experiment_id)
    )
    units = _all_work_units(launcher, experiment_id)
    if work_unit_id is not None:
        units = [u for u in units if u.work_unit_id == work_unit_id]
        if not units:
            raise CliError(f"experiment {experiment_id} has no work unit {work_unit_id}")
    display.print_experiment(experiment, units)
    return 0


def _all_work_units(launcher: Launcher, experiment_id: int) -> list[pb.WorkUnit]:
    units: list[pb.WorkUnit] = []
    token = ""
    while True:
        page = launcher.call(
            launcher.stub.ListWorkUnits,
            pb.ListWorkUnitsRequest(experiment_id=experiment_id, page_size=1000, page_token=token),
        )
        units.extend(page.work_units)
        token = page.next_page_token
        if not token:
            return units


def cmd_logs(args: Sequence[str]) -> int:
    if len(args) != 1:
        raise app.UsageError("logs: expected EXP[/WU[/JOB]]")
    experiment_id, work_unit_id, job_name = parse_target(args[0])
    launcher = _launcher()
    if work_unit_id is None:
        units = _all_work_units(launcher, experiment_id)
        if len(units) != 1:
            raise CliError(
                f"experiment {experiment_id} has {len(units)} work units; "
                f"name one: xmanager logs {experiment_id}/WU"
            )
        work_unit_id = units[0].work_unit_id
    request = pb.StreamLogsRequest(
        experiment_id=experiment_id,
        work_unit_id=work_unit_id,
        job_name=job_name or "",
        follow=FLAGS.follow,
    )
    out = sys.stdout.buffer
    for chunk in launcher.stub.StreamLogs(request):
        out.write(chunk.data)
        out.flush()
        if chunk.truncated:
            print("\n[log truncated at the size cap]", file=sys.stderr)
    return 0


def cmd_cancel(args: Sequence[str]) -> int:
    if len(args) != 1:
        raise app.UsageError("cancel: expected EXP or EXP/WU")
    experiment_id, work_unit_id, job = parse_target(args[0])
    if job is not None:
        raise app.UsageError("cancel: jobs are cancelled with their work unit: use EXP/WU")
    launcher = _launcher()
    if work_unit_id is None:
        response = launcher.call(
            launcher.stub.CancelExperiment,
            pb.CancelExperimentRequest(experiment_id=experiment_id, reason="xmanager cancel"),
        )
        print(f"cancelling {response.cancelled_work_units} work unit(s) of {experiment_id}")
    else:
        unit = launcher.call(
            launcher.stub.CancelWorkUnit,
            pb.CancelWorkUnitRequest(
                experiment_id=experiment_id, work_unit_id=work_unit_id, reason="xmanager cancel"
            ),
        ).work_unit
        print(f"{experiment_id}/{work_unit_id}: {display.state_name(unit.status.state)}")
    return 0


def cmd_delete(args: Sequence[str]) -> int:
    if len(args) != 1:
        raise app.UsageError("delete: expected one experiment id")
    experiment_id, work_unit_id, _ = parse_target(args[0])
    if work_unit_id is not None:
        raise app.UsageError("delete: experiments are deleted whole: use EXP")
    launcher = _launcher()
    response = launcher.call(
        launcher.stub.DeleteExperiment, pb.DeleteExperimentRequest(experiment_id=experiment_id)
    )
    print(f"deleted experiment {experiment_id} ({response.deleted_work_units} work unit(s))")
    return 0


COMMANDS = {
    "launch": cmd_launch,
    "daemon": cmd_daemon,
    "list": cmd_list,
    "show": cmd_show,
    "logs": cmd_logs,
    "cancel": cmd_cancel,
    "delete": cmd_delete,
}


def main(argv: Sequence[str]) -> int:
    """Runs one command; returns the process exit code."""
    try:
        rest = _parse_flags(list(argv))
        if len(rest) < 2 or rest[1] not in COMMANDS:
            raise app.UsageError(f"expected a command.\n{USAGE}")
        return COMMANDS[rest[1]](rest[2:])
    except app.UsageError as error:
        print(f"xmanager: {error}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        print(f"xmanager: {error.code().name}: {error.details()}", file=sys.stderr)
    except (
        CliError,
        LauncherUnavailableError,
        VersionMismatchError,
        daemon_process.DaemonStartError,
    ) as error:
        print(f"xmanager: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


def _parse_flags(argv: list[str]) -> list[str]:
    """Parses this command's flags; a launch script's and the daemon's flags pass through."""
    script_at = None
    if len(argv) > 2 and argv[1] == "launch":
        script_at = next((i for i in range(2, len(argv)) if not argv[i].startswith("-")), None)
    if script_at is not None:
        head, tail = argv[: script_at + 1], argv[script_at + 1 :]
    else:
        head, tail = argv, []
    daemon_start = head[1:3] == ["daemon", "start"]
    try:
        rest = FLAGS(head, known_only=daemon_start)
    except flags.Error as error:
        raise app.UsageError(str(error)) from None
    return [*rest, *tail]


def run() -> None:
    sys.exit(main(sys.argv))
