"""`cunlink init` as a technician runs it: with flags, interactively in a real terminal
(a pseudo-terminal), in Chinese or English, and refusing to overwrite what exists."""

from __future__ import annotations

import os
import pwd
import select
import shutil
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.config import load_station_config
from gateway.keys import enrollment_path, init_keys, load_enrollment, load_identity
from tests.conftest import CountyPki

runner = CliRunner()
EN = {"LANG": "en_US.UTF-8"}
REPO = Path(__file__).resolve().parents[2]


def init(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, [
        "init", "--config", str(tmp / "etc" / "station.toml"), "--station-id", "ST001",
        "--broker-host", "mqtt.county.example", "--state-dir", str(tmp / "state"), *extra,
    ], env=env or EN)
    return result.exit_code, result.stdout, result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_a_config_that_loads_keys_and_prints_the_next_steps(tmp_path: Path) -> None:
    code, out, err = init(tmp_path, "--broker-port", "8884", "--idcard", "--idcard-port",
                          "/dev/ttyUSB0", "--camera")
    assert code == 0, err
    etc = tmp_path / "etc"
    config = etc / "station.toml"
    assert mode(config) == 0o640
    cfg = load_station_config(config, env={})
    assert (cfg.station.id, cfg.station.state_dir, cfg.station.language) == (
        "ST001", tmp_path / "state", "zh-CN")
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("mqtt.county.example", 8884, True)
    assert (cfg.mqtt.ca_file, cfg.mqtt.cert_file, cfg.mqtt.key_file) == (
        etc / "tls" / "ca.pem", etc / "tls" / "station.pem", etc / "tls" / "station.key")
    assert (cfg.keys.dir, cfg.keys.hub_enrollment) == (etc / "keys", etc / "hub.enrollment.json")
    assert cfg.devices.idcard.enabled and cfg.devices.idcard.port == Path("/dev/ttyUSB0")
    assert cfg.devices.camera.enabled and not cfg.devices.printer.enabled
    assert cfg.transfer.window == 3  # untouched keys keep their defaults
    # Keys: private directory and files, loadable, and an enrollment file that matches them.
    keys = etc / "keys"
    assert mode(keys) == 0o700
    assert mode(keys / "signing.key") == mode(keys / "encryption.key") == 0o600
    identity = load_identity(keys, "ST001")
    enrollment = load_enrollment(enrollment_path(keys, "ST001"))
    assert enrollment.role == "station" and enrollment.id == "ST001"
    assert enrollment.signing_public == identity.signing_key.public_key().public_bytes_raw()
    assert mode(tmp_path / "state") == 0o750
    # One token, in the file and printed once.
    [token] = cfg.api.tokens
    assert token.name == "terminal-1" and len(token.token) >= 32
    assert out.count(token.token) == 1
    assert out.startswith("Station ST001 is set up:\n")
    for expected in (
        f"  enrollment file  {enrollment_path(keys, 'ST001')}",
        "       cunlink hub enroll ST001.enrollment.json --config hub.toml",
        "       cunlink pki issue --dir PKI --station ST001",
        f"       PKI/clients/ST001.key -> {etc / 'tls' / 'station.key'}   (chmod 600)",
        f"       cunlink doctor --config {config}",
        "       systemctl enable --now cunlink",
    ):
        assert expected in out.splitlines(), expected
    assert not list(etc.glob("*tmp*")), "no temporary file left behind"


def test_existing_config_or_keys_are_not_replaced_without_force(tmp_path: Path) -> None:
    assert init(tmp_path)[0] == 0
    config = tmp_path / "etc" / "station.toml"
    signing = tmp_path / "etc" / "keys" / "signing.key"
    before = (config.read_bytes(), signing.read_bytes())
    code, out, err = init(tmp_path, "--broker-port", "1883")
    assert code == 1 and out == ""
    assert err.startswith(f"error: already there: {config}, {signing}, ")
    assert "--force" in err and "nothing was written" in err
    assert (config.read_bytes(), signing.read_bytes()) == before
    code, _, err = init(tmp_path, "--broker-port", "1883", "--force")
    assert code == 0, err
    assert signing.read_bytes() != before[1]
    assert load_station_config(config, env={}).mqtt.port == 1883
    # Keys alone (a config deleted by mistake) are protected too.
    config.unlink()
    code, _, err = init(tmp_path)
    assert code == 1 and str(signing) in err and not config.exists()


