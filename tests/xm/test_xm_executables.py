"""Executable specs, packageables and their factories, artifacts, and the xm_local executors."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import pytest

from xmanager import xm
from xmanager.xm_local import executors as xm_local

# ----- Specs and names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        # As XManager: the last path component, each non-word character '_'.
        (xm.Binary(path="/a/b/a.out"), "a_out"),
        (xm.Binary(path="/bin/true"), "true"),
        (xm.Binary(path="relative/run-me.sh"), "run_me_sh"),
        (xm.BazelBinary(label="//exp:train"), "exp_train"),
        (xm.BazelBinary(label="//exp/deep:train_bin"), "deep_train_bin"),
        (xm.BazelBinary(label="@repo//exp:train"), "exp_train"),
        (xm.Container(image_path="gcr.io/p/img:v1"), "img_v1"),
        (xm.Container(image_path="/images/app.tar"), "app_tar"),
        (xm.BazelContainer(label="//exp:image.tar"), "exp_image_tar"),
        (xm.PythonContainer(xm.ModuleName("train"), path="/src/my-project"), "my_project"),
        (xm.PythonContainer(xm.ModuleName("train"), path="/src/proj/"), "proj"),
        (xm.Dockerfile(path="/ctx/app.v2"), "app_v2"),
    ],
)
def test_spec_names(spec: xm.ExecutableSpec, name: str) -> None:
    assert spec.name == name


def test_relative_paths_resolve_against_launch_script_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/home/me/exp/launch.py", "--flag"])
    assert xm.PythonContainer(xm.ModuleName("m")).path == "/home/me/exp"
    assert xm.PythonContainer(xm.ModuleName("m")).name == "exp"
    assert xm.PythonContainer(xm.ModuleName("m"), path="src").path == "/home/me/exp/src"
    assert xm.PythonContainer(xm.ModuleName("m"), path="../lib").path == "/home/me/lib"
    assert xm.Dockerfile().path == "/home/me/exp"
    assert xm.Dockerfile(path="docker", dockerfile="docker/Dockerfile.gpu").path == (
        "/home/me/exp/docker"
    )
    # Absolute paths are left untouched.
    assert xm.PythonContainer(xm.ModuleName("m"), path="/abs/x/").path == "/abs/x/"
    # The factory resolves the same way.
    packageable = xm.python_container(xm_local.Local.Spec(), xm.ModuleName("m"), path="src")
    assert isinstance(packageable.executable_spec, xm.PythonContainer)
    assert packageable.executable_spec.path == "/home/me/exp/src"


def test_specs_are_frozen_hashable_and_do_not_share_defaults() -> None:
    first = xm.BazelBinary("//a:b", bazel_args=["-c", "opt"])
    assert first.bazel_args == ("-c", "opt")
    assert hash(first) == hash(xm.BazelBinary("//a:b", bazel_args=("-c", "opt")))
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.label = "//x:y"  # type: ignore[misc]
    assert xm.Binary("/a").dependencies == ()
    assert xm.CommandList(["pip install x", "python -m y"]).commands == (
        "pip install x",
        "python -m y",
    )
    instructions = ["RUN echo hi"]
    spec = xm.PythonContainer(xm.CommandList(["x"]), path="/p", docker_instructions=instructions)
    instructions.append("RUN later")
    assert spec.docker_instructions == ("RUN echo hi",)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: xm.Binary(path=""), ValueError),
        (lambda: xm.Binary(path=3), TypeError),  # type: ignore[arg-type]
        (lambda: xm.Binary("/a", dependencies=["x"]), TypeError),  # type: ignore[list-item]
        (lambda: xm.BazelBinary(label="//a:b", bazel_args="-c opt"), TypeError),
        (lambda: xm.Container(image_path=""), ValueError),
        (lambda: xm.PythonContainer(entrypoint="train"), TypeError),  # type: ignore[arg-type]
        (lambda: xm.CommandList("python x.py"), TypeError),
        (lambda: xm.ModuleName(""), ValueError),
    ],
)
def test_bad_specs(make: object, error: type[Exception]) -> None:
    assert callable(make)
    with pytest.raises(error):
        make()


# ----- Packageables ------------------------------------------------------------------------------


def test_packageable_normalises_args_and_copies_env() -> None:
    env = {"A": "1"}
    packageable = xm.Packageable(
        executable_spec=xm.Binary(path="/bin/echo"),
        executor_spec=xm_local.Local.Spec(),
        args={"batch_size": 64},
        env_vars=env,
    )
    env["B"] = "2"
    assert packageable.args == xm.SequentialArgs.from_collection({"batch_size": 64})
    assert packageable.env_vars == {"A": "1"}
    assert xm.Packageable(xm.Binary("/a"), xm_local.LocalSpec()).args.to_list() == []


def test_packageable_rejects_an_executor_instead_of_a_spec() -> None:
    with pytest.raises(TypeError, match=r"Local\.Spec\(\)"):
        xm.Packageable(xm.Binary("/a"), xm_local.Local())  # type: ignore[arg-type]


def test_factories() -> None:
    spec = xm_local.Local.Spec()
    cases = [
        (xm.binary(spec, "/bin/echo", args=["hi"]), xm.Binary("/bin/echo")),
        (
            xm.bazel_binary(spec, "//a:b", bazel_args=["-c", "opt"], args=["hi"]),
            xm.BazelBinary("//a:b", bazel_args=("-c", "opt")),
        ),
        (xm.container(spec, "img:1", args=["hi"]), xm.Container("img:1")),
        (xm.bazel_container(spec, "//a:img", args=["hi"]), xm.BazelContainer("//a:img")),
        (
            xm.python_container(spec, xm.ModuleName("t"), path="/p", args=["hi"]),
            xm.PythonContainer(xm.ModuleName("t"), path="/p"),
        ),
        (
            xm.dockerfile_container(spec, "/ctx", dockerfile="/ctx/Dockerfile", args=["hi"]),
            xm.Dockerfile("/ctx", "/ctx/Dockerfile"),
        ),
    ]
    for packageable, expected in cases:
        assert packageable.executable_spec == expected
        assert packageable.executor_spec is spec
        assert packageable.args.to_list() == ["hi"]
    with_env = xm.binary(spec, "/bin/env", env_vars={"X": "1"})
    assert with_env.env_vars == {"X": "1"}


# ----- Artifacts ---------------------------------------------------------------------------------


def test_binary_artifact() -> None:
    # Args are normalised at run time even when not given as SequentialArgs.
    raw_args: Any = ["x"]
    artifact = xm.BinaryArtifact(
        "train", "/bin/train", "ab" * 32, args=raw_args, env_vars={"A": "1"}
    )
    assert isinstance(artifact, xm.Executable)
    assert artifact.args.to_list() == ["x"]
    assert artifact.sha256 == "ab" * 32
    assert xm.BinaryArtifact(name="n", path="/p").sha256 == ""


def test_image_artifact_needs_exactly_one_source() -> None:
    assert xm.ImageArtifact("i", image_path="/img.tar", digest="sha256:00").image_ref is None
    assert xm.ImageArtifact("i", image_ref="repo/img:tag").image_path is None
    with pytest.raises(ValueError, match="exactly one"):
        xm.ImageArtifact("i")
    with pytest.raises(ValueError, match="exactly one"):
        xm.ImageArtifact("i", image_path="/img.tar", image_ref="repo/img")


def test_executable_env_vars_are_validated() -> None:
    with pytest.raises(ValueError, match="'1BAD'"):
        xm.BinaryArtifact("n", "/p", env_vars={"1BAD": "x"})


# ----- xm_local executors ------------------------------------------------------------------------


def test_local_executor() -> None:
    local = xm_local.Local()
    assert local.Spec is xm_local.LocalSpec
    assert isinstance(xm_local.Local.Spec(), xm.ExecutorSpec)
    assert isinstance(local, xm.Executor)
    assert local.requirements == xm.JobRequirements()
    assert local.docker_options is None
    assert local.experimental_stream_output is True
    # Defaults are not shared between instances.
    assert xm_local.Local().requirements is not xm_local.Local().requirements
    options = xm_local.DockerOptions(ports={8080: 80}, volumes={"/data": "/mnt"}, interactive=True)
    assert xm_local.Local(docker_options=options).docker_options == options
    assert xm_local.DockerOptions().ports is not xm_local.DockerOptions().ports
    assert xm_local.DockerOptions().mount_gcs_path is True


@pytest.mark.parametrize("ports", [{0: 80}, {80: 70000}, {"80": 80}, {True: 80}])
def test_docker_options_bad_ports(ports: dict[object, object]) -> None:
    with pytest.raises(ValueError, match="ports"):
        xm_local.DockerOptions(ports=ports)  # type: ignore[arg-type]


def test_executors_check_requirements_type() -> None:
    with pytest.raises(TypeError, match="JobRequirements"):
        xm_local.Local(requirements={"cpu": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JobRequirements"):
        xm_local.Vertex(requirements=None)  # type: ignore[arg-type]


def test_vertex_executor() -> None:
    vertex = xm_local.Vertex(
        requirements=xm.JobRequirements(A100=8, replicas=2),
        tensorboard=xm_local.TensorboardCapability(
            name="projects/p/locations/l/tensorboards/1", base_output_directory="gs://b/out"
        ),
        region="us-central1",
    )
    assert vertex.Spec is xm_local.VertexSpec
    assert vertex.requirements.replicas == 2
    assert xm_local.Caip is xm_local.Vertex
    assert xm_local.VertexSpec(push_image_tag="gcr.io/p/i:t").push_image_tag == "gcr.io/p/i:t"
    with pytest.raises(ValueError, match="machine_type"):
        xm_local.Vertex(machine_type="")


def test_kubernetes_executor() -> None:
    kubernetes = xm_local.Kubernetes()
    assert kubernetes.Spec is xm_local.KubernetesSpec
    assert (kubernetes.namespace, kubernetes.context, kubernetes.cloud_provider) == (
        "default",
        None,
        "GKE",
    )
    assert kubernetes.node_selector == {}
    assert kubernetes.tolerations == []
    assert xm_local.Kubernetes().tolerations is not xm_local.Kubernetes().tolerations
    tolerations = [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    custom = xm_local.Kubernetes(
        namespace="ml", node_selector={"pool": "a"}, tolerations=tolerations
    )
    tolerations[0]["key"] = "changed"
    assert custom.tolerations == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    with pytest.raises(TypeError, match="tolerations"):
        xm_local.Kubernetes(tolerations=["gpu"])  # type: ignore[list-item]
