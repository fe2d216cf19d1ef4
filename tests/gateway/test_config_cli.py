"""`cunlink config check`: as a technician runs it (a real process) for the main paths, and
in-process (typer's CliRunner, much faster) for the variations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gateway.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
CUNLINK = Path(sys.executable).with_name("cunlink")
LANG_VARS = ("CUNLINK_LANG", "LC_ALL", "LC_MESSAGES", "LANG")
EN = {"LANG": "en_US.UTF-8"}
ZH = {"LANG": "zh_CN.UTF-8"}

BAD = """
[station]
id = "v001"

[mqtt]
host = "broker.example"
keepalive = "abc"
keepalvie = 30

[log]
level = "inf"
"""


def run(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # Hermetic: the caller's own CUNLINK__ overrides and language must not leak into the check.
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("CUNLINK__") and k not in LANG_VARS}
    return subprocess.run(
        [str(CUNLINK), "config", "check", *args],
        cwd=cwd,
        env={**base, **EN, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_shipped_station_example_passes() -> None:
    # One real process per outcome keeps the suite fast; the hub example goes in-process below.
    result = run("config/station.example.toml")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(
        "# effective station configuration from config/station.example.toml\n"
    )
    data = tomllib.loads(result.stdout)
    assert data["station"]["id"] == "village01"
    assert data["transfer"]["window"] == 3


def test_invalid_file_lists_every_error_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "station.toml").write_text(BAD, encoding="utf-8")
    result = run("station.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "station.toml: unknown key [mqtt] keepalvie; did you mean keepalive?",
        'station.toml: [mqtt] keepalive: expected an integer from 5 to 600, got "abc"',
        'station.toml: [log] level: expected one of "debug", "info", "warning", "error", '
        'got "inf"; did you mean "info"?',
        "station.toml: [mqtt] ca_file: required when tls = true; expected a path to the county "
        "CA certificate (PEM), got nothing; set it, or set tls = false (only for a test broker)",
        "station.toml: [mqtt] cert_file: required when tls = true; expected a path to this "
        "machine's client certificate (PEM), got nothing; set it, or set tls = false (only for "
        "a test broker)",
        "station.toml: [mqtt] key_file: required when tls = true; expected a path to this "
        "machine's TLS private key (PEM), got nothing; set it, or set tls = false (only for a "
        "test broker)",
        "6 problems found in station.toml; fix them and run `cunlink config check` again",
    ]
    assert "Traceback" not in result.stderr


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run `cunlink config check ARGS` in-process from the repository root."""
    for name in list(os.environ):
        if name.startswith("CUNLINK__") or name in LANG_VARS:
            monkeypatch.delenv(name)
    monkeypatch.chdir(ROOT)

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(app, ["config", "check", *args], env={**EN, **(env or {})})

    return invoke


def test_json_output_for_valid_and_invalid_files(
    check: Callable[..., Result], tmp_path: Path
) -> None:
    ok = check("config/hub.example.toml", "--json")
    assert ok.exit_code == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert (data["ok"], data["role"]) == (True, "hub")
    assert data["config"]["mqtt"]["share_group"] == "cunlink-hub"
    (tmp_path / "station.toml").write_text(BAD, encoding="utf-8")
    bad = check(str(tmp_path / "station.toml"), "--json")
    assert bad.exit_code == 1
    data = json.loads(bad.stdout)
    assert (data["ok"], data["role"], len(data["errors"])) == (False, "station", 6)


def test_secrets_are_redacted_and_env_overrides_apply(
    check: Callable[..., Result], tmp_path: Path
) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        '[hub]\nid = "c"\n[mqtt]\nhost = "b"\ntls = false\n[store]\nbackend = "postgresql"\n',
        encoding="utf-8",
    )
    env = {"CUNLINK__STORE__DSN": "postgresql://hub:pa55@db/x", "CUNLINK__MQTT__KEEPALIVE": "20"}
    result = check(str(path), env=env)
    assert result.exit_code == 0, result.stderr
    data = tomllib.loads(result.stdout)
    assert data["store"]["dsn"] == "***"
    assert data["mqtt"]["keepalive"] == 20
    assert "pa55" not in result.stdout


def test_bad_override_missing_file_and_wrong_role_exit_1(
    check: Callable[..., Result], tmp_path: Path
) -> None:
    bad_env = check("config/station.example.toml", env={"CUNLINK__MQTT__KEEPALIVE": "abc"})
    assert bad_env.exit_code == 1
    assert bad_env.stderr.splitlines() == [
        "environment variable CUNLINK__MQTT__KEEPALIVE: [mqtt] keepalive: expected an integer "
        'from 5 to 600, got "abc"',
        "1 problem found in config/station.example.toml; fix it and run `cunlink config check` "
        "again",
    ]
    missing = check(str(tmp_path / "nope.toml"))
    assert missing.exit_code == 1
    assert "cannot read the file: No such file or directory" in missing.stderr
    wrong_role = check("config/hub.example.toml", "--role", "station")
    assert wrong_role.exit_code == 1
    assert "config/hub.example.toml: unknown section [hub]" in wrong_role.stderr
    for result in (bad_env, missing, wrong_role):
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_syntax_error_exit_1_with_position(check: Callable[..., Result], tmp_path: Path) -> None:
    (tmp_path / "station.toml").write_text('[station]\nid = "v1\n', encoding="utf-8")
    result = check(str(tmp_path / "station.toml"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{tmp_path / 'station.toml'}: line 2, column ")
    assert result.stdout == ""
