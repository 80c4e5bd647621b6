"""XManager 0.8.5 idioms, unchanged: an async `main` run by absl, a lone Job given
`{'args': ..., 'env_vars': ...}` by `add`, a JobGroup given args for all its jobs, a derived
executable name, a user variable that starts with XM_, and local jobs that run where the
launch script runs, with its environment (a variable set in the shell reaches them).

    TRACKER_PROJECT=demo xmanager launch examples/xm_compat/launch.py -- --seeds=3
    TRACKER_PROJECT=demo bazel run //examples/xm_compat:launch -- --seeds=3
"""

from absl import app, flags

from xmanager import xm, xm_local

_SEEDS = flags.DEFINE_integer("seeds", 2, "Work units in the sweep, one per seed.")

# Each job prints its first flag, its environment and where it runs: `xmanager logs EXP/WU`
# shows them. TRACKER_PROJECT comes from the shell that ran the launch script, as XManager's
# local jobs inherit it.
_REPORT = (
    'echo "$0 SEED=${SEED:-} XM_USER_SETTING=$XM_USER_SETTING XM_JOB_NAME=$XM_JOB_NAME '
    'TRACKER_PROJECT=${TRACKER_PROJECT:-} in $(pwd -P)"'
)


@xm.run_in_asyncio_loop
async def main(_: list[str]) -> None:
    async with xm_local.create_experiment(experiment_title="xm compat") as experiment:
        [executable] = experiment.package(
            [
                xm.Packageable(
                    executable_spec=xm.Binary(path="/bin/sh"),
                    executor_spec=xm_local.Local.Spec(),
                    args=["-c", _REPORT],
                )
            ]
        )
        # Named after the binary's path, as XManager names it: '/bin/sh' -> 'sh'.
        print(f"executable: {executable.name}")
        # XM_USER_SETTING is the script's own: only the launcher's XM_ names are reserved.
        job = xm.Job(executable, xm_local.Local(), env_vars={"XM_USER_SETTING": "kept"})
        for seed in range(_SEEDS.value):
            await experiment.add(
                job, args={"args": {"seed": seed}, "env_vars": {"SEED": str(seed)}}
            )
        group = xm.JobGroup(learner=job, evaluator=job)
        await experiment.add(group, args=xm.get_args_for_all_jobs(group, {"seed": 99}))
    print(f"EXPERIMENT {experiment.experiment_id}")


if __name__ == "__main__":
    app.run(main)
