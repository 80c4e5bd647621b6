"""The launcher contract: generated modules up to date, everything documented, room to grow."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO = "xmanager/launcher/v1/launcher.proto"
GENERATED = ("launcher_pb2.py", "launcher_pb2.pyi", "launcher_pb2_grpc.py")


def test_committed_modules_are_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--out_dir", str(tmp_path)],
        check=True,
    )
    committed = ROOT / "xm_py" / "xmanager" / "launcher" / "v1"
    fresh = tmp_path / "xmanager" / "launcher" / "v1"
    stale = [n for n in GENERATED if (fresh / n).read_bytes() != (committed / n).read_bytes()]
    assert not stale, f"stale modules {stale}: run `.venv/bin/python proto/generate.py`"


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path_factory.mktemp("descriptor") / "launcher.bin"
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    argv = [
        "protoc",
        f"--proto_path={ROOT / 'proto'}",
        f"--proto_path={well_known}",
        "--include_source_info",
        f"--descriptor_set_out={out}",
        PROTO,
    ]
    assert protoc.main(argv) == 0
    (file,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return file


def _undocumented(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    documented = {
        tuple(loc.path)
        for loc in file.source_code_info.location
        if loc.leading_comments.strip() or loc.trailing_comments.strip()
    }
    missing: list[str] = []

    def check(path: tuple[int, ...], name: str) -> None:
        if path not in documented:
            missing.append(name)

    def walk_message(message: descriptor_pb2.DescriptorProto, path: tuple[int, ...]) -> None:
        # Request and response messages are documented by their RPC.
        if not message.name.endswith(("Request", "Response")):
            check(path, message.name)
        for i, field in enumerate(message.field):
            if not message.name.endswith("Entry"):
                check((*path, 2, i), f"{message.name}.{field.name}")

    for i, message in enumerate(file.message_type):
        walk_message(message, (4, i))
    for i, enum in enumerate(file.enum_type):
        check((5, i), enum.name)
        for j, value in enumerate(enum.value):
            check((5, i, 2, j), value.name)
    for i, service in enumerate(file.service):
        check((6, i), service.name)
        for j, method in enumerate(service.method):
            check((6, i, 2, j), method.name)
    return missing


def test_everything_is_documented(contract: descriptor_pb2.FileDescriptorProto) -> None:
    missing = _undocumented(contract)
    assert not missing, f"add a comment in {PROTO} for: {', '.join(missing)}"


def test_every_message_reserves_the_extension_range(
    contract: descriptor_pb2.FileDescriptorProto,
) -> None:
    lacking = [
        m.name
        for m in contract.message_type
        if not any(r.start == 1000 and r.end == 2000 for r in m.reserved_range)
    ]
    assert not lacking, f"reserve 1000 to 1999 in: {lacking}"


def test_enums_start_with_unspecified(contract: descriptor_pb2.FileDescriptorProto) -> None:
    for enum in contract.enum_type:
        assert enum.value[0].number == 0
        assert enum.value[0].name.endswith("_UNSPECIFIED"), enum.name
