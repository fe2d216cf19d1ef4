"""Finding and running promtool (Debian's, unpacked by scripts/install-promtool.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "config" / "prometheus"


def promtool() -> str:
    """The promtool binary, or a test failure that says how to get it (never a skip: rules
    that nobody checks rot quietly)."""
    local = REPO / ".venv" / "bin" / "promtool"
    found = str(local) if local.is_file() else shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool not found (looked for .venv/bin/promtool and on PATH); "
            "run scripts/install-promtool.sh to unpack it from Debian's prometheus package",
            pytrace=False,
        )
    return found


def run(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
