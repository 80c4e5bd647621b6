"""Experiments and units end to end, on the in-memory fake client."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from xm_fake_experiment import FakeAuxiliaryUnit, FakeExperiment, FakeWorkUnit

from xmanager import xm
from xmanager.xm_local import executors as xm_local


def _package_echo(experiment: FakeExperiment, **args: Any) -> xm.Executable:
    [executable] = experiment.package(
        [
            xm.Packageable(
                executable_spec=xm.Binary(path="/bin/echo"),
                executor_spec=xm_local.Local.Spec(),
                args=args,
            )
        ]
    )
    return executable


def _work_unit(experiment: FakeExperiment, work_unit_id: int) -> FakeWorkUnit:
    return experiment.work_units[work_unit_id]


def test_readme_for_the_impatient() -> None:
    with FakeExperiment("my-experiment") as experiment:
        spec = xm.PythonContainer(path=".", entrypoint=xm.ModuleName("train"))
        assert spec.name
        [executable] = experiment.package(
            [
                xm.Packageable(
                    executable_spec=xm.Binary(path="/bin/echo"),
                    executor_spec=xm_local.Local.Spec(),
                    args={"batch_size": 64},
                )
            ]
        )
        for hyperparameters in [{"learning_rate": 0.1}, {"learning_rate": 0.01}]:
            experiment.add(
                xm.Job(executable=executable, executor=xm_local.Local(), args=hyperparameters)
            )
    assert experiment.context.annotations.title == "my-experiment"
    assert experiment.work_unit_count == 2
    argv = [_work_unit(experiment, i).launches[0].argv for i in (1, 2)]
    assert argv == [
        {"echo": ["--batch_size=64", "--learning_rate=0.1"]},
        {"echo": ["--batch_size=64", "--learning_rate=0.01"]},
    ]
    assert experiment.exit_calls == [False]
    assert experiment.entered == 1


def test_add_with_args_merges_into_the_job_without_changing_it() -> None:
    with FakeExperiment() as experiment:
        job = xm.Job(_package_echo(experiment), xm_local.Local(), name="train", args={"lr": 1})
        for lr in (0.1, 0.2):
            experiment.add(
                job,
                args={"args": {"lr": lr, "note": "a b"}, "env_vars": {"LR": str(lr)}},
                identity=f"lr{lr}",
            )
    assert job.args.to_list() == ["--lr=1"]
    assert job.name == "train"
    first, second = (_work_unit(experiment, i) for i in (1, 2))
    assert first.launches[0].argv == {"train": ["--lr=0.1", "--note=a b"]}
    assert second.launches[0].argv == {"train": ["--lr=0.2", "--note=a b"]}
    assert first.launches[0].env == {"train": {"LR": "0.1"}}
    assert job.env_vars == {}
    recorded = {"args": {"lr": 0.1, "note": "a b"}, "env_vars": {"LR": "0.1"}}
    assert first.args == recorded
    assert first.launches[0].args == recorded
    assert (first.identity, first.launches[0].identity) == ("lr0.1", "lr0.1")
    assert first.experiment_unit_name == "7_1"
    assert second.get_full_job_name("train") == "7_2_train"
    assert first.role == xm.WorkUnitRole()


def test_add_returns_a_future_resolving_to_the_unit() -> None:
    with FakeExperiment() as experiment:
        future = experiment.add(xm.Job(_package_echo(experiment), xm_local.Local()))
        unit = future.result(timeout=5)
        assert future.done()
        assert isinstance(unit, FakeWorkUnit)
        assert unit.work_unit_id == 1
        assert unit.get_status().is_completed


def test_job_group_with_nested_args() -> None:
    with FakeExperiment() as experiment:
        executable = _package_echo(experiment)
        learner = xm.Job(executable, xm_local.Local(), args={"lr": 0.1})
        actor = xm.Job(executable, xm_local.Local(), args={"seed": 0})
        group = xm.JobGroup(learner=learner, actors=xm.JobGroup(actor_0=actor, actor_1=actor))
        experiment.add(
            group,
            args={
                "learner": {"args": {"lr": 0.5}, "env_vars": {"ROLE": "learner"}},
                "actors": {"actor_1": {"args": {"seed": 1}}},
            },
        )
        experiment.add(group)  # The same group again, without args.
    first, second = (_work_unit(experiment, i).launches[0] for i in (1, 2))
    assert first.argv == {
        "learner": ["--lr=0.5"],
        "actor_0": ["--seed=0"],
        "actor_1": ["--seed=1"],
    }
    assert first.env == {"learner": {"ROLE": "learner"}, "actor_0": {}, "actor_1": {}}
    assert second.argv == {
        "learner": ["--lr=0.1"],
        "actor_0": ["--seed=0"],
        "actor_1": ["--seed=0"],
    }
    assert list(first.job_group.jobs) == ["learner", "actors"]


def test_errors_in_jobs_or_args_raise_at_the_add_call() -> None:
    with FakeExperiment() as experiment:
        job = xm.Job(_package_echo(experiment), xm_local.Local())
        group = xm.JobGroup(learner=job)
        with pytest.raises(ValueError, match=r"valid job names: \['learner'\]"):
            experiment.add(group, args={"lrn": {"args": {}}})
        with pytest.raises(TypeError, match="job generators must be `async def` functions"):
            experiment.add(lambda work_unit: None)  # type: ignore[arg-type,return-value]
        with pytest.raises(TypeError, match="must be a mapping like"):
            experiment.add(job, args="--lr=1")
        # As XManager: a lone Job's args have only 'args' and 'env_vars'.
        with pytest.raises(ValueError, match=r"\['lr'\] are not supported by xm.Job"):
            experiment.add(job, args={"lr": 0.1})
        with pytest.raises(TypeError, match=r"'opt'.*dict"):
            experiment.add(job, args={"args": {"opt": {"a": 1}}})
    assert experiment.work_unit_count == 0


def test_add_outside_the_context_is_an_error() -> None:
    experiment = FakeExperiment()
    job = xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local())
    with pytest.raises(RuntimeError, match="not entered"):
        experiment.add(job)
    with experiment:
        pass
    with pytest.raises(RuntimeError, match="not entered"):
        experiment.add(job)


def test_entering_twice_is_an_error() -> None:
    experiment = FakeExperiment()
    with experiment, pytest.raises(RuntimeError, match="already entered"):
        experiment.__enter__()


def test_experiment_can_be_entered_again_after_exit() -> None:
    experiment = FakeExperiment()
    job = xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local())
    with experiment:
        experiment.add(job)
    with experiment:
        experiment.add(job)
    assert experiment.work_unit_count == 2
    assert experiment.entered == 2


def test_sync_mode_runs_the_loop_in_a_background_thread() -> None:
    threads: list[threading.Thread] = []

    async def generator(work_unit: xm.WorkUnit) -> None:
        del work_unit
        threads.append(threading.current_thread())

    before = threading.active_count()
    with FakeExperiment() as experiment:
        experiment.add(generator).result(timeout=5)
    assert threads[0] is not threading.main_thread()
    assert threading.active_count() == before  # The loop thread is gone after exit.


def test_sync_with_inside_a_running_event_loop() -> None:
    async def main() -> FakeExperiment:
        with FakeExperiment() as experiment:
            experiment.add(xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local()))
        return experiment

    assert asyncio.run(main()).work_unit_count == 1


def test_unfinished_work_is_cancelled_when_the_loop_stops() -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with FakeExperiment() as experiment:
        future = experiment._spawn(forever(), track=False)
    assert cancelled.is_set()
    assert future.done()


def test_job_generators() -> None:
    seen: list[tuple[int, dict[str, Any]]] = []

    with FakeExperiment() as experiment:
        executable = _package_echo(experiment)

        async def make_jobs(work_unit: xm.WorkUnit, **kwargs: Any) -> None:
            seen.append((work_unit.work_unit_id, kwargs))
            # Not awaited: the experiment still waits for it and reports failures.
            work_unit.add(xm.Job(executable, xm_local.Local(), name="a", args=kwargs))
            await work_unit.add(
                xm.JobGroup(b=xm.Job(executable, xm_local.Local())), args={"b": {"args": ["x"]}}
            )

        experiment.add(make_jobs, args={"lr": 0.1, "layers": [1, 2]})
        experiment.add(make_jobs)
    assert sorted(seen, key=lambda entry: entry[0]) == [(1, {"lr": 0.1, "layers": [1, 2]}), (2, {})]
    launched = {
        name: argv
        for launch in _work_unit(experiment, 1).launches
        for name, argv in launch.argv.items()
    }
    assert launched == {"a": ["--lr=0.1", "--layers=1", "--layers=2"], "b": ["x"]}
    assert _work_unit(experiment, 1).args == {"lr": 0.1, "layers": [1, 2]}


def test_auxiliary_unit_job() -> None:
    with FakeExperiment() as experiment:
        job = xm.Job(_package_echo(experiment), xm_local.Local(), name="tensorboard")
        unit = experiment.add(
            xm.AuxiliaryUnitJob(job, importance=xm.Importance.HIGH, termination_delay_secs=5),
            args={"args": {"port": 6006}},
        ).result(timeout=5)
    assert isinstance(unit, FakeAuxiliaryUnit)
    assert experiment.work_unit_count == 0
    assert unit.role == xm.AuxiliaryUnitRole(xm.Importance.HIGH, 5)
    assert unit.experiment_unit_name == "7_auxiliary"
    assert unit.get_full_job_name("tensorboard") == "7_auxiliary_tensorboard"
    assert unit.launches[0].argv == {"tensorboard": ["--port=6006"]}


def test_auxiliary_job_added_to_a_unit_is_an_error() -> None:
    failures: list[BaseException] = []

    async def generator(work_unit: xm.WorkUnit) -> None:
        try:
            work_unit.add(xm.AuxiliaryUnitJob(job))  # type: ignore[arg-type]
        except TypeError as error:
            failures.append(error)

    job = xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local())
    with FakeExperiment() as experiment:
        experiment.add(generator)
    assert "added to the experiment" in str(failures[0])


def _add_failing_jobs(experiment: FakeExperiment, count: int, *, then_raise: bool = False) -> None:
    """Adds `count` units whose launch fails, without awaiting them."""
    with experiment:
        for _ in range(count):
            experiment.add(xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local(), name="bad"))
        if then_raise:
            raise KeyError("body")


def test_launch_failure_is_raised_on_exit_and_the_unit_is_stopped() -> None:
    experiment = FakeExperiment(failing_job_names=["bad"])
    with pytest.raises(RuntimeError, match="backend refused job 'bad'"):
        _add_failing_jobs(experiment, 1)
    unit = _work_unit(experiment, 1)
    assert unit.stops == [
        {
            "mark_as_failed": True,
            "mark_as_completed": False,
            "message": "Launching the unit failed: RuntimeError(\"backend refused job 'bad'\")",
        }
    ]


def test_launch_failure_that_was_awaited_is_not_raised_again() -> None:
    experiment = FakeExperiment(failing_job_names=["bad"])
    with experiment:
        future = experiment.add(xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local(), name="bad"))
        with pytest.raises(RuntimeError, match="backend refused"):
            future.result(timeout=5)
    assert experiment.exit_calls == [False]


def test_body_exception_wins_and_carries_launch_failures_as_notes() -> None:
    experiment = FakeExperiment(failing_job_names=["bad"])
    with pytest.raises(KeyError) as error:
        _add_failing_jobs(experiment, 1, then_raise=True)
    assert any("backend refused" in note for note in error.value.__notes__)
    assert experiment.exit_calls == [True]


def test_several_launch_failures_are_all_reported() -> None:
    experiment = FakeExperiment(failing_job_names=["bad"])
    with pytest.raises(RuntimeError) as error:
        _add_failing_jobs(experiment, 3)
    assert len(error.value.__notes__) == 2


@pytest.mark.parametrize(
    ("state", "error"),
    [
        (xm.WorkUnitState.SUCCEEDED, None),
        (xm.WorkUnitState.FAILED, xm.ExperimentUnitFailedError),
        (xm.WorkUnitState.LOST, xm.ExperimentUnitFailedError),
        (xm.WorkUnitState.CANCELLED, xm.ExperimentUnitNotCompletedError),
    ],
)
def test_wait_until_complete(state: xm.WorkUnitState, error: type[Exception] | None) -> None:
    with FakeExperiment() as experiment:
        unit = experiment.add(xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local())).result(5)
        assert isinstance(unit, FakeWorkUnit)
        unit.final_status = xm.ExperimentUnitStatus(state, "exit code 3")
        if error is None:
            assert unit.wait_until_complete().result(timeout=5) is unit
        else:
            with pytest.raises(error, match=f"7_1 ended in state {state.name}: exit code 3"):
                unit.wait_until_complete().result(timeout=5)


def test_wait_for_completion() -> None:
    with FakeExperiment() as experiment:
        job = xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local())
        experiment.add(job)
        experiment.add(job)
        experiment.wait_for_completion().result(timeout=5)
        assert experiment.work_unit_count == 2
        _work_unit(experiment, 2).final_status = xm.ExperimentUnitStatus(xm.WorkUnitState.FAILED)
        with pytest.raises(xm.ExperimentUnitFailedError, match="7_2"):
            experiment.wait_for_completion().result(timeout=5)


def test_annotations() -> None:
    changes: list[str] = []
    with FakeExperiment("title") as experiment:
        annotations = experiment.context.annotations
        annotations.on_change = lambda a: changes.append(a.title)
        annotations.add_tags("sweep", "lr", "sweep", "")
        annotations.remove_tags("lr", "absent")
        annotations.title = "new title"
        annotations.set_notes("some notes")
        unit = experiment.add(xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local())).result(5)
        unit.context.annotations.add_tags("unit-tag")
    assert annotations.tags == ["sweep"]
    assert annotations.title == "new title"
    assert annotations.notes == "some notes"
    assert changes == ["title", "title", "new title", "new title"]
    assert unit.context.annotations.tags == ["unit-tag"]
    annotations.tags.append("not stored")
    assert annotations.tags == ["sweep"]
    with pytest.raises(TypeError, match="title"):
        annotations.set_title(3)  # type: ignore[arg-type]


# ----- async with --------------------------------------------------------------------------------


def test_async_context_manager() -> None:
    async def main() -> FakeExperiment:
        async with FakeExperiment() as experiment:
            executable = await experiment.package_async(
                xm.binary(xm_local.Local.Spec(), "/bin/echo", args={"batch_size": 8})
            )
            unit = await experiment.add(xm.Job(executable, xm_local.Local(), args={"lr": 0.1}))
            assert isinstance(unit, FakeWorkUnit)
            assert unit.work_unit_id == 1
            # Not awaited: still launched before the block ends.
            experiment.add(xm.Job(executable, xm_local.Local()), args={"args": {"lr": 0.2}})
            completed = await unit.wait_until_complete()
            assert completed is unit
        return experiment

    experiment = asyncio.run(main())
    assert [_work_unit(experiment, i).launches[0].argv["echo"] for i in (1, 2)] == [
        ["--batch_size=8", "--lr=0.1"],
        ["--batch_size=8", "--lr=0.2"],
    ]
    assert experiment.exit_calls == [False]


def test_blocking_result_on_the_experiment_loop_is_refused() -> None:
    async def main() -> None:
        async with FakeExperiment() as experiment:
            future = experiment.add(xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local()))
            with pytest.raises(RuntimeError, match="use `await` instead"):
                future.result()
            await future

    asyncio.run(main())


def test_async_launch_failure_is_raised_on_exit() -> None:
    async def main() -> None:
        async with FakeExperiment(failing_job_names=["bad"]) as experiment:
            experiment.add(xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local(), name="bad"))

    with pytest.raises(RuntimeError, match="backend refused"):
        asyncio.run(main())


def test_package_async_is_awaitable_many_times() -> None:
    calls: list[int] = []

    class CountingExperiment(FakeExperiment):
        @classmethod
        def package(cls, packageables: Any = ()) -> Any:
            calls.append(len(packageables))
            return super().package(packageables)

    async def main() -> None:
        executable = CountingExperiment.package_async(xm.binary(xm_local.LocalSpec(), "/bin/x"))
        first, second = await asyncio.gather(_await(executable), _await(executable))
        assert first is second
        assert isinstance(first, xm.BinaryArtifact)
        assert first.path == "/bin/x"

    asyncio.run(main())
    assert calls == [1]


def test_package_async_reports_packaging_errors() -> None:
    class BrokenExperiment(FakeExperiment):
        @classmethod
        def package(cls, packageables: Any = ()) -> Any:
            raise OSError("build failed")

    async def main() -> None:
        with pytest.raises(OSError, match="build failed"):
            await BrokenExperiment.package_async(xm.binary(xm_local.LocalSpec(), "/bin/x"))

    asyncio.run(main())


async def _await(awaitable: Any) -> Any:
    return await awaitable


def test_launched_jobs_list_the_added_jobs() -> None:
    with FakeExperiment() as experiment:
        executable = _package_echo(experiment)
        job = xm.Job(executable, xm_local.Local())
        unit = experiment.add(xm.JobGroup(learner=job, actor=job)).result(timeout=5)
        unit.add(xm.Job(executable, xm_local.Local(), name="extra")).result(timeout=5)
    assert unit.launched_jobs == [
        xm.LaunchedJob("learner"),
        xm.LaunchedJob("actor"),
        xm.LaunchedJob("extra"),
    ]


# ----- after the block ends ----------------------------------------------------------------------


def _wait_threads_gone(name: str) -> None:
    """The private wait loop's thread ends on its own once its last wait finished."""
    deadline = time.monotonic() + 5
    while any(thread.name == name for thread in threading.enumerate()):
        assert time.monotonic() < deadline, f"thread {name} still runs"
        time.sleep(0.01)


