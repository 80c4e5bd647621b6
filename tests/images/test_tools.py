"""The image tools on their own (no Bazel, no Docker): layers, Debian archives, image assembly
and the validator, including the errors they give for bad input."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from tests.images.debs import make_deb
from xm_rules.tools import (
    ca_bundle,
    deb_layer,
    deb_lock,
    debian,
    golden,
    image_config,
    list_layers,
    oci_layout,
    oci_tarball,
    ocilib,
    validate_image,
)

# --- Layers ---------------------------------------------------------------------------------


def _sample_layer(root: Path) -> ocilib.LayerBuilder:
    (root / "src").mkdir(exist_ok=True)
    script = root / "src" / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o775)
    data = root / "src" / "data.txt"
    data.write_text("data\n")
    data.chmod(0o600)
    builder = ocilib.LayerBuilder()
    builder.add_file("/app/bin/run.sh", src=str(script))
    builder.add_file("/app/data.txt", src=str(data))
    builder.add_file("/app/pkg/__init__.py", data=b"")
    builder.add_symlink("/usr/local/bin/run", "/app/bin/run.sh")
    builder.add_dir("/tmp", 0o1777)
    return builder


def _members(blob: Path) -> list[tarfile.TarInfo]:
    with gzip.open(blob) as stream, tarfile.open(fileobj=stream) as tar:
        return tar.getmembers()


def test_layer_is_deterministic_and_normalized(tmp_path: Path) -> None:
    digests = set()
    for attempt, (umask, tz) in enumerate([(0o022, "UTC"), (0o077, "America/Los_Angeles")]):
        old_umask, old_tz = os.umask(umask), os.environ.get("TZ")
        os.environ["TZ"] = tz
        time.tzset()
        try:
            root = tmp_path / str(attempt)
            root.mkdir()
            blob, descriptor = root / "layer.tar.gz", root / "layer.json"
            result = _sample_layer(root).write(blob, descriptor)
        finally:
            os.umask(old_umask)
            if old_tz is None:
                os.environ.pop("TZ")
            else:
                os.environ["TZ"] = old_tz
            time.tzset()
        digests.add((blob.read_bytes(), descriptor.read_text()))
        assert json.loads(descriptor.read_text()) == result
    assert len(digests) == 1

    blob = tmp_path / "0" / "layer.tar.gz"
    raw = blob.read_bytes()
    assert raw[3] & 0x08 == 0
    assert raw[4:8] == b"\0\0\0\0"
    members = _members(blob)
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names == [
        "app",
        "app/bin",
        "app/bin/run.sh",
        "app/data.txt",
        "app/pkg",
        "app/pkg/__init__.py",
        "tmp",
        "usr",
        "usr/local",
        "usr/local/bin",
        "usr/local/bin/run",
    ]
    by_name = {m.name: m for m in members}
    assert all(m.mtime == 0 and m.uid == m.gid == 0 and m.uname == m.gname == "" for m in members)
    assert by_name["app/bin/run.sh"].mode == 0o755  # executable source
    assert by_name["app/data.txt"].mode == 0o644  # not the source's 0600
    assert by_name["tmp"].mode == 0o1777
    assert by_name["usr/local/bin/run"].issym()
    assert by_name["usr/local/bin/run"].linkname == "/app/bin/run.sh"
    descriptor = json.loads((tmp_path / "0" / "layer.json").read_text())
    assert descriptor["digest"] == ocilib.sha256_digest(raw)
    assert descriptor["size"] == len(raw)
    assert descriptor["diffId"] == ocilib.sha256_digest(gzip.decompress(raw))


def test_layer_refuses_duplicate_paths(tmp_path: Path) -> None:
    builder = ocilib.LayerBuilder()
    builder.add_file("/etc/motd", data=b"one", origin="//a:one")
    builder.add_dir("/etc")  # a directory twice is fine
    with pytest.raises(ocilib.LayerError, match=r"duplicate path in layer: /etc/motd .*//a:one"):
        builder.add_file("etc/motd/", data=b"two", origin="//a:two")


def test_layer_refuses_files_inside_a_symlink_or_file(tmp_path: Path) -> None:
    builder = ocilib.LayerBuilder()
    builder.add_symlink("/lib", "usr/lib", origin="links")
    builder.add_file("/lib/libx.so", data=b"x", origin="pkg")
    with pytest.raises(
        ocilib.LayerError, match=r"/lib/libx.so \(pkg\) lies inside /lib, which is a symlink"
    ):
        builder.write(tmp_path / "l.tar.gz", tmp_path / "l.json")


@pytest.mark.parametrize("path", ["", "/", "a/../../etc"])
def test_layer_refuses_bad_paths(path: str) -> None:
    with pytest.raises(ocilib.LayerError):
        ocilib.LayerBuilder().add_file(path, data=b"")


def test_layer_tool_reports_a_missing_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xm_rules.tools import layer

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"files": [{"path": "/x", "src": str(tmp_path / "nope")}]}))
    args = [
        "--spec",
        str(spec),
        "--label",
        "//t:l",
        "--blob",
        str(tmp_path / "b"),
        "--descriptor",
        str(tmp_path / "d"),
    ]
    assert layer.main(args) == 1
    assert "/x: source file" in capsys.readouterr().err


# --- Debian -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [
        ("1.0", "1.0", 0),
        ("1.0-1", "1.0-2", -1),
        ("1.0~rc1", "1.0", -1),
        ("1:0.9", "2.0", 1),
        ("2.36-9+deb12u10", "2.36-9+deb12u9", 1),
        ("3.0.15-1~deb12u1", "3.0.15-1", -1),
        ("1.2.13.dfsg-1", "1.2.13-1", 1),
        ("10", "9", 1),
        ("1.0a", "1.0", 1),
    ],
)
def test_debian_version_order(a: str, b: str, sign: int) -> None:
    result = debian.compare_versions(a, b)
    assert (result > 0) - (result < 0) == sign
    assert debian.satisfies(a, "=", b) is (sign == 0)


def test_relations_parse() -> None:
    groups = debian.parse_relations(
        "libc6 (>= 2.34), python3:any (>> 3.1), awk | mawk [amd64], x (<< 2)"
    )
    assert [[str(r) for r in g] for g in groups] == [
        ["libc6 (>= 2.34)"],
        ["python3 (>> 3.1)"],
        ["awk", "mawk"],
        ["x (<< 2)"],
    ]
    with pytest.raises(debian.DebianError, match="cannot parse"):
        debian.parse_relations("Bad Name")


def _pkg(
    name: str, version: str = "1", depends: str = "", provides: str = "", priority: str = "optional"
) -> deb_lock.Package:
    return deb_lock.Package(
        name=name,
        version=version,
        architecture="amd64",
        archive="debian",
        suite="bookworm",
        path=f"pool/main/{name[0]}/{name}/{name}_{version}_amd64.deb",
        sha256="0" * 64,
        size=1,
        priority=priority,
        depends=debian.parse_relations(depends),
        provides=[g[0] for g in debian.parse_relations(provides)],
    )


def test_resolution_takes_newest_follows_alternatives_and_provides() -> None:
    universe = deb_lock.Universe(
        [
            _pkg("app", depends="libfoo (>= 2), awk, debconf | debconf-2.0, gone | libbar"),
            _pkg("libfoo", "1.5"),
            _pkg("libfoo", "2.1", depends="libc6"),  # e.g. from the -security suite
            _pkg("libc6", "2.36"),
            _pkg("gawk", provides="awk", priority="optional"),
            _pkg("mawk", provides="awk", priority="required"),
            _pkg("debconf"),
            _pkg("libbar"),
        ]
    )
    selected = deb_lock.resolve(universe, ["app"], exclude=["debconf"])
    assert {p.name: p.version for p in selected} == {
        "app": "1",
        "libbar": "1",
        "libc6": "2.36",
        "libfoo": "2.1",
        "mawk": "1",
    }


def test_resolution_names_what_is_missing() -> None:
    universe = deb_lock.Universe([_pkg("app", depends="libfoo (>= 3)"), _pkg("libfoo", "2")])
    with pytest.raises(
        deb_lock.LockError, match=r"cannot satisfy 'libfoo \(>= 3\)', needed by app 1"
    ):
        deb_lock.resolve(universe, ["app"], exclude=[])
    with pytest.raises(deb_lock.LockError, match="'nothere' is in none of the indices"):
        deb_lock.resolve(universe, ["nothere"], exclude=[])


def test_mirrors_come_from_apt_sources_without_host_names_in_code(tmp_path: Path) -> None:
    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://one.invalid/debian bookworm main\n"
        "deb-src http://src.invalid/debian bookworm main\n"
    )
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://two.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://two.invalid/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://off.invalid/debian\nSuites: sid\nEnabled: no\n"
    )
    sources = deb_lock.apt_sources(str(tmp_path))
    found = deb_lock.mirrors(sources, {"XM_DEBIAN_MIRROR": "http://override.invalid/d/"})
    assert [s.uri for s in found["debian"]] == [
        "http://override.invalid/d",
        "http://one.invalid/debian",
        "http://two.invalid/debian",
    ]
    assert [s.uri for s in found["debian-security"]] == ["http://two.invalid/debian-security"]
    assert found["debian"][1].signed_by == "/k.gpg"


def test_index_checksums_come_from_the_release_file() -> None:
    release = (
        "Origin: Debian\nSHA256:\n abc 12 main/binary-amd64/Packages\n"
        " def 5 main/binary-amd64/Packages.xz\n"
    )
    assert deb_lock.index_entry(release, "main/binary-amd64/Packages.xz") == ("def", 5)
    with pytest.raises(deb_lock.LockError, match="does not list"):
        deb_lock.index_entry(release, "main/binary-arm64/Packages.xz")


DebianTree = dict[str, bytes | str | None]


def _write_debs(tmp_path: Path, packages: dict[str, DebianTree]) -> list[tuple[str, str]]:
    result = []
    for name, tree in packages.items():
        path = tmp_path / f"{name}.deb"
        path.write_bytes(make_deb(name, tree))
        result.append((name, str(path)))
    return result


def test_deb_layer_merges_usr_and_writes_status(tmp_path: Path) -> None:
    debs = _write_debs(
        tmp_path,
        {
            "libc": {
                "lib": None,
                "lib/x86_64-linux-gnu": None,
                "lib/x86_64-linux-gnu/libc.so.6": b"ELF",
                "lib/x86_64-linux-gnu/libc.so": "-> libc.so.6",
                "lib/x86_64-linux-gnu/up": "-> ../../usr/share/x",
                "lib64": None,
                "lib64/ld-linux-x86-64.so.2": "-> /lib/x86_64-linux-gnu/ld.so",
                "usr/share/doc/libc/copyright": b"(c)",
                "usr/share/doc/libc/changelog.gz": b"log",
                "usr/share/man/man1/x.1.gz": b"man",
            },
            "tool": {"bin": None, "bin/toolbin": b"#!", "usr/bin": None, "usr/bin/toolbin": b"#!"},
        },
    )
    builder = deb_layer.build(debs, keep_docs=False)
    blob, descriptor = tmp_path / "l.tar.gz", tmp_path / "l.json"
    builder.write(blob, descriptor)
    members = {m.name: m for m in _members(blob)}
    assert members["bin"].linkname == "usr/bin"
    assert members["lib"].linkname == "usr/lib"
    assert members["lib64"].linkname == "usr/lib64"
    assert "usr/lib/x86_64-linux-gnu/libc.so.6" in members
    assert members["usr/lib/x86_64-linux-gnu/libc.so"].linkname == "libc.so.6"
    # ../../usr/share/x from /lib/x86_64-linux-gnu still means /usr/share/x from its new place.
    assert members["usr/lib/x86_64-linux-gnu/up"].linkname == "../../share/x"
    assert members["usr/lib64/ld-linux-x86-64.so.2"].linkname == "/lib/x86_64-linux-gnu/ld.so"
    assert "usr/share/doc/libc/copyright" in members
    assert "usr/share/doc/libc/changelog.gz" not in members
    assert not any(name.startswith("usr/share/man") for name in members)
    status = members["var/lib/dpkg/status.d/libc"]
    assert status.size > 0
    assert json.loads(descriptor.read_text())["size"] == blob.stat().st_size


def test_deb_layer_names_both_packages_of_a_conflict(tmp_path: Path) -> None:
    debs = _write_debs(tmp_path, {"one": {"usr/bin/x": b"1"}, "two": {"bin/x": b"2"}})
    with pytest.raises(ocilib.LayerError, match=r"/usr/bin/x \(file from one, file from two\)"):
        deb_layer.build(debs, keep_docs=False)


def test_deb_layer_refuses_a_file_that_is_not_a_deb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "bogus.deb"
    bogus.write_bytes(b"<html>not found</html>")
    args = [
        "--deb",
        f"bogus={bogus}",
        "--blob",
        str(tmp_path / "b"),
        "--descriptor",
        str(tmp_path / "d"),
    ]
    assert deb_layer.main(args) == 1
    assert "is not a .deb" in capsys.readouterr().err


def test_ca_bundle_concatenates_in_name_order(tmp_path: Path) -> None:
    deb = tmp_path / "ca.deb"
    mozilla = "usr/share/ca-certificates/mozilla/"
    deb.write_bytes(
        make_deb(
            "ca-certificates", {mozilla + "B.crt": b"bee", mozilla + "A.crt": b"ay\n", "etc/x": b""}
        )
    )
    assert ca_bundle.bundle(str(deb)) == b"ay\nbee\n"
    empty = tmp_path / "empty.deb"
    empty.write_bytes(make_deb("other", {"etc/x": b""}))
    with pytest.raises(debian.DebianError, match="is it ca-certificates"):
        ca_bundle.bundle(str(empty))


# --- Images and the validator -----------------------------------------------------------------


def _image(
    tmp_path: Path, layers: list[tuple[Path, Path]], base_config: Path | None = None
) -> dict[str, Path]:
    """Assembles an image of (blob, descriptor) layers, as the rule's three actions do."""
    tmp_path.mkdir(exist_ok=True)
    spec = {
        "label": "//t:image",
        "base_config": str(base_config) if base_config else None,
        "layers": [
            {"name": f"layer{i}", "descriptor": str(d), "blob": str(b)}
            for i, (b, d) in enumerate(layers)
        ],
        "entrypoint": ["/app/run"],
        "cmd": [],
        "env": {"PATH": "/app:${PATH}"},
        "workdir": "/app",
        "user": "1000",
        "labels": {},
        "annotations": {},
        "os": "",
        "architecture": "",
        "repo_tags": ["bazel/t/image:latest"],
    }
    spec_path = tmp_path / "image.json"
    spec_path.write_text(json.dumps(spec))
    out = {name: tmp_path / f"{name}.out" for name in ("config", "manifest", "index", "digest")}
    out["docker_manifest"] = tmp_path / "docker_manifest.out"
    outputs = [f"--out-{name.replace('_', '-')}={path}" for name, path in out.items()]
    assert image_config.main(["--spec", str(spec_path), *outputs]) == 0
    out["tarball"] = tmp_path / "image.tar"
    out["layout"] = tmp_path / "layout"
    assert oci_tarball.main(["--spec", str(spec_path), "--out", str(out["tarball"])]) == 0
    assert oci_layout.main(["--spec", str(spec_path), "--out", str(out["layout"])]) == 0
    return out


