"""Jobs, job groups, generators, auxiliary jobs, validation and the job operators."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from xmanager import xm
from xmanager.xm import job_operators
from xmanager.xm_local import executors as xm_local

EXECUTABLE = xm.BinaryArtifact(
    "_bin_echo", "/bin/echo", args=xm.SequentialArgs.from_collection({"batch_size": 64})
)


def make_job(**kwargs: Any) -> xm.Job:
    return xm.Job(EXECUTABLE, xm_local.Local(), **kwargs)


# ----- Job ---------------------------------------------------------------------------------------


def test_job_normalises_args_and_copies_env() -> None:
    env = {"A": "1"}
    job = make_job(args={"lr": 0.1}, env_vars=env, name="train")
    env["B"] = "2"
    assert job.args == xm.SequentialArgs.from_collection({"lr": 0.1})
    assert job.env_vars == {"A": "1"}
    assert make_job().args == xm.SequentialArgs()
    assert make_job().name is None


def test_job_rejects_unpackaged_executables() -> None:
    packageable = xm.Packageable(xm.Binary("/bin/echo"), xm_local.LocalSpec())
    with pytest.raises(TypeError, match="Package it first"):
        xm.Job(packageable, xm_local.Local())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="executor"):
        xm.Job(EXECUTABLE, xm_local.LocalSpec())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["train", "a.b-c_1", "_x", "0", "a" * 63, "A-1.b"])
def test_valid_job_names(name: str) -> None:
    assert make_job(name=name).name == name


@pytest.mark.parametrize("name", ["", "-a", ".a", "a b", "a" * 64, "\u00fc", "a/b", "a:b"])
def test_invalid_job_names(name: str) -> None:
    with pytest.raises(ValueError, match="Invalid job name"):
        make_job(name=name)


@pytest.mark.parametrize(
    ("env_vars", "error", "fragment"),
    [
        ({"1A": "x"}, ValueError, "'1A'"),
        ({"A-B": "x"}, ValueError, "'A-B'"),
        ({"": "x"}, ValueError, "''"),
        ({"A B": "x"}, ValueError, "'A B'"),
        ({"PORT": 8080}, TypeError, "'PORT' .* int"),
        ({"X": None}, TypeError, "'X'"),
        ({1: "x"}, TypeError, "1"),
        ({"X": "a\x00b"}, ValueError, "NUL"),
        (["A=1"], TypeError, "mapping"),
    ],
)
def test_env_var_validation(env_vars: Any, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        make_job(env_vars=env_vars)


def test_env_var_values_are_verbatim() -> None:
    value = "a b $HOME 'q' \"d\"\n\u00e9"
    assert make_job(env_vars={"_OK_1": value}).env_vars == {"_OK_1": value}


# ----- JobGroup ----------------------------------------------------------------------------------


def test_job_group_holds_jobs_and_groups() -> None:
    job = make_job()
    inner = xm.JobGroup(actor=job)
    group = xm.JobGroup(learner=job, actors=inner)
    assert group.jobs == {"learner": job, "actors": inner}
    assert group.constraints == ()
    assert "learner=" in repr(group)


def test_job_group_rejects_non_jobs() -> None:
    async def generator(work_unit: xm.WorkUnit) -> None:
        del work_unit

    with pytest.raises(TypeError, match="cannot be grouped"):
        xm.JobGroup(gen=generator)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Invalid JobGroup key"):
        xm.JobGroup(**{"bad key": make_job()}, constraints=None)


# ----- prepare: args application and naming ------------------------------------------------------


def test_lone_job_args_merge_and_name_default() -> None:
    job = make_job(args={"lr": 0.1, "steps": 10})
    group = job_operators.prepare_job_group(job, {"args": {"lr": 0.01, "seed": 1}})
    [(name, launched)] = xm.flatten_jobs(group).items()
    assert name == "_bin_echo"
    assert launched.name == "_bin_echo"
    assert launched.args.to_list() == ["--lr=0.01", "--steps=10", "--seed=1"]
    assert xm.job_args(launched).to_list() == [
        "--batch_size=64",
        "--lr=0.01",
        "--steps=10",
        "--seed=1",
    ]
    # The original job is untouched.
    assert job.args.to_list() == ["--lr=0.1", "--steps=10"]
    assert job.name is None


def test_lone_job_keeps_its_name_and_takes_list_args() -> None:
    group = job_operators.prepare_job_group(make_job(name="trainer", args=["a"]), {"args": ["b"]})
    assert list(xm.flatten_jobs(group)) == ["trainer"]
    assert xm.flatten_jobs(group)["trainer"].args.to_list() == ["a", "b"]


def test_default_name_from_an_unusual_executable_name() -> None:
    executable = xm.ImageArtifact(".h\u00e9llo" + "x" * 80, image_ref="r")
    name = job_operators.default_job_name(xm.Job(executable, xm_local.Local()))
    assert name == "h_llo" + "x" * 58


def test_nested_group_args() -> None:
    learner = make_job(args={"lr": 0.1})
    actor = make_job(args={"n": 1})
    group = xm.JobGroup(learner=learner, actors=xm.JobGroup(actor=actor, evaluator=actor))
    prepared = job_operators.prepare_job_group(
        group,
        {
            "learner": {"args": {"lr": 0.5}, "env_vars": {"ROLE": "learner"}},
            "actors": {"actor": {"args": {"n": 4}}},
        },
    )
    jobs = xm.flatten_jobs(prepared)
    assert list(jobs) == ["learner", "actor", "evaluator"]
    assert [job.name for job in jobs.values()] == ["learner", "actor", "evaluator"]
    assert jobs["learner"].args.to_list() == ["--lr=0.5"]
    assert jobs["learner"].env_vars == {"ROLE": "learner"}
    assert jobs["actor"].args.to_list() == ["--n=4"]
    assert jobs["evaluator"].args.to_list() == ["--n=1"]
    # Inputs untouched, including the job object used twice.
    assert actor.args.to_list() == ["--n=1"]
    assert actor.name is None
    assert learner.env_vars == {}
    assert prepared is not group


def test_group_leaf_is_named_by_its_key() -> None:
    prepared = job_operators.prepare_job_group(xm.JobGroup(worker=make_job(name="other")), None)
    assert list(xm.flatten_jobs(prepared)) == ["worker"]
    assert xm.flatten_jobs(prepared)["worker"].name == "worker"


def test_group_constraints_are_kept() -> None:
    class SameHost(xm.Constraint):
        pass

    constraint = SameHost()
    group = xm.JobGroup(a=make_job(), constraints=[constraint])
    assert job_operators.prepare_job_group(group, None).constraints == (constraint,)


def test_unknown_job_name_in_nested_args() -> None:
    group = xm.JobGroup(learner=make_job(), actors=xm.JobGroup(actor=make_job()))
    with pytest.raises(ValueError, match=r"\['lr'\].*valid job names: \['learner', 'actors'\]"):
        job_operators.prepare_job_group(group, {"lr": 0.1})
    with pytest.raises(ValueError, match=r"'actors'.*valid job names: \['actor'\]"):
        job_operators.prepare_job_group(group, {"actors": {"learner": {}}})
    with pytest.raises(ValueError, match=r"only have 'args' and 'env_vars'"):
        job_operators.prepare_job_group(group, {"learner": {"lr": 0.1}})
    with pytest.raises(TypeError, match="mapping"):
        job_operators.prepare_job_group(group, {"learner": ["--lr=1"]})
    with pytest.raises(TypeError, match="nested by job name"):
        job_operators.prepare_job_group(group, ["x"])


def test_duplicate_leaf_keys_are_an_error() -> None:
    job = make_job()
    group = xm.JobGroup(a=xm.JobGroup(worker=job), b=xm.JobGroup(worker=job))
    with pytest.raises(ValueError, match=r"Two jobs are named 'worker'.*'a\.worker'.*'b\.worker'"):
        job_operators.prepare_job_group(group, None)


def test_empty_group_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one job"):
        job_operators.prepare_job_group(xm.JobGroup(inner=xm.JobGroup()), None)


def test_job_env_vars_combine_executable_and_job() -> None:
    executable = xm.BinaryArtifact("b", "/b", env_vars={"A": "1", "B": "1"})
    job = xm.Job(executable, xm_local.Local(), env_vars={"B": "2"})
    assert xm.job_env_vars(job) == {"A": "1", "B": "2"}


# ----- Generators --------------------------------------------------------------------------------


async def _generator(work_unit: xm.WorkUnit, **kwargs: Any) -> None:
    del work_unit, kwargs


class _AsyncCallable:
    async def __call__(self, work_unit: xm.WorkUnit) -> None:
        del work_unit


def _sync(work_unit: xm.WorkUnit) -> None:
    del work_unit


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (_generator, True),
        (functools.partial(_generator, lr=1), True),
        (_AsyncCallable(), True),
        (_sync, False),
        (lambda work_unit: None, False),
        (None, False),
        (_AsyncCallable, False),
    ],
)
def test_is_coroutine_fn(candidate: object, expected: bool) -> None:
    assert xm.is_coroutine_fn(candidate) is expected


def test_generator_kwargs() -> None:
    prepared = job_operators.prepare(_generator, {"lr": 0.1})
    assert prepared == (_generator, {"lr": 0.1})
    assert job_operators.prepare(_generator, None) == (_generator, {})


def test_sync_generator_is_rejected() -> None:
    with pytest.raises(TypeError, match="job generators must be `async def` functions"):
        job_operators.prepare(_sync, None)


def test_generator_args_must_be_keywords() -> None:
    with pytest.raises(TypeError, match="keyword arguments"):
        job_operators.prepare(_generator, ["a"])
    with pytest.raises(TypeError, match="'not valid'"):
        job_operators.prepare(_generator, {"not valid": 1})


def test_generator_signature_is_checked_against_the_args() -> None:
    async def needs_lr(work_unit: xm.WorkUnit, lr: float) -> None:
        del work_unit, lr

    with pytest.raises(TypeError, match=r"needs_lr.*\['extra', 'lr'\].*'extra'"):
        job_operators.prepare(needs_lr, {"lr": 0.1, "extra": 1})
    with pytest.raises(TypeError, match="missing a required argument: 'lr'"):
        job_operators.prepare(needs_lr, None)
    partial = functools.partial(needs_lr, lr=1)
    assert job_operators.prepare(partial, {"lr": 2}) == (partial, {"lr": 2})


def test_unsupported_job_kinds() -> None:
    with pytest.raises(TypeError, match=r"expected an xm\.Job, an xm\.JobGroup or a job generator"):
        job_operators.prepare("train", None)
    with pytest.raises(TypeError, match="added to the experiment"):
        job_operators.prepare(xm.AuxiliaryUnitJob(make_job()), None)


# ----- AuxiliaryUnitJob --------------------------------------------------------------------------


def test_auxiliary_unit_job() -> None:
    job = make_job()
    auxiliary = xm.AuxiliaryUnitJob(job)
    assert auxiliary.job is job
    assert auxiliary.importance is xm.Importance.NORMAL
    assert auxiliary.termination_delay_secs == 30
    assert auxiliary.role == xm.AuxiliaryUnitRole(xm.Importance.NORMAL, 30)
    high = xm.AuxiliaryUnitJob(job, importance=xm.Importance.HIGH, termination_delay_secs=5)
    assert (high.importance, high.termination_delay_secs) == (xm.Importance.HIGH, 5)
    assert [member.name for member in xm.Importance] == ["LOW", "NORMAL", "HIGH"]
    assert "AuxiliaryUnitJob" in repr(high)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"termination_delay_secs": -1}, ValueError),
        ({"termination_delay_secs": "30"}, ValueError),
        ({"importance": "HIGH"}, TypeError),
    ],
)
def test_auxiliary_unit_job_validation(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        xm.AuxiliaryUnitJob(make_job(), **kwargs)


def test_work_unit_args_recorded_as_xmanager_shows_them() -> None:
    job = make_job(args={"lr": 0.1, "verbose": True}, env_vars={"SEED": "1"})
    given = {"args": {"lr": 0.2}}
    assert job_operators.work_unit_args(job, given) == given
    assert job_operators.work_unit_args(job, None) == {
        "args": {"lr": 0.1, "verbose": True},
        "env_vars": {"SEED": "1"},
    }
    assert job_operators.work_unit_args(make_job(), None) == {}
    group = xm.JobGroup(learner=job, actors=xm.JobGroup(actor=make_job(args=["positional"])))
    assert job_operators.work_unit_args(group, None) == {
        "learner": {"args": {"lr": 0.1, "verbose": True}, "env_vars": {"SEED": "1"}},
        "actors": {"actor": {}},
    }


def test_lone_job_takes_env_vars_from_add() -> None:
    job = make_job(env_vars={"A": "1", "B": "2"})
    group = job_operators.prepare_job_group(job, {"env_vars": {"B": "3"}})
    assert xm.flatten_jobs(group)["_bin_echo"].env_vars == {"A": "1", "B": "3"}
    with pytest.raises(ValueError, match=r"not supported by xm\.Job"):
        job_operators.prepare_job_group(job, {"agent": {"args": {}}})
