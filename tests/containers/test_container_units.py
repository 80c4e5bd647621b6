"""The container backend's engine-free parts: image tarballs, create options, log streams,
and the client's packaging of xm.Container. No Docker Engine needed."""

from __future__ import annotations

import io
import json
import struct
import tarfile
from pathlib import Path

import pytest

from launcher_server import job_dirs
from launcher_server.backends.local.containers import options
from launcher_server.backends.local.containers.images import ChunkReader
from launcher_server.backends.local.containers.log_stream import (
    Cursor,
    LogCopier,
    StreamCursor,
    multiplexed_messages,
    parse_timestamp,
    tty_messages,
)
from launcher_server.jobs import JobKey, LaunchSpec
from tests.containers import images
from xmanager import xm, xm_local
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.oci import image as image_tarball
from xmanager.xm_local import job_proto, packaging


@pytest.fixture(scope="module")
def layer() -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    return data.getvalue()


# -- image tarballs ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docker", "oci", "both"])
def test_tarball_identity_is_read_from_small_members(
    tmp_path: Path, layer: bytes, fmt: str
) -> None:
    path = tmp_path / "image.tar"
    image_id = images.write_image_tarball(path, fmt=fmt, layer=layer, tag="repo/name:tag")
    info = image_tarball.read(path)
    assert info.config_digest == image_id
    assert info.has_docker_manifest == (fmt != "oci")
    assert info.repo_tags == ("repo/name:tag",)
    assert len(info.layer_members) == len(info.diff_ids) == 1
    if fmt == "docker":
        assert info.manifest_digest == ""
        assert info.digests == {image_id}
    else:
        assert info.manifest_digest == images.manifest_digest(path)
        assert info.digests == {image_id, info.manifest_digest}
        # The client records the same digest the daemon checks.
        assert packaging.image_tarball_digest(path) == info.manifest_digest
    if fmt == "docker":
        assert packaging.image_tarball_digest(path) == image_id