def _built_layers(tmp_path: Path) -> list[tuple[Path, Path]]:
    layers = []
    for number in range(2):
        builder = ocilib.LayerBuilder()
        builder.add_file(f"/app/file{number}", data=f"content {number}\n".encode())
        blob, descriptor = tmp_path / f"l{number}.tar.gz", tmp_path / f"l{number}.json"
        builder.write(blob, descriptor)
        layers.append((blob, descriptor))
    return layers


def test_assembled_image_is_valid(tmp_path: Path) -> None:
    out = _image(tmp_path, _built_layers(tmp_path))
    for path in (out["tarball"], out["layout"]):
        problems, summary = validate_image.validate(path)
        assert problems == []
        assert summary["digest"] == out["digest"].read_text()
        assert summary["layers"] == 2
    config = json.loads(out["config"].read_text())
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["config"]["Env"] == ["PATH=/app:"]
    docker = json.loads((out["docker_manifest"]).read_text())
    assert docker[0]["RepoTags"] == ["bazel/t/image:latest"]
    # The layout links the layer blobs rather than copying them.
    blob = out["layout"] / ocilib.blob_path(
        json.loads((tmp_path / "l0.json").read_text())["digest"]
    )
    assert blob.stat().st_ino == (tmp_path / "l0.tar.gz").stat().st_ino


