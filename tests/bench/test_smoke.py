"""Every benchmark still runs: `--quick` of bench/store.py, api.py, envelope.py and devices.py
as a subprocess, checked for its figures (a bench that only breaks when someone measures is how
a published figure goes stale)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize(("script", "expected"), [
    ("store.py", "durable cases per second"),
    ("api.py", "case creations with durable commit"),
    ("envelope.py", "seal + open"),
    ("devices.py", "reads/s"),
])
def test_quick_run_prints_its_figures(script: str, expected: str) -> None:
    result = subprocess.run([sys.executable, str(BENCH / script), "--quick"],
                            capture_output=True, text=True, timeout=240, check=False,
                            cwd=BENCH.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert expected in result.stdout
    assert any(ch.isdigit() for ch in result.stdout)
