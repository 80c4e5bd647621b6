"""The `xmanager` command line (click); docs/cli.md describes every command.

    xmanager launch SCRIPT [-- SCRIPT_FLAGS...]
    xmanager daemon start|stop|status
    xmanager list [--title T] [--tag T] [--status S] [--limit N] [--json]
    xmanager show EXP[/WU] [--json]
    xmanager wait EXP[/WU]
    xmanager logs EXP[/WU[/JOB]] [-f]
    xmanager cancel EXP[/WU]
    xmanager delete EXP
    xmanager ui [--port PORT] [--allow_remote]
    xmanager completion bash|zsh

Errors are one line on stderr; the exit code is 0 on success, 1 on failure, 2 on bad usage.
This package is the client: it never imports the daemon's code (`launcher_server`).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import runpy
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
import grpc

from xmanager import xm
from xmanager.cli import display, json_output, waiting
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

SCRIPT_ENV = "XM_LAUNCH_SCRIPT"
PROG = "xmanager"
COMPLETE_ENV = "_XMANAGER_COMPLETE"
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_STATE_NAMES = [json_output.state_name(s) for s in pb.JobState.values() if s]

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure reported as one line on stderr, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"{PROG}: {self.format_message()}", err=True)


class _Group(click.Group):
    """A group that lists commands in definition order and suggests the closest command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            choices = ", ".join(self.list_commands(ctx))
            raise click.UsageError(f"No such command '{name}'.{hint} Commands: {choices}.", ctx)
        return super().resolve_command(ctx, args)


def _remember_state_dir(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_root().meta["state_dir"] = value


def state_dir_option(function: F) -> F:
    """--state_dir, accepted before or after the command name."""
    return click.option(
        "--state_dir",
        "--state-dir",
        metavar="DIR",
        expose_value=False,
        is_eager=True,
        callback=_remember_state_dir,
        help="Launcher state directory (default $XM_STATE_DIR or ~/.xmanager).",
    )(function)


def _state_dir() -> str | None:
    value = click.get_current_context().find_root().meta.get("state_dir")
    return str(value) if value is not None else None


def _launcher() -> Launcher:
    return connect(_state_dir())


def _state() -> StateDir:
    return StateDir.resolve(_state_dir())


def parse_target(text: str) -> tuple[int, int | None, str | None]:
    """EXP[/WU[/JOB]] -> (experiment, work unit or None, job or None)."""
    parts = text.split("/")
    if len(parts) > 3 or not parts[0]:
        raise click.BadParameter(f"{text!r}: expected EXP, EXP/WU or EXP/WU/JOB")
    try:
        experiment = int(parts[0])
        work_unit = int(parts[1]) if len(parts) > 1 and parts[1] else None
    except ValueError:
        raise click.BadParameter(f"{text!r}: experiment and work unit ids are integers") from None
    job = parts[2] if len(parts) == 3 and parts[2] else None
    return experiment, work_unit, job


@click.group(cls=_Group, context_settings=_CONTEXT)
@state_dir_option
@click.option("--xm_wrap_late_bindings", is_flag=True, hidden=True)
@click.version_option(package_name="xmanager-bazel", prog_name=PROG, message="%(prog)s %(version)s")
def cli(xm_wrap_late_bindings: bool) -> None:
    """Build, launch and follow ML experiments (XManager launch scripts, Bazel, a daemon).

    Run `xmanager COMMAND --help` for a command's flags.
    """


# -- launch ---------------------------------------------------------------------------------------


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@state_dir_option
@click.option(
    "--xm_wrap_late_bindings",
    is_flag=True,
    help="Accepted for compatibility with XManager; has no effect.",
)
@click.argument("script", type=click.Path(dir_okay=False))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
def launch(script: str, script_args: tuple[str, ...], xm_wrap_late_bindings: bool) -> None:
    """Run the launch script SCRIPT; SCRIPT_ARGS (after an optional `--`) are its own flags."""
    args = list(script_args)
    if args[:1] == ["--"]:
        args = args[1:]
    if not os.path.isfile(script):
        raise CliError(f"launch: no such file: {script}")
    path = os.path.abspath(script)
    os.environ[SCRIPT_ENV] = path
    if _state_dir():
        os.environ["XM_STATE_DIR"] = str(_state_dir())
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(path))
    # XManager's launcher defines this flag for every script: scripts and users pass it along.
    from absl import flags  # noqa: PLC0415 - only scripts need absl's global flags

    if "xm_wrap_late_bindings" not in flags.FLAGS:
        flags.DEFINE_bool(
            "xm_wrap_late_bindings", False, "Accepted for compatibility with XManager; no effect."
        )
    try:
        runpy.run_path(path, run_name="__main__")
    except (xm.ExperimentUnitError, WorkUnitRejectedError, PackagingError) as error:
        # Units that did not succeed, a refused unit, an executable that could not be
        # packaged: the message says it all; a traceback into this package would not help.
        raise CliError(str(error)) from None
    except SystemExit as exit_:
        code = exit_.code
        if code is None or code == 0:
            return
        if isinstance(code, int):
            sys.exit(code)
        click.echo(code, err=True)
        sys.exit(1)