def test_missing_and_bad_values_fail_before_anything_is_written(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "--config", str(tmp_path / "etc" / "s.toml")], env=EN)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: missing --station-id, --broker-host; give them as options (or run "
        "`cunlink init` in a terminal to be asked); nothing was written\n")
    code, _, err = init(tmp_path, "--station-id", "ST-01")
    assert code == 2 and "station id 'ST-01'" in err and "no '-'" in err
    code, _, err = init(tmp_path, "--broker-host", "mqtt://county:8883")
    assert code == 2 and "broker host 'mqtt://county:8883'" in err
    code, _, err = init(tmp_path, "--terminal", "counter 1")
    assert code == 2 and "--terminal 'counter 1'" in err
    (tmp_path / "not-a-cert.pem").write_text("hello")
    code, _, err = init(tmp_path, "--copy-ca", str(tmp_path / "not-a-cert.pem"))
    assert code == 1 and f"{tmp_path / 'not-a-cert.pem'} is not usable" in err
    assert not (tmp_path / "etc").exists() and not (tmp_path / "state").exists()


def test_copies_the_countys_files_into_place(tmp_path: Path, pki: CountyPki) -> None:
    cert = pki.issue("ST001")
    init_keys("hub", "HUB01", tmp_path / "hub-keys", force=False, now=_now())
    init_keys("station", "ST777", tmp_path / "other-keys", force=False, now=_now())
    # The station's own kind of enrollment file is refused where the hub's belongs.
    code, _, err = init(tmp_path, "--copy-hub-enrollment",
                        str(enrollment_path(tmp_path / "other-keys", "ST777")))
    assert code == 1 and "is the enrollment of station ST777, not of the hub" in err
    code, out, err = init(tmp_path, "--copy-ca", str(cert.ca), "--copy-cert", str(cert.cert),
                          "--copy-key", str(cert.key), "--copy-hub-enrollment",
                          str(enrollment_path(tmp_path / "hub-keys", "HUB01")))
    assert code == 0, err
    tls = tmp_path / "etc" / "tls"
    assert (tls / "ca.pem").read_bytes() == cert.ca.read_bytes()
    assert (tls / "station.pem").read_bytes() == cert.cert.read_bytes()
    assert (tls / "station.key").read_bytes() == cert.key.read_bytes()
    assert mode(tls / "station.key") == 0o600 and mode(tls / "station.pem") == 0o644
    assert load_enrollment(tmp_path / "etc" / "hub.enrollment.json").id == "HUB01"
    assert f"       {tls / 'station.key'} (already copied)" in out.splitlines()


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init", "--config", "etc/station.toml", "--station-id", "ST001",
                                 "--broker-host", "10.1.2.3", "--state-dir", "state",
                                 "--keys-dir", "k"], env=EN)
    assert result.exit_code == 0, result.output
    monkeypatch.chdir("/")
    cfg = load_station_config(tmp_path / "etc" / "station.toml", env={})
    assert cfg.station.state_dir == tmp_path / "state" and cfg.keys.dir == tmp_path / "k"
    assert cfg.mqtt.ca_file == tmp_path / "etc" / "tls" / "ca.pem"