def test_image_on_a_base_inherits_and_checks_its_config(tmp_path: Path) -> None:
    layers = _built_layers(tmp_path)
    base = _image(tmp_path / "base", layers[:1])
    top = tmp_path / "top"
    out = _image(top, layers, base_config=base["config"])
    config = json.loads(out["config"].read_text())
    assert config["config"]["Env"] == ["PATH=/app:/app:"]
    assert len(config["history"]) == 2  # the base's, then this image's
    # A base config that does not describe the base's layers is refused.
    spec = json.loads((top / "image.json").read_text())
    spec["layers"].reverse()
    with pytest.raises(image_config.ConfigError, match="does not list the diff_ids"):
        image_config.assemble(spec)


def _rewrite_tar(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    with tarfile.open(src) as old, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as new:
        for member in old.getmembers():
            data = old.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name in change:
                data = change[member.name]
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if data is not None else None)


def test_validator_finds_corruption(tmp_path: Path) -> None:
    out = _image(tmp_path, _built_layers(tmp_path))
    manifest = json.loads(out["manifest"].read_text())
    layer_path = ocilib.blob_path(manifest["layers"][0]["digest"])
    config_path = ocilib.blob_path(manifest["config"]["digest"])

    corrupt = tmp_path / "corrupt.tar"
    _rewrite_tar(out["tarball"], corrupt, {layer_path: gzip.compress(b"\0" * 1024, mtime=0)})
    problems, _ = validate_image.validate(corrupt)
    assert any("sha256 is" in p for p in problems)
    assert any("diff_id in the config" in p for p in problems)

    config = json.loads(out["config"].read_text())
    config["rootfs"]["diff_ids"].pop()
    bad_config = tmp_path / "bad_config.tar"
    _rewrite_tar(out["tarball"], bad_config, {config_path: json.dumps(config).encode()})
    problems, _ = validate_image.validate(bad_config)
    assert any("2 layers but 1 diff_ids" in p for p in problems)

    docker = json.loads(out["docker_manifest"].read_text())
    docker[0]["Layers"].reverse()
    docker[0]["RepoTags"] = ["Not A Tag"]
    bad_docker = tmp_path / "bad_docker.tar"
    _rewrite_tar(out["tarball"], bad_docker, {"manifest.json": json.dumps(docker).encode()})
    problems, _ = validate_image.validate(bad_docker)
    assert "manifest.json: Layers differ from the OCI manifest's layers" in problems
    assert any("is not a valid name:tag" in p for p in problems)