def test_units_are_awaited_after_the_async_block_as_in_xmanagers_examples() -> None:
    job = xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local())

    @xm.run_in_asyncio_loop
    async def main() -> list[xm.WorkUnit]:
        async with FakeExperiment() as experiment:
            units = [await experiment.add(job) for _ in range(3)]
        failing = units[2]
        assert isinstance(failing, FakeWorkUnit)
        failing.final_status = xm.ExperimentUnitStatus(xm.WorkUnitState.FAILED, "exit code 1")
        assert [await unit.wait_until_complete() for unit in units[:2]] == units[:2]
        with pytest.raises(xm.ExperimentUnitFailedError, match="7_3"):
            await units[2].wait_until_complete()
        with pytest.raises(xm.ExperimentUnitFailedError, match="7_3"):
            await experiment.wait_for_completion()
        # Blocking on the caller's own loop would deadlock: refused, as inside the block.
        with pytest.raises(RuntimeError, match="use `await` instead"):
            units[0].wait_until_complete().result()
        return units

    units = main()
    assert units[0].get_status().is_completed
    units[0].stop(message="done with it")
    assert isinstance(units[0], FakeWorkUnit)
    assert units[0].stops == [
        {"mark_as_failed": False, "mark_as_completed": False, "message": "done with it"}
    ]