def test_load_stream_adds_a_manifest_and_skips_layers_the_engine_has(
    tmp_path: Path, layer: bytes
) -> None:
    path = tmp_path / "image.tar"
    images.write_image_tarball(path, fmt="oci", layer=layer)
    info = image_tarball.read(path)
    assert image_tarball.skippable_layers(info, []) == set()
    skip = image_tarball.skippable_layers(info, info.chain_ids)
    assert skip == set(info.layer_members)

    with tarfile.open(fileobj=io.BytesIO(b"".join(image_tarball.load_stream(info)))) as full:
        names = full.getnames()
        manifest = json.load(full.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert "manifest.json" in names
    assert info.layer_members[0] in names
    assert manifest == [
        {"Config": info.config_member, "RepoTags": None, "Layers": list(info.layer_members)}
    ]
    stream = b"".join(image_tarball.load_stream(info, skip))
    with tarfile.open(fileobj=io.BytesIO(stream)) as partial:
        assert info.layer_members[0] not in partial.getnames()
        assert info.config_member in partial.getnames()


def test_chain_ids_follow_the_oci_definition() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    import hashlib

    assert image_tarball.chain_ids([a, b]) == [
        a,
        "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest(),
    ]


def test_bad_tarballs_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(image_tarball.ImageTarballError, match="does not exist; build it first"):
        image_tarball.read(tmp_path / "missing.tar")
    not_tar = tmp_path / "not.tar"
    not_tar.write_text("hello")
    with pytest.raises(image_tarball.ImageTarballError, match="not a readable tar archive"):
        image_tarball.read(not_tar)
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w") as tar:
        info = tarfile.TarInfo("README")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(image_tarball.ImageTarballError, match=r"neither manifest\.json"):
        image_tarball.read(empty)
    two = tmp_path / "two.tar"
    with tarfile.open(two, "w") as tar:
        data = json.dumps([{"Config": "a", "Layers": []}, {"Config": "b", "Layers": []}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(image_tarball.ImageTarballError, match="holds 2 images"):
        image_tarball.read(two)


# -- create options ----------------------------------------------------------------------------


def _spec(job: pb.Job, peers: tuple[str, ...] = ()) -> LaunchSpec:
    return LaunchSpec(
        key=JobKey(7, 3, job.name),
        job=job,
        args=tuple(job.args),
        env={**job.env, "XM_JOB_NAME": job.name},
        peers=tuple(peers or (job.name,)),
    )


def _image_job(executor: xm_local.Local, args: list[str] | None = None) -> pb.Job:
    executable = xm.ImageArtifact(name="img", image_ref="busybox:latest")
    return job_proto.job_to_proto(xm.Job(executable, executor, args=args or []), "trainer")


def test_gpu_device_request_is_built_from_local_gpu() -> None:
    executor = xm_local.Local(requirements=xm.JobRequirements(local_gpu=2))
    job = _image_job(executor)
    assert job.executor.local.gpus == 2
    kwargs = options.create_kwargs(
        _spec(job), "sha256:abc", options.Naming("inst"), log_cap_bytes=1 << 20
    )
    assert kwargs["device_requests"] == [{"count": 2, "capabilities": [["gpu"]]}]
    # What docker-py sends to the engine for it: `docker run --gpus 2`.
    docker_types = pytest.importorskip("docker.types")
    host_config = docker_types.HostConfig(version="1.41", device_requests=kwargs["device_requests"])
    assert host_config["DeviceRequests"] == [
        {"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    no_gpu = options.create_kwargs(
        _spec(_image_job(xm_local.Local())),
        "sha256:abc",
        options.Naming("inst"),
        log_cap_bytes=1 << 20,
    )
    assert "device_requests" not in no_gpu


def test_create_options_map_the_contract_to_docker() -> None:
    executor = xm_local.Local(
        docker_options=xm_local.DockerOptions(
            ports={8080: 18080}, volumes={"/data/in": "/in"}, interactive=True
        )
    )
    job = _image_job(executor, args=["--lr=0.1", "two words"])
    naming = options.Naming("inst")
    kwargs = options.create_kwargs(
        _spec(job, peers=("trainer", "server")), "sha256:abc", naming, log_cap_bytes=64 << 20
    )
    assert kwargs["image"] == "sha256:abc"
    assert kwargs["command"] == ["--lr=0.1", "two words"]
    assert kwargs["name"] == "xm-inst-7-3-trainer"
    assert kwargs["labels"] == {
        "xmanager.instance": "inst",
        "xmanager.experiment": "7",
        "xmanager.work_unit": "3",
        "xmanager.job": "trainer",
    }
    assert kwargs["environment"]["XM_JOB_NAME"] == "trainer"
    assert kwargs["network"] == "xm-inst-exp-7"
    assert kwargs["networking_config"] == {
        "xm-inst-exp-7": {"Aliases": ["trainer"], "Links": ["xm-inst-7-3-server:server"]}
    }
    # Loopback only unless asked (all_interfaces).
    assert kwargs["ports"] == {"8080/tcp": ("127.0.0.1", 18080)}
    assert kwargs["volumes"] == {"/data/in": {"bind": "/in", "mode": "rw"}}
    assert kwargs["stdin_open"] is True
    assert kwargs["tty"] is True
    assert kwargs["log_config"]["type"] == "local"
    # No args: the image's own command runs.
    plain = options.create_kwargs(
        _spec(_image_job(xm_local.Local())), "sha256:abc", naming, log_cap_bytes=1 << 20
    )
    assert plain["command"] is None


def test_bad_docker_options_are_refused_with_what_to_do() -> None:
    job = _image_job(xm_local.Local(docker_options=xm_local.DockerOptions(volumes={"data": "/d"})))
    with pytest.raises(ValueError, match="host path 'data' is not absolute"):
        options.check_options(job)
    job = _image_job(xm_local.Local(docker_options=xm_local.DockerOptions(volumes={"/d": "d"})))
    with pytest.raises(ValueError, match="container path 'd' for '/d' is not absolute"):
        options.check_options(job)


def test_instance_id_is_stable_and_distinct(tmp_path: Path) -> None:
    first = options.instance_id(tmp_path / "a")
    assert first == options.instance_id(tmp_path / "a")
    assert first != options.instance_id(tmp_path / "b")
    assert len(first) == 12


# -- log streams -------------------------------------------------------------------------------

T0 = "2026-01-02T03:04:05.000000001Z"


def _ts(offset_ns: int) -> bytes:
    base = parse_timestamp(T0.encode())
    assert base is not None
    seconds, nanos = divmod(base + offset_ns, 1_000_000_000)
    import datetime

    whole = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z".encode()


def _frames(*messages: tuple[int, int, bytes]) -> bytes:
    """Engine frames: (stream, timestamp offset, data)."""
    out = b""
    for stream, offset, data in messages:
        payload = _ts(offset) + b" " + data
        out += struct.pack(">BxxxL", stream, len(payload)) + payload
    return out


def test_timestamps_parse_to_nanoseconds() -> None:
    assert parse_timestamp(b"1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert parse_timestamp(b"1970-01-01T01:00:00.000000002+01:00") == 2
    assert parse_timestamp(b"not a time") is None


def test_multiplexed_and_tty_streams_are_split_into_messages() -> None:
    stream = io.BytesIO(_frames((1, 0, b"out\n"), (2, 1, b"err\n"), (1, 2, b"no newline")))
    assert [s for s, _ in multiplexed_messages(stream.read)] == ["stdout", "stderr", "stdout"]
    tty = io.BytesIO(_ts(0) + b" a\r\n" + _ts(1) + b" b")
    assert [m for _, m in tty_messages(tty.read, chunk=3)] == [
        _ts(0) + b" a\r\n",
        _ts(1) + b" b",
    ]


def test_copier_resumes_without_duplicating_or_losing_output(tmp_path: Path) -> None:
    """A daemon killed after copying more than its last checkpoint says resumes exactly."""
    stream = [(1, 0, b"one\n"), (2, 1, b"two\n"), (1, 1, b"three "), (1, 1, b"piece\n")]
    copier = LogCopier(tmp_path, cap=1 << 20)
    copier.copy(multiplexed_messages(io.BytesIO(_frames(*stream[:2])).read))
    copier.checkpoint()
    # Copied but not checkpointed when the daemon died:
    copier.copy(multiplexed_messages(io.BytesIO(_frames(stream[2])).read))
    copier._logs.close()  # (a kill: no close, no checkpoint)
    assert (tmp_path / "stdout.log").read_bytes() == b"one\nthree "

    resumed = LogCopier(tmp_path, cap=1 << 20)
    assert (tmp_path / "stdout.log").read_bytes() == b"one\n"  # cut back to the checkpoint
    # The engine sends again everything at or after `since`: from stdout's last message on.
    assert resumed.since() == _since(0)
    resumed.copy(multiplexed_messages(io.BytesIO(_frames(*stream)).read))
    resumed.close()
    assert (tmp_path / "stdout.log").read_bytes() == b"one\nthree piece\n"
    assert (tmp_path / "stderr.log").read_bytes() == b"two\n"
    assert (tmp_path / "output.log").read_bytes() == b"one\ntwo\nthree piece\n"


def test_copier_keeps_a_stdout_message_stamped_before_a_stderr_one_written_earlier(
    tmp_path: Path,
) -> None:
    """The engine stamps streams separately: file order is not timestamp order across them."""
    copier = LogCopier(tmp_path, cap=1 << 20)
    # What the follow stream gave before the container's exit cut it short:
    copier.copy(multiplexed_messages(io.BytesIO(_frames((1, 0, b"a\n"), (2, 30, b"b\n"))).read))
    copier.restart_read()
    # Reading again from `since` (stdout's cursor: 0) gives the message stamped 20 too.
    assert copier.since() == _since(0)
    again = _frames((1, 0, b"a\n"), (2, 30, b"b\n"), (1, 20, b"c\n"))
    copier.copy(multiplexed_messages(io.BytesIO(again).read))
    copier.close()
    assert (tmp_path / "stdout.log").read_bytes() == b"a\nc\n"
    assert (tmp_path / "output.log").read_bytes() == b"a\nb\nc\n"


def _since(offset_ns: int) -> str:
    base = parse_timestamp(T0.encode())
    assert base is not None
    seconds, nanos = divmod(base + offset_ns, 1_000_000_000)
    return f"{seconds}.{nanos:09d}"


def test_cursor_skips_messages_already_copied_at_the_same_time() -> None:
    cursor = Cursor()
    assert [cursor.advance("stdout", t) for t in (5, 5, 6, 6)] == [True] * 4
    assert cursor.advance("stderr", 4)  # its own stream's order only
    again = cursor.rewound()
    assert [again.advance("stdout", t) for t in (6, 6, 6, 7)] == [False, False, True, True]
    assert again.streams["stdout"].count == 1
    assert again.streams["stdout"].time_ns == 7
    # Nothing on stderr yet: reading resumes a margin before stdout's last message.
    assert Cursor({"stdout": StreamCursor(20_000_000_000, 1)}).since() == "10.000000000"


def test_log_cap_applies_to_container_output(tmp_path: Path) -> None:
    copier = LogCopier(tmp_path, cap=8)
    copier.copy(multiplexed_messages(io.BytesIO(_frames((1, 0, b"0123456789\n"))).read))
    copier.close()
    assert (tmp_path / "stdout.log").read_bytes() == b"01234567"
    assert (tmp_path / job_dirs.TRUNCATED).exists()


def test_chunk_reader_serves_any_block_size() -> None:
    reader = ChunkReader(iter([b"abc", b"", b"defgh", b"ij"]))
    assert [reader.read(2), reader.read(4), reader.read(100), reader.read(5)] == [
        b"ab",
        b"cdef",
        b"ghij",
        b"",
    ]
    assert list(ChunkReader(iter([b"x" * 5, b"y" * 3]))) == [b"xxxxxyyy"]


# -- packaging xm.Container --------------------------------------------------------------------


def _package(image_path: str, script_dir: Path, monkeypatch: pytest.MonkeyPatch) -> xm.Executable:
    monkeypatch.setenv("XM_LAUNCH_SCRIPT", str(script_dir / "launch.py"))
    [executable] = packaging.package(
        [xm.Packageable(xm.Container(image_path=image_path), xm_local.Local.Spec())]
    )
    return executable


def test_container_tarball_is_made_absolute_and_its_digest_read(
    tmp_path: Path, layer: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "images").mkdir()
    path = tmp_path / "images" / "img.tar"
    images.write_image_tarball(path, fmt="both", layer=layer)
    executable = _package("images/img.tar", tmp_path, monkeypatch)
    assert isinstance(executable, xm.ImageArtifact)
    assert executable.image_path == str(path)
    assert executable.digest == images.manifest_digest(path)
    message = job_proto.artifact_to_proto(executable)
    assert message.oci_image.tarball_path == str(path)
    assert message.oci_image.digest == executable.digest


def test_container_reference_is_passed_to_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for reference in ("busybox", "repo/name:v1", "localhost:5000/a/b@sha256:" + "0" * 64):
        executable = _package(reference, tmp_path, monkeypatch)
        assert isinstance(executable, xm.ImageArtifact)
        assert executable.image_ref == reference
        assert executable.image_path is None
        assert job_proto.artifact_to_proto(executable).oci_image.reference == reference


def test_container_packaging_errors_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(packaging.PackagingError, match="does not exist; build it first"):
        _package("missing/image.tar", tmp_path, monkeypatch)
    with pytest.raises(packaging.PackagingError, match="neither an existing image tarball nor"):
        _package("Not A Reference", tmp_path, monkeypatch)
    (tmp_path / "junk.tar").write_text("junk")
    with pytest.raises(packaging.PackagingError, match="not a readable image tarball"):
        _package("junk.tar", tmp_path, monkeypatch)


def test_ports_bind_all_interfaces_only_on_request() -> None:
    job = _image_job(xm_local.Local(docker_options=xm_local.DockerOptions(ports={80: 8080})))
    naming = options.Naming("inst")
    local = options.create_kwargs(_spec(job), "sha256:a", naming, log_cap_bytes=1 << 20)
    assert local["ports"] == {"80/tcp": ("127.0.0.1", 8080)}
    job.executor.local.docker_options.all_interfaces = True
    every = options.create_kwargs(_spec(job), "sha256:a", naming, log_cap_bytes=1 << 20)
    assert every["ports"] == {"80/tcp": 8080}
    # What docker-py sends to the engine: HostIp 127.0.0.1, not 0.0.0.0 and [::].
    docker_types = pytest.importorskip("docker.types")
    host_config = docker_types.HostConfig(version="1.41", port_bindings=local["ports"])
    assert host_config["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}


@pytest.mark.parametrize(
    "host_path",
    [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/var/run",
        "/",
        "/srv/xm-state",
        "/srv/xm-state/jobs/1",
        "/srv",
        "/tmp/engine.sock",
    ],
)
def test_volumes_may_not_expose_the_engine_or_the_state_directory(host_path: str) -> None:
    docker_options = xm_local.DockerOptions(volumes={host_path: "/mnt"})
    job = _image_job(xm_local.Local(docker_options=docker_options))
    protected = options.protected_paths(Path("/srv/xm-state"), "unix:///tmp/engine.sock")
    with pytest.raises(ValueError, match=r"docker_options\.volumes") as refused:
        options.check_options(job, protected)
    assert "mount a narrower directory" in str(refused.value)


def test_volumes_elsewhere_are_allowed() -> None:
    docker_options = xm_local.DockerOptions(volumes={"/srv/data": "/data", "/var/lib/x": "/x"})
    job = _image_job(xm_local.Local(docker_options=docker_options))
    protected = options.protected_paths(Path("/srv/xm-state"), "")
    options.check_options(job, protected)