def test_in_chinese(tmp_path: Path) -> None:
    code, out, _ = init(tmp_path, env={"LANG": "zh_CN.UTF-8"})
    assert code == 0
    assert out.startswith("站点 ST001 已设置：\n")
    assert "后续步骤：" in out and "  3. 检查整体设置：" in out
    code, _, err = init(tmp_path, env={"LC_ALL": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"})
    assert code == 1 and err.startswith("错误：已存在：")


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another account needs root")
def test_owner_gets_the_keys_and_reads_the_config(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    code, _, err = init(tmp_path, "--owner", "nobody")
    assert code == 0, err
    keys = tmp_path / "etc" / "keys"
    for path in (keys, keys / "signing.key", tmp_path / "state"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
    config = (tmp_path / "etc" / "station.toml").stat()
    assert (config.st_uid, config.st_gid) == (0, nobody.pw_gid)
    code, _, err = init(tmp_path / "x", "--owner", "no-such-account-here")
    assert code == 2 and "no such account" in err


def _now() -> datetime:
    return datetime.now(UTC)


# -- interactive, in a real terminal -------------------------------------------------------------


def _read_until(fd: int, wanted: bytes, seen: bytearray, deadline: float) -> None:
    while wanted not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {wanted!r}; got {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            assert chunk, f"terminal closed while waiting for {wanted!r}; got {bytes(seen)!r}"
            seen += chunk


def test_interactive_prompts_ask_for_what_is_missing_and_recheck_answers(tmp_path: Path) -> None:
    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUNLINK", "LC_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "init", "--config", str(tmp_path / "station.toml"),
         "--state-dir", str(tmp_path / "state")],
        stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env | EN, close_fds=True)
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + 60
    try:
        for prompt, answer in (
            (b"Station id (from the county, e.g. ST001): ", b"ST-9"),  # '-' is refused ...
            (b"no '-'", b""),
            (b"Station id (from the county, e.g. ST001): ", b"ST009"),  # ... and asked again
            (b"County MQTT broker (host name or IP address): ", b"mqtt.county.example"),
            (b"Broker port [8883]: ", b""),
            (b"Is an ID-card reader connected? [y/N]: ", b"y"),
            (b"its device [/dev/cunlink-idcard]: ", b"/dev/ttyUSB3"),
            (b"Is a receipt printer connected (serial/USB)? [y/N]: ", b""),
            (b"Is a document camera connected (USB)? [y/N]: ", b"n"),
        ):
            _read_until(master, prompt, seen, deadline)
            del seen[: seen.index(prompt) + len(prompt)]
            if answer or prompt != b"no '-'":
                os.write(master, answer + b"\n")
        _read_until(master, b"systemctl enable --now cunlink", seen, deadline)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    cfg = load_station_config(tmp_path / "station.toml", env={})
    assert (cfg.station.id, cfg.mqtt.host, cfg.mqtt.port) == ("ST009", "mqtt.county.example", 8883)
    assert cfg.devices.idcard.enabled and cfg.devices.idcard.port == Path("/dev/ttyUSB3")
    assert not cfg.devices.printer.enabled and not cfg.devices.camera.enabled


def test_init_sets_an_http_camera_and_the_ports_a_box_needs(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "station.toml"
    result = CliRunner().invoke(app, [
        "init", "--config", str(config), "--station-id", "ST009", "--broker-host", "127.0.0.1",
        "--state-dir", str(tmp_path / "state"), "--no-idcard", "--no-printer",
        "--camera-url", "http://127.0.0.1:8080/snapshot.jpg", "--api-listen", "192.168.1.10",
        "--api-port", "18470", "--metrics-port", "0", "--lang", "en",
    ], env={"LANG": "en_US.UTF-8"})
    assert result.exit_code == 0, result.output
    cfg = load_station_config(config, env={})
    camera = cfg.devices.camera
    assert (camera.enabled, camera.source, camera.url) == (
        True, "http", "http://127.0.0.1:8080/snapshot.jpg")
    assert (cfg.api.listen, cfg.api.port, cfg.metrics.port) == ("192.168.1.10", 18470, 0)
    if shutil.which("systemctl"):
        assert "systemctl edit cunlink" in result.output