def test_validator_finds_duplicate_paths_and_missing_files(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for _ in range(2):
            info = tarfile.TarInfo("etc")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
    blob = tmp_path / "dup.tar.gz"
    blob.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    descriptor = tmp_path / "dup.json"
    data = blob.read_bytes()
    descriptor.write_text(
        json.dumps(
            {
                "mediaType": ocilib.OCI_LAYER_GZIP,
                "digest": ocilib.sha256_digest(data),
                "size": len(data),
                "diffId": ocilib.sha256_digest(raw.getvalue()),
            }
        )
    )
    out = _image(tmp_path, [(blob, descriptor)])
    problems, _ = validate_image.validate(out["tarball"])
    assert any("duplicate path /etc" in p for p in problems)

    (out["layout"] / "index.json").unlink()
    problems, _ = validate_image.validate(out["layout"])
    assert problems == ["index.json is missing"]


# --- Listings and goldens ---------------------------------------------------------------------


def test_listing_and_golden_comparison(tmp_path: Path) -> None:
    blob = tmp_path / "layer.tar.gz"
    _sample_layer(tmp_path).write(blob, tmp_path / "layer.json")
    text = list_layers.listing(str(blob))
    assert "/tmp 1777 dir\n" in text
    assert "/usr/local/bin/run 0777 symlink -> /app/bin/run.sh\n" in text
    assert "/app/pkg/__init__.py 0644 file 0 sha256:e3b0c442" in text

    actual, want = tmp_path / "actual", tmp_path / "golden"
    actual.mkdir()
    want.mkdir()
    (actual / "00_a.txt").write_text(text)
    (want / "00_a.txt").write_text(text)
    assert golden.compare(actual, want, "UPDATE") == []
    (want / "00_a.txt").write_text(text.replace("1777", "0777"))
    (want / "01_gone.txt").write_text("")
    problems = golden.compare(actual, want, "UPDATE")
    assert problems[0] == "01_gone.txt: golden file of a layer the image no longer has"
    assert "-/tmp 0777 dir" in problems[1]
    assert "+/tmp 1777 dir" in problems[1]
    assert problems[-1].endswith("UPDATE")


def test_generated_files_are_executable_only_when_they_look_like_programs(tmp_path: Path) -> None:
    builder = ocilib.LayerBuilder()
    for name, content in [
        ("script", b"#!/bin/sh\n"),
        ("elf", b"\x7fELF\x02"),
        ("data", b"x = 1\n"),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        path.chmod(0o555)  # as Bazel leaves its outputs
        builder.add_file(f"/out/{name}", src=str(path), generated=True)
    modes = {path.rsplit("/", 1)[1]: e.mode for path, e in builder.entries.items()}
    assert modes == {"script": 0o755, "elf": 0o755, "data": 0o644}
