"""Packages a label that its xm_launch target does not list: the client must refuse it."""

from xmanager import xm, xm_local

with xm_local.create_experiment(experiment_title="unlisted label") as experiment:
    experiment.package([xm.bazel_binary(xm_local.Local.Spec(), label="//tests/launch:not_listed")])
