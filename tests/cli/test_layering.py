"""The client package never imports the daemon: `xmanager` may be installed without it, and the
daemon may import the client's contract modules, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "xm_py" / "xmanager"


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_no_client_module_imports_the_daemon() -> None:
    offenders = {
        str(path.relative_to(CLIENT)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] == "launcher_server"
        )
        for path in CLIENT.rglob("*.py")
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}
