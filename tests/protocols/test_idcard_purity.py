"""protocols/idcard is pure: no module in it imports I/O, clocks, logging or processes."""

from __future__ import annotations

import ast
from pathlib import Path

import protocols.idcard

FORBIDDEN = {"asyncio", "serial", "socket", "sqlite3", "time", "logging", "os", "subprocess"}


def test_protocols_idcard_imports_nothing_with_side_effects() -> None:
    package = Path(protocols.idcard.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 9
    for module in modules:
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{module.name} imports {name}"
