"""Experiments and work units bound to the launcher daemon (the `xm.Experiment` hooks)."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from xmanager import xm
from xmanager.client.connection import Launcher, connect
from xmanager.launcher import launch_context
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.xm import roles
from xmanager.xm.executables import launch_script_path
from xmanager.xm_local import executors, packaging, progress
from xmanager.xm_local.job_proto import job_to_proto
from xmanager.xm_local.output import OutputEcho
from xmanager.xm_local.submitter import Submitter
from xmanager.xm_local.watcher import FINAL_STATES, StatusWatcher

ANNOTATION_FIELDS = ("title", "tags", "notes")


class LocalExperiment(xm.Experiment):
    """An experiment recorded by the launcher daemon."""

    def __init__(self, launcher: Launcher, record: pb.Experiment) -> None:
        super().__init__()
        self._launcher = launcher
        self._record = record
        self._context = xm.MetadataContext(
            creator=record.creator,
            annotations=xm.ContextAnnotations(
                title=record.title,
                tags=list(record.tags),
                notes=record.notes,
                on_change=self._save_annotations,
            ),
        )
        self._units: dict[int, LocalWorkUnit] = {}
        self._auxiliary: list[LocalAuxiliaryUnit] = []
        # Ids are given at creation, as XManager does; the daemon checks they are free.
        self._next_work_unit_id = record.work_unit_count + 1
        self._submitter: Submitter | None = None
        self._launch_context: tuple[str, dict[Any, Any]] = ("", {})
        self._context_digest = ""
        # One watch stream at a time, shared by whoever needs it: the entered context and each
        # unfinished wait for a unit. The last one to let go closes it, so waits after the
        # context ends open a stream of their own and leave nothing behind.
        self._watcher: StatusWatcher | None = None
        self._watcher_users = 0
        self._watcher_lock = threading.Lock()
        self._context_uses_watcher = False
        self._output: OutputEcho | None = None

    # -- xm.Experiment hooks ----------------------------------------------------------------------

    @property
    def experiment_id(self) -> int:
        return self._record.id

    @property
    def work_unit_count(self) -> int:
        return len(self._units)

    @property
    def work_units(self) -> Mapping[int, LocalWorkUnit]:
        return dict(self._units)

    @classmethod
    def package(cls, packageables: Sequence[xm.Packageable] = ()) -> Sequence[xm.Executable]:
        return packaging.package(packageables)

    async def _create_experiment_unit(
        self, args: Mapping[str, Any] | None, role: xm.ExperimentUnitRole, identity: str
    ) -> xm.ExperimentUnit:
        work_unit_id = self._next_work_unit_id
        self._next_work_unit_id += 1
        if isinstance(role, roles.AuxiliaryUnitRole):
            auxiliary = LocalAuxiliaryUnit(self, args, role, identity, work_unit_id)
            self._auxiliary.append(auxiliary)
            return auxiliary
        unit = LocalWorkUnit(self, args, role, identity, work_unit_id)
        self._units[work_unit_id] = unit
        return unit

    async def _on_enter(self) -> None:
        self.submitter  # noqa: B018  # started now, so the first add pays nothing
        # Without a live progress display, only units' ends matter to the launch script.
        self._acquire_watcher(final_only=not progress.shows_live())
        self._context_uses_watcher = True

    async def _wait_for_local_jobs(self, is_exit_abrupt: bool) -> None:
        if is_exit_abrupt:
            return
        units: list[LocalWorkUnit | LocalAuxiliaryUnit] = [*self._units.values(), *self._auxiliary]
        launched = [unit for unit in units if unit.launched and unit.has_local_jobs]
        if not launched:
            return
        ids = [unit.work_unit_id for unit in launched]
        await progress.wait_with_progress(self.watcher, self.experiment_id, ids)
        _raise_for_unsuccessful(launched)

    # -- context management -----------------------------------------------------------------------

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, traceback)
        except KeyboardInterrupt:
            self._offer_cancel()
            raise
        finally:
            self._close_streams()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, traceback)
        finally:
            await asyncio.to_thread(self._close_streams)

    def _offer_cancel(self) -> None:
        """On Ctrl+C while waiting: ask whether to cancel the experiment's work units."""
        if not sys.stdin.isatty():
            print(
                f"\nStopped waiting; the jobs keep running. Cancel them with "
                f"`xmanager cancel {self.experiment_id}`.",
                file=sys.stderr,
            )
            return
        try:
            answer = input(f"\nCancel the work units of experiment {self.experiment_id}? [y/N] ")
        except (EOFError, KeyboardInterrupt):
            answer = ""
        if answer.strip().lower() in ("y", "yes"):
            self._launcher.call(
                self._launcher.stub.CancelExperiment,
                pb.CancelExperimentRequest(
                    experiment_id=self.experiment_id, reason="interrupted by the launch script"
                ),
            )
            print(f"Cancelling experiment {self.experiment_id}.", file=sys.stderr)
        else:
            print(
                f"The jobs keep running; `xmanager show {self.experiment_id}` follows them.",
                file=sys.stderr,
            )

    def _close_streams(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None
        if self._submitter is not None:
            self._submitter.close()
            self._submitter = None
        if self._context_uses_watcher:
            self._context_uses_watcher = False
            self._release_watcher()

    # -- plumbing for units -----------------------------------------------------------------------

    @property
    def launcher(self) -> Launcher:
        return self._launcher

    def launch_context_digest(self) -> str:
        """The digest of the launch script's working directory and environment now, which
        local binary jobs run with (registered with the submitter when it changed)."""
        cwd, environ = os.getcwd(), _raw_environ()
        if not self._context_digest or (cwd, environ) != self._launch_context:
            self._launch_context = (cwd, dict(environ))
            self._context_digest = self.submitter.register_context(
                launch_context.capture(dict(os.environ), cwd)
            )
        return self._context_digest

    @property
    def submitter(self) -> Submitter:
        if self._submitter is None:
            self._submitter = Submitter(self._launcher)
        return self._submitter

    @property
    def output(self) -> OutputEcho:
        """Echoes the output of jobs run with Local(experimental_stream_output=True)."""
        if self._output is None:
            watcher = self.watcher
            self._output = OutputEcho(
                self._launcher,
                self.experiment_id,
                lambda work_unit_id: _is_final(watcher.latest(work_unit_id)),
            )
        return self._output

    @property
    def watcher(self) -> StatusWatcher:
        """The watch stream of the entered experiment."""
        watcher = self._watcher
        if watcher is None or not self._context_uses_watcher:
            raise RuntimeError("The experiment is not entered: it has no watch stream open.")
        return watcher

    def _acquire_watcher(self, *, final_only: bool = True) -> StatusWatcher:
        """The watch stream, opened if none is; pair with `_release_watcher`."""
        with self._watcher_lock:
            self._watcher_users += 1
            if self._watcher is None:
                self._watcher = StatusWatcher(
                    self._launcher, self.experiment_id, final_only=final_only
                )
            return self._watcher

    def _release_watcher(self) -> None:
        with self._watcher_lock:
            self._watcher_users -= 1
            watcher = self._watcher
            if self._watcher_users or watcher is None:
                return
            self._watcher = None
        watcher.close()

    def _save_annotations(self, annotations: xm.ContextAnnotations) -> None:
        self._launcher.call(
            self._launcher.stub.UpdateExperiment,
            pb.UpdateExperimentRequest(
                experiment_id=self.experiment_id,
                title=annotations.title,
                tags=annotations.tags,
                notes=annotations.notes,
                update_mask=ANNOTATION_FIELDS,
            ),
        )

    def _adopt(self, unit: pb.WorkUnit) -> None:
        """Registers a unit that already exists in the daemon (re-attaching)."""
        local = LocalWorkUnit(
            self,
            json.loads(unit.args_json or "{}"),
            xm.WorkUnitRole(),
            unit.identity,
            unit.work_unit_id,
        )
        local._launch_started = local.launched = True
        self._units[unit.work_unit_id] = local
        self._next_work_unit_id = max(self._next_work_unit_id, unit.work_unit_id + 1)


class _DaemonUnit(xm.ExperimentUnit):
    """What work units and auxiliary units share: launching once, waiting, stopping."""

    def __init__(
        self,
        experiment: LocalExperiment,
        args: Mapping[str, Any] | None,
        role: xm.ExperimentUnitRole,
        identity: str,
        work_unit_id: int,
    ) -> None:
        super().__init__(experiment, args, role, identity)
        self._local_experiment = experiment
        self._daemon_id = work_unit_id
        self._launch_started = False
        self._launch_done = asyncio.Event()
        self._launch_error: BaseException | None = None
        # Whether the daemon has recorded the unit (only then is there something to wait for).
        self.launched = False
        # Whether it has jobs on the daemon's machine: as in XManager, leaving the experiment's
        # context waits for those only (Vertex AI and Kubernetes jobs keep running on their own).
        self.has_local_jobs = False

    @property
    def work_unit_id(self) -> int:
        return self._daemon_id

    def _launch_job_group(
        self, job_group: xm.JobGroup, args: Mapping[str, Any], identity: str
    ) -> Awaitable[None]:
        return self._launch(job_group, args, identity)

    def _wait_until_complete(self) -> Awaitable[xm.ExperimentUnitStatus]:
        return self._wait_final()

    def get_status(self) -> xm.ExperimentUnitStatus:
        return self._current_status()

    def stop(
        self,
        *,
        mark_as_failed: bool = False,
        mark_as_completed: bool = False,
        message: str | None = None,
    ) -> None:
        if self.launched:
            self._cancel(message)

    async def _launch(self, job_group: xm.JobGroup, args: Mapping[str, Any], identity: str) -> None:
        if self._launch_started:
            raise RuntimeError(
                f"work unit {self._local_experiment.experiment_id}/{self._daemon_id} was already "
                "launched; its jobs start together, so add them as one xm.JobGroup"
            )
        self._launch_started = True
        try:
            jobs = xm.flatten_jobs(job_group)
            request = pb.AddWorkUnitRequest(
                experiment_id=self._local_experiment.experiment_id,
                work_unit_id=self._daemon_id,
                jobs=[job_to_proto(job, name) for name, job in jobs.items()],
                args_json=json.dumps(dict(args), default=str, sort_keys=True),
                identity=identity,
                request_id=uuid.uuid4().hex,
            )
            experiment = self._local_experiment
            if any(_runs_in_launch_context(job) for job in request.jobs):
                request.launch_context_digest = experiment.launch_context_digest()
            unit = await asyncio.wrap_future(experiment.submitter.submit(request))
            self.launched = True
            self.has_local_jobs = any(
                isinstance(job.executor, executors.Local) for job in jobs.values()
            )
            experiment.watcher.observe(unit)
            echoed = [
                name
                for name, job in jobs.items()
                if isinstance(job.executor, executors.Local)
                and job.executor.experimental_stream_output
            ]
            if echoed:
                experiment.output.follow(unit, echoed)
        except BaseException as error:
            self._launch_error = error
            raise
        finally:
            self._launch_done.set()

    async def _wait_final(self) -> xm.ExperimentUnitStatus:
        if not self.launched:
            if not self._launch_started:
                raise xm.ExperimentUnitNotCompletedError(
                    None, message=f"work unit {self._daemon_id} has no jobs: nothing was added"
                )
            await self._launch_done.wait()
            if self._launch_error is not None:
                raise xm.ExperimentUnitFailedError(
                    None,
                    message=f"work unit {self._daemon_id} could not be launched: "
                    f"{self._launch_error}",
                )
        experiment = self._local_experiment
        watcher = experiment._acquire_watcher()
        try:
            unit = await asyncio.wrap_future(watcher.wait_final(self._daemon_id))
        finally:
            # Closes the stream if this was its last user (only after the context ended: the
            # context holds it open); closing cancels the call and joins its thread at once.
            experiment._release_watcher()
        return _status(unit)

    def _current_status(self) -> xm.ExperimentUnitStatus:
        experiment = self._local_experiment
        watcher = experiment._watcher
        unit = watcher.latest(self._daemon_id) if watcher is not None else None
        if unit is None or (watcher is not None and watcher.final_only and not _final(unit)):
            unit = experiment.launcher.call(
                experiment.launcher.stub.GetWorkUnit,
                pb.GetWorkUnitRequest(
                    experiment_id=experiment.experiment_id, work_unit_id=self._daemon_id
                ),
            )
        return _status(unit)

    def _cancel(self, message: str | None) -> None:
        experiment = self._local_experiment
        experiment.launcher.call(
            experiment.launcher.stub.CancelWorkUnit,
            pb.CancelWorkUnitRequest(
                experiment_id=experiment.experiment_id,
                work_unit_id=self._daemon_id,
                reason=message or "stopped by the launch script",
            ),
        )


def _raise_for_unsuccessful(units: Sequence[LocalWorkUnit | LocalAuxiliaryUnit]) -> None:
    """As XManager's local executor does, a launch script ends with an error when a job failed.

    Raises ExperimentUnitFailedError for the first failed (or lost) unit, else
    ExperimentUnitNotCompletedError for the first cancelled one; the message counts the others.
    """
    failed, cancelled = [], []
    for unit in units:
        status = unit.get_status()
        if status.is_failed:
            failed.append((unit, status))
        elif not status.is_completed:
            cancelled.append((unit, status))
    error_type: type[xm.ExperimentUnitFailedError | xm.ExperimentUnitNotCompletedError]
    if failed:
        unsuccessful, what, error_type = failed, "failed", xm.ExperimentUnitFailedError
    elif cancelled:
        unsuccessful, what, error_type = (
            cancelled,
            "did not complete",
            xm.ExperimentUnitNotCompletedError,
        )
    else:
        return
    unit, status = unsuccessful[0]
    detail = f"{unit.experiment_unit_name}: {status.message or status.state.name}"
    others = len(unsuccessful) - 1
    message = f"{len(unsuccessful)} of {len(units)} work unit(s) {what}; first {detail}"
    if others:
        message += f" (`xmanager show {unit.experiment_id}` lists the others)"
    raise error_type(unit, status, message)


def _final(unit: pb.WorkUnit) -> bool:
    return unit.status.state in FINAL_STATES


def _is_final(unit: pb.WorkUnit | None) -> bool:
    return unit is not None and _final(unit)


def _status(unit: pb.WorkUnit) -> xm.ExperimentUnitStatus:
    return xm.ExperimentUnitStatus(unit.status.state, unit.status.reason)


class LocalWorkUnit(_DaemonUnit, xm.WorkUnit):
    """A work unit recorded by the daemon."""


class LocalAuxiliaryUnit(_DaemonUnit, xm.AuxiliaryUnit):
    """An auxiliary unit runs as a work unit of its own in the daemon."""

    @property
    def auxiliary_unit_id(self) -> int:
        """Its work unit id in the daemon (auxiliary units are numbered with the work units)."""
        return self._daemon_id


# -- entry points -------------------------------------------------------------------------------


def _script_path() -> Path | None:
    script = launch_script_path()
    return Path(script) if script and os.path.isfile(script) else None


def _source_revision(directory: Path) -> str:
    """The git commit the script runs from, with +dirty when the tree is modified."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def create_experiment(experiment_title: str) -> LocalExperiment:
    """Creates an experiment in the launcher daemon (started if none runs)."""
    launcher = connect()
    record = pb.Experiment(title=experiment_title, creator=getpass.getuser())
    script = _script_path()
    if script is not None:
        record.launch_script_path = str(script)
        record.launch_script_sha256 = hashlib.sha256(script.read_bytes()).hexdigest()
        record.source_revision = _source_revision(script.parent)
    created = launcher.call(
        launcher.stub.CreateExperiment,
        pb.CreateExperimentRequest(experiment=record, request_id=uuid.uuid4().hex),
    )
    return LocalExperiment(launcher, created)


def get_experiment(experiment_id: int) -> LocalExperiment:
    """Re-attaches to an existing experiment, e.g. from another process."""
    launcher = connect()
    record = launcher.call(
        launcher.stub.GetExperiment, pb.GetExperimentRequest(experiment_id=experiment_id)
    )
    experiment = LocalExperiment(launcher, record)
    token = ""
    while True:
        page = launcher.call(
            launcher.stub.ListWorkUnits,
            pb.ListWorkUnitsRequest(experiment_id=experiment_id, page_size=1000, page_token=token),
        )
        for unit in page.work_units:
            experiment._adopt(unit)
        token = page.next_page_token
        if not token:
            return experiment


def list_experiments(limit: int = 100) -> list[LocalExperiment]:
    """The newest experiments, newest first."""
    launcher = connect()
    response = launcher.call(
        launcher.stub.ListExperiments, pb.ListExperimentsRequest(page_size=limit)
    )
    return [LocalExperiment(launcher, record) for record in response.experiments]


def _raw_environ() -> Mapping[Any, Any]:
    """The process's environment as it holds it, to tell cheaply whether it changed.

    `os.environ` keeps the variables undecoded in `_data` (CPython, since 3.2): comparing that
    costs microseconds per add, where decoding the whole environment cost about 0.2 ms.
    """
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else dict(os.environ)


def _runs_in_launch_context(job: pb.Job) -> bool:
    """Local binaries run where the launch script runs, with its environment (XManager)."""
    return bool(
        job.executor.WhichOneof("kind") == "local"
        and job.artifact.WhichOneof("kind") == "local_binary"
        and not job.executor.local.clean_environment
    )