def test_units_are_waited_for_synchronously_after_the_block() -> None:
    job = xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local())
    with FakeExperiment() as experiment:
        units = [experiment.add(job).result(5) for _ in range(20)]
    futures = [unit.wait_until_complete() for unit in units]
    # All waits share one private loop thread, which ends with the last of them.
    assert sum(t.name == "xm-wait-loop" for t in threading.enumerate()) <= 1
    assert [future.result(timeout=5) for future in futures] == units
    _wait_threads_gone("xm-wait-loop")
    assert units[0].wait_until_complete().result(timeout=5) is units[0]  # and starts again
    experiment.wait_for_completion().result(timeout=5)
    _wait_threads_gone("xm-wait-loop")


def test_adding_after_the_block_is_refused_and_records_nothing() -> None:
    job = xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local())
    with FakeExperiment() as experiment:
        unit = experiment.add(job).result(5)
    with pytest.raises(RuntimeError, match="its `with` block has ended"):
        experiment.add(job)
    with pytest.raises(RuntimeError, match="its `with` block has ended"):
        unit.add(job)
    assert unit.launched_jobs == [xm.LaunchedJob("b")]
    assert experiment.work_unit_count == 1


def test_a_wait_started_after_the_block_can_be_cancelled() -> None:
    started = threading.Event()

    async def forever() -> xm.ExperimentUnitStatus:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    with FakeExperiment() as experiment:
        unit = experiment.add(xm.Job(xm.BinaryArtifact("b", "/b"), xm_local.Local())).result(5)
    unit._wait_until_complete = forever  # type: ignore[method-assign]
    future = unit.wait_until_complete()
    assert started.wait(5)
    assert future.cancel()
    _wait_threads_gone("xm-wait-loop")