# -- daemon ---------------------------------------------------------------------------------------


@cli.group(cls=_Group)
def daemon() -> None:
    """Start, stop or check the launcher daemon of the state directory."""


# The daemon's own flags (launcher_server/daemon.py), passed through as --name=value.
_DAEMON_FLAGS: list[tuple[str, Any, str]] = [
    ("db_url", str, "SQLAlchemy URL of the store (default SQLite in the state dir)."),
    ("listen", str, "Also listen on this TCP HOST:PORT (bearer token required)."),
    ("allow_remote", bool, "Allow --listen on a non-loopback address."),
    ("max_running_jobs", int, "Local jobs running at once (0: 8 per core)."),
    ("grace_period_seconds", float, "Default SIGTERM-to-SIGKILL delay on cancel."),
    ("log_cap_mb", int, "Per-job log size cap in MiB."),
    ("rpc_threads", int, "Calls served at once; each watch or log follow holds one while open."),
    ("read_process", bool, "Serve the plain reads from a second process too (default on)."),
    ("docker_host", str, "Docker Engine for container jobs (default $DOCKER_HOST or its socket)."),
    ("vertex_project", str, "Vertex AI project (default: the environment)."),
    ("vertex_region", str, "Vertex AI region (default: the environment)."),
    ("vertex_endpoint", str, "Vertex AI API endpoint (http://HOST:PORT: an insecure emulator)."),
    ("vertex_logging_endpoint", str, "Cloud Logging endpoint for Vertex AI jobs' logs."),
    ("vertex_network", str, "VPC network of Vertex AI jobs: projects/NUMBER/global/networks/NAME"),
    ("vertex_poll_min_seconds", float, "Vertex AI poller's shortest interval."),
    ("vertex_poll_max_seconds", float, "Vertex AI poller's longest quiet interval."),
    ("kubeconfig", str, "kubeconfig for Kubernetes jobs (default $KUBECONFIG or ~/.kube/config)."),
    ("kubernetes_context", str, "kubeconfig context for Kubernetes jobs naming none."),
]
DAEMON_FLAG_NAMES = tuple(name for name, _, _ in _DAEMON_FLAGS)


def _daemon_flag_options(function: F) -> F:
    for name, kind, text in reversed(_DAEMON_FLAGS):
        if kind is bool:
            function = click.option(f"--{name}/--no{name}", default=None, help=text)(function)
        else:
            function = click.option(f"--{name}", type=kind, default=None, help=text)(function)
    return function


@daemon.command("start")
@state_dir_option
@click.option("--foreground", is_flag=True, help="Run in this terminal, not detached.")
@_daemon_flag_options
def daemon_start(foreground: bool, **daemon_flags: Any) -> None:
    """Start the daemon (in the background unless --foreground)."""
    state = _state()
    extra = []
    for name, value in daemon_flags.items():
        if value is None:
            continue
        if isinstance(value, bool):
            extra.append(f"--{name}" if value else f"--no{name}")
        else:
            extra.append(f"--{name}={value}")
    if foreground:
        _exec_daemon(state, extra)
    pid = daemon_process.read_pid(state)
    if pid is not None:
        click.echo(f"already running (pid {pid})")
        return
    pid = daemon_process.start_detached(state, extra)
    click.echo(f"started (pid {pid}); log: {state.log}")


