"""`cunlink keys init / show`: what a technician sees, including one-line errors and exit 1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli.keys_cmd import app
from gateway.keys import enrollment_path, load_enrollment

runner = CliRunner(env={"LANG": "en_US.UTF-8", "LC_ALL": None, "LC_MESSAGES": None,
                        "CUNLINK_LANG": None})
EN_ENV = {k: v for k, v in os.environ.items()
          if k not in ("CUNLINK_LANG", "LC_ALL", "LC_MESSAGES")} | {"LANG": "en_US.UTF-8"}


def test_init_prints_key_ids_and_the_enrollment_path(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    result = runner.invoke(app, ["init", "--role", "station", "--id", "ST001", "--dir", str(d)])
    assert result.exit_code == 0, result.output
    enrollment = load_enrollment(enrollment_path(d, "ST001"))
    assert f"key id {enrollment.signing_key_id.hex()}" in result.stdout
    assert f"key id {enrollment.encryption_key_id.hex()}" in result.stdout
    assert f"enrollment file: {d / 'ST001.enrollment.json'}" in result.stdout
    assert "give it to the hub" in result.stdout


def test_second_init_fails_with_one_line_and_exit_1(tmp_path: Path) -> None:
    args = ["init", "--role", "hub", "--id", "hub-0571", "--dir", str(tmp_path / "k")]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "already exists" in lines[0] and "--force" in lines[0]
    assert "Traceback" not in result.output
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output


def test_bad_id_fails_with_one_line(tmp_path: Path) -> None:
    args = ["init", "--role", "station", "--id", "ST 001", "--dir", str(tmp_path / "k")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert re.fullmatch(r"error: id: expected an id of .*, got 'ST 001'\n", result.stderr)


def test_show_prints_public_information_only(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    runner.invoke(app, ["init", "--role", "station", "--id", "ST001", "--dir", str(d)])
    enrollment = load_enrollment(enrollment_path(d, "ST001"))
    result = runner.invoke(app, ["show", "--dir", str(d)])
    assert result.exit_code == 0, result.output
    assert "station 'ST001', created" in result.stdout
    assert enrollment.signing_key_id.hex() in result.stdout
    assert "signing.key mode 0600 ok, encryption.key mode 0600 ok" in result.stdout
    assert "PRIVATE" not in result.stdout
    for secret in ("signing.key", "encryption.key"):
        body = (d / secret).read_text().splitlines()[1]
        assert body not in result.stdout


def test_show_flags_an_unsafe_private_key(tmp_path: Path) -> None:
    runner.invoke(app, ["init", "--role", "station", "--id", "ST001", "--dir", str(tmp_path)])
    (tmp_path / "signing.key").chmod(0o644)
    result = runner.invoke(app, ["show", "--dir", str(tmp_path)])
    assert f"signing.key mode 0644 UNSAFE: run `chmod 600 {tmp_path / 'signing.key'}`" in (
        result.stdout
    )


def test_show_on_an_empty_directory_fails_with_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "cunlink keys init" in result.stderr


def test_the_installed_command_exits_1_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    cunlink = Path(sys.executable).parent / "cunlink"
    args = [str(cunlink), "keys", "init", "--role", "station", "--id", "ST001"]
    first = subprocess.run([*args, "--dir", str(tmp_path / "k")], capture_output=True, text=True,
                           env=EN_ENV)
    assert first.returncode == 0, first.stderr
    assert "enrollment file:" in first.stdout
    again = subprocess.run([*args, "--dir", str(tmp_path / "k")], capture_output=True, text=True,
                           env=EN_ENV)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and again.stderr.startswith("error: ")
    assert "Traceback" not in again.stderr
