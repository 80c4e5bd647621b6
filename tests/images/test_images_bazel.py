"""Images built by real Bazel: every example image validates, the quickstart image has the
promised layers and base, the tarball is accepted by skopeo, and bad input fails clearly."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.images import bazel
from xm_rules.tools import ocilib, validate_image

pytestmark = pytest.mark.bazel


def test_every_example_image_is_valid(images: dict[str, bazel.Image]) -> None:
    for image in images.values():
        digest = image.digest.read_text()
        assert digest.startswith("sha256:")
        assert len(digest) == 71
        for path in (image.tarball, image.layout):
            problems, summary = validate_image.validate(path)
            assert problems == [], f"{image.label} ({path}): {problems}"
            assert summary["digest"] == digest


def _read(image: bazel.Image, digest: str) -> bytes:
    return (image.layout / ocilib.blob_path(digest)).read_bytes()


def _manifest_and_config(image: bazel.Image) -> tuple[dict[str, Any], dict[str, Any]]:
    manifest = json.loads(_read(image, image.digest.read_text()))
    return manifest, json.loads(_read(image, manifest["config"]["digest"]))


def _entries(image: bazel.Image, digest: str) -> dict[str, tarfile.TarInfo]:
    blob = image.layout / ocilib.blob_path(digest)
    with gzip.open(blob) as stream, tarfile.open(fileobj=stream) as tar:
        return {"/" + m.name.rstrip("/"): m for m in tar.getmembers()}


def test_quickstart_layers_are_ordered_and_split(quickstart: bazel.Image) -> None:
    manifest, config = _manifest_and_config(quickstart)
    names = [h["created_by"].rsplit(": ", 1)[1] for h in config["history"]]
    assert names == ["packages", "base_files", "numpy", "first_party", "launcher"]
    sizes = [layer["size"] for layer in manifest["layers"]]
    assert sizes[3] < 0.01 * sum(sizes)  # first-party code is a sliver of the image
    assert config["config"]["Entrypoint"] == ["/usr/bin/python3.11", "/app/train"]
    assert config["config"]["WorkingDir"] == "/app/train.runfiles/_main"
    assert config["config"]["User"] == "1000:1000"

    runfiles = "/app/train.runfiles/"
    numpy = _entries(quickstart, manifest["layers"][2]["digest"])
    for path in numpy:
        assert runfiles.startswith(path + "/") or path.startswith(
            runfiles + "rules_python~~pip~pypi_numpy"
        )
    assert any(p.endswith("/numpy/__init__.py") for p in numpy)
    # The wheel is the one for the image's Python (Debian's 3.11) and platform (glibc, amd64).
    [wheel] = [p for p in numpy if p.endswith(".dist-info/WHEEL")]
    blob = quickstart.layout / ocilib.blob_path(manifest["layers"][2]["digest"])
    with gzip.open(blob) as stream, tarfile.open(fileobj=stream) as tar:
        metadata = tar.extractfile(wheel.lstrip("/")).read().decode()  # type: ignore[union-attr]
    tags = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Tag: ")]
    assert tags
    assert all(t.startswith("cp311-cp311-manylinux") and t.endswith("_x86_64") for t in tags)
    first_party = _entries(quickstart, manifest["layers"][3]["digest"])
    assert runfiles + "_main/examples/quickstart/train.py" in first_party
    assert not any("pypi" in p for p in first_party)
    launcher = _entries(quickstart, manifest["layers"][4]["digest"])
    assert launcher["/app/train"].mode == 0o755
    assert runfiles + "_repo_mapping" in launcher
    assert runfiles + "_main/examples/__init__.py" in launcher


def test_python_base_is_what_python_needs(quickstart: bazel.Image) -> None:
    manifest, _ = _manifest_and_config(quickstart)
    packages = _entries(quickstart, manifest["layers"][0]["digest"])
    base_files = _entries(quickstart, manifest["layers"][1]["digest"])
    assert packages["/usr/bin/python3"].linkname == "python3.11"
    assert packages["/usr/bin/python3.11"].isfile()
    for link in ("bin", "lib", "lib64", "sbin"):
        assert packages["/" + link].linkname == "usr/" + link
        assert not any(p.startswith(f"/{link}/") for p in packages)  # merged /usr, no duplicates
    assert "/var/lib/dpkg/status.d/python3.11-minimal" in packages
    assert base_files["/tmp"].mode == 0o1777
    blob = quickstart.layout / ocilib.blob_path(manifest["layers"][1]["digest"])
    with gzip.open(blob) as stream, tarfile.open(fileobj=stream) as tar:
        passwd = tar.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
        bundle = tar.extractfile("etc/ssl/certs/ca-certificates.crt").read()  # type: ignore[union-attr]
    assert "xm:x:1000:1000:" in passwd
    assert bundle.count(b"-----BEGIN CERTIFICATE-----") > 100


def test_podman_loads_the_tarball(quickstart: bazel.Image, tmp_path: Path) -> None:
    podman = shutil.which("podman")
    if podman is None:
        skip_or_fail("podman is not installed (./setup.sh test installs it)")
    assert podman is not None
    # A private store, so the test leaves the machine's podman images alone (podman wants a
    # short run root).
    run_root = Path(tempfile.mkdtemp(prefix="xm-pod-", dir="/tmp"))
    store = [f"--root={tmp_path / 'root'}", f"--runroot={run_root}", "--storage-driver=vfs"]
    try:
        _podman_load_and_check(podman, store, quickstart)
    finally:
        shutil.rmtree(run_root, ignore_errors=True)


def _podman_load_and_check(podman: str, store: list[str], quickstart: bazel.Image) -> None:
    load = subprocess.run(
        [podman, *store, "load", "--input", str(quickstart.tarball)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert load.returncode == 0, load.stderr
    assert "Loaded image" in load.stdout
    image_id = subprocess.run(
        [podman, *store, "images", "--no-trunc", "--format", "{{.ID}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # Podman's image id is the config's digest, as Docker's is.
    index = json.loads((quickstart.layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((quickstart.layout / "blobs" / "sha256" / manifest_digest).read_text())
    config = manifest["config"]["digest"]
    assert [f"sha256:{i.removeprefix('sha256:')}" for i in image_id] == [config]


def test_skopeo_accepts_the_tarball_as_an_oci_archive(
    quickstart: bazel.Image, tmp_path: Path
) -> None:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        skip_or_fail("skopeo is not installed (./setup.sh test installs it)")
    assert skopeo is not None
    copy = subprocess.run(
        [
            skopeo,
            "copy",
            "--quiet",
            f"oci-archive:{quickstart.tarball}",
            f"oci:{tmp_path / 'copy'}:latest",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert copy.returncode == 0, copy.stderr
    inspect = subprocess.run(
        [skopeo, "inspect", "--raw", f"oci-archive:{quickstart.tarball}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ocilib.sha256_digest(inspect.stdout.encode()) == quickstart.digest.read_text()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "//tests/images/bad:duplicate_paths",
            "duplicate path in layer: /etc/motd (file from @@//tests/images/bad:one.txt, "
            "file from @@//tests/images/bad:two.txt)",
        ),
        (
            "//tests/images/bad:unmapped_layer",
            "layers[numpy]: repository @@rules_python~~pip~pypi_numpy is not among the runfiles "
            "of @@//tests/images/bad:hello",
        ),
        (
            "//tests/images/bad:first_party_layer",
            "layers[mine]: @@//tests/images/bad:hello is in the main repository",
        ),
    ],
)
def test_bad_targets_fail_naming_the_problem(target: str, message: str) -> None:
    result = bazel.run(["build", *bazel.QUIET, target], check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_lock_entry_with_a_wrong_sha256_fails_naming_both_digests(tmp_path: Path) -> None:
    deb = tmp_path / "pool/main/x/xm-fixture/xm-fixture_1.0_all.deb"
    deb.parent.mkdir(parents=True)
    deb.write_bytes(b"not the locked file\n")
    result = bazel.run(
        [
            "build",
            *bazel.QUIET,
            f"--repo_env=XM_DEBIAN_MIRROR=file://{tmp_path}",
            "@xm_test_bad_sha//:packages",
        ],
        check=False,
    )
    assert result.returncode != 0
    actual = ocilib.sha256_digest(deb.read_bytes()).removeprefix("sha256:")
    assert (
        f"package xm-fixture 1.0: the mirror's file has sha256 {actual}, but the lock says 0000"
        in result.stderr
    )