def _exec_daemon(state: StateDir, flags: Sequence[str]) -> None:
    """Becomes the daemon process: the client never imports the daemon's code itself."""
    if importlib.util.find_spec("launcher_server") is None:
        raise CliError(
            "daemon start: this installation has the client only (no launcher_server package); "
            "install xmanager-bazel with its daemon, or point XM_LAUNCHER_ADDRESS at one"
        )
    command = [sys.executable, "-m", "launcher_server", f"--state_dir={state.root}", *flags]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


@daemon.command("stop")
@state_dir_option
def daemon_stop() -> None:
    """Stop the daemon gracefully (running jobs keep running and are found again)."""
    state = _state()
    try:
        stopped = daemon_process.stop(state)
    except (TimeoutError, OSError) as error:
        raise CliError(f"daemon stop: {error}; see {state.log}") from None
    click.echo("stopped" if stopped else f"not running ({state.root})")


@daemon.command("status")
@state_dir_option
def daemon_status() -> None:
    """Show whether the daemon runs; exit code 3 when it does not (as LSB init scripts)."""
    state = _state()
    if not daemon_process.status(state).running:
        click.echo(f"not running ({state.root})")
        sys.exit(3)
    launcher = connect(state.root, autostart=False)
    click.echo(display.server_info(launcher.server_info, state))


# -- experiments ----------------------------------------------------------------------------------


def _states(names: Sequence[str]) -> list[str]:
    """Enum value names, as the request takes them: "failed" -> "JOB_STATE_FAILED"."""
    return [f"JOB_STATE_{name.upper()}" for name in names]


@cli.command("list")
@state_dir_option
@click.option("--title", metavar="TEXT", default="", help="Only titles containing TEXT.")
@click.option("--tag", "tags", metavar="TAG", multiple=True, help="Only experiments with TAG.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(_STATE_NAMES, case_sensitive=False),
    help="Only experiments with a work unit in this state (repeatable: any of them).",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema in docs/cli.md).")
def list_command(
    title: str, tags: tuple[str, ...], statuses: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """List experiments, newest first."""
    launcher = _launcher()
    experiments: list[pb.Experiment] = []
    token = ""
    while len(experiments) < limit:
        page = launcher.call(
            launcher.stub.ListExperiments,
            pb.ListExperimentsRequest(
                page_size=min(limit - len(experiments), 1000),
                page_token=token,
                title_contains=title,
                tags=tags,
                has_work_unit_in_state=_states(statuses),
            ),
        )
        experiments.extend(page.experiments)
        token = page.next_page_token
        if not token:
            break
    if as_json:
        click.echo(json_output.listing(experiments))
    else:
        display.print_experiments(experiments)


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


@cli.command()
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema in docs/cli.md).")
@click.argument("target", metavar="EXP[/WU]")
def show(target: str, as_json: bool) -> None:
    """Show an experiment: its work units' arguments, jobs, statuses and artifacts."""
    experiment_id, work_unit_id, _ = parse_target(target)
    launcher = _launcher()
    experiment = launcher.call(
        launcher.stub.GetExperiment, pb.GetExperimentRequest(experiment_id=experiment_id)
    )
    units = _all_work_units(launcher, experiment_id)
    if work_unit_id is not None:
        units = [u for u in units if u.work_unit_id == work_unit_id]
        if not units:
            raise CliError(f"experiment {experiment_id} has no work unit {work_unit_id}")
    if as_json:
        click.echo(json_output.details(experiment, units))
    else:
        display.print_experiment(experiment, units)


@cli.command()
@state_dir_option
@click.argument("target", metavar="EXP[/WU]")
def wait(target: str) -> None:
    """Wait until the experiment's work units (or one) are final; exit 0 if all succeeded."""
    experiment_id, work_unit_id, job = parse_target(target)
    if job is not None:
        raise click.BadParameter("wait for a work unit (EXP/WU), not a job", param_hint="TARGET")
    if not waiting.wait(_launcher(), experiment_id, work_unit_id):
        sys.exit(1)


