"""A hub configured for the reserved PostgreSQL backend says so in one line, and starts nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.main import build_app

runner = CliRunner()


@pytest.mark.parametrize("command", [["hub", "cases"], ["hub", "stations"], ["hub", "run"]])
def test_postgresql_backend_is_refused_clearly(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\nid = "HUB01"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[keys]\ndir = "{tmp_path / "keys"}"\n'
        '[mqtt]\nhost = "127.0.0.1"\ntls = false\n'
        '[store]\nbackend = "postgresql"\ndsn = "postgresql://cunlink@127.0.0.1/cunlink"\n'
        "[metrics]\nport = 0\n", encoding="utf-8")
    if command == ["hub", "run"]:
        from gateway.keys import init_keys

        init_keys("hub", "HUB01", tmp_path / "keys", force=False, now=datetime.now(UTC))
    result = runner.invoke(build_app(), [*command, "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert 'store backend "postgresql" is not available in this version' in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "state" / "hub.db").exists()