@cli.command()
@state_dir_option
@click.option("-f", "--follow", is_flag=True, help="Follow the output until the job ends.")
@click.argument("target", metavar="EXP[/WU[/JOB]]")
def logs(target: str, follow: bool) -> None:
    """Print a job's output (the work unit may be omitted when there is only one)."""
    experiment_id, work_unit_id, job_name = parse_target(target)
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
        follow=follow,
    )
    out = sys.stdout.buffer
    for chunk in launcher.stub.StreamLogs(request):
        out.write(chunk.data)
        out.flush()
        if chunk.truncated:
            click.echo("\n[log truncated at the size cap]", err=True)


@cli.command()
@state_dir_option
@click.argument("target", metavar="EXP[/WU]")
def cancel(target: str) -> None:
    """Cancel an experiment's unfinished work units, or one work unit."""
    experiment_id, work_unit_id, job = parse_target(target)
    if job is not None:
        raise click.BadParameter(
            "jobs are cancelled with their work unit: use EXP/WU", param_hint="TARGET"
        )
    launcher = _launcher()
    if work_unit_id is None:
        response = launcher.call(
            launcher.stub.CancelExperiment,
            pb.CancelExperimentRequest(experiment_id=experiment_id, reason="xmanager cancel"),
        )
        click.echo(f"cancelling {response.cancelled_work_units} work unit(s) of {experiment_id}")
    else:
        unit = launcher.call(
            launcher.stub.CancelWorkUnit,
            pb.CancelWorkUnitRequest(
                experiment_id=experiment_id, work_unit_id=work_unit_id, reason="xmanager cancel"
            ),
        ).work_unit
        click.echo(f"{experiment_id}/{work_unit_id}: {json_output.state_name(unit.status.state)}")


@cli.command()
@state_dir_option
@click.argument("target", metavar="EXP")
def delete(target: str) -> None:
    """Delete an experiment whose work units are all final, with everything recorded about it."""
    experiment_id, work_unit_id, _ = parse_target(target)
    if work_unit_id is not None:
        raise click.BadParameter("experiments are deleted whole: use EXP", param_hint="TARGET")
    launcher = _launcher()
    response = launcher.call(
        launcher.stub.DeleteExperiment, pb.DeleteExperimentRequest(experiment_id=experiment_id)
    )
    click.echo(f"deleted experiment {experiment_id} ({response.deleted_work_units} work unit(s))")


@cli.command()
@state_dir_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="TCP port (0 picks a free one).",
)
@click.option(
    "--allow_remote",
    "--allow-remote",
    is_flag=True,
    help="Serve other hosts too, not only loopback (the login still protects it).",
)
def ui(port: int, allow_remote: bool) -> None:
    """Serve the web dashboard; prints a one-time login URL (docs/ui.md)."""
    try:
        # Imported here: the web stack is only needed by this command.
        from xmanager.ui import server  # noqa: PLC0415
    except ImportError as error:
        raise CliError(
            f"the dashboard needs {error.name}: install xmanager-bazel[ui] (or ./setup.sh setup)"
        ) from None
    sys.exit(server.serve(state_dir=_state_dir(), port=port, allow_remote=allow_remote))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash:  eval "$(xmanager completion bash)"   (e.g. in ~/.bashrc)
    zsh:   eval "$(xmanager completion zsh)"    (e.g. in ~/.zshrc)
    """
    from click.shell_completion import get_completion_class  # noqa: PLC0415

    completer = get_completion_class(shell)
    assert completer is not None  # both choices are click's built-in shells
    click.echo(completer(cli, {}, PROG, COMPLETE_ENV).source())


# -- entry point ----------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    """Runs one command (argv[0] is the program); returns the process exit code."""
    try:
        cli.main(list(argv[1:]), prog_name=PROG, standalone_mode=False, complete_var=COMPLETE_ENV)
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Abort:
        return 130
    except grpc.RpcError as error:
        click.echo(f"{PROG}: {error.code().name}: {error.details()}", err=True)
        return 1
    except (
        LauncherUnavailableError,
        VersionMismatchError,
        daemon_process.DaemonStartError,
    ) as error:
        click.echo(f"{PROG}: {error}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def run() -> None:
    sys.exit(main(sys.argv))
