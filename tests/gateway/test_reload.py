"""What SIGHUP may change: the reload plan, the effective config, and a file that fails to load."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config.fields import meta_of
from gateway.config.hub import load_hub_config
from gateway.config.station import StationConfig, load_station_config
from gateway.reload import (
    HUB_LIVE,
    HUB_RESTART,
    STATION_LIVE,
    STATION_RESTART,
    ConfigReloader,
    apply_log_level,
    effective,
    plan_hub_reload,
    plan_reload,
)
from tests.gateway.test_config_loader import MINIMAL, MINIMAL_HUB
from tests.gateway.test_lifecycle import REPO, NotifyReceiver

TOKEN_A = "a" * 24
TOKEN_B = "b" * 24

BASE = MINIMAL + f"""
[[api.tokens]]
name = "counter-1"
token = "{TOKEN_A}"
"""

# Every kind of live setting changed at once.
LIVE = MINIMAL + f"""
[log]
level = "debug"

[transfer]
window = 2
daily_budget_bytes = 50000000
chunk_max_bytes = 32768
stall_timeout_seconds = 90

[metrics]
beacon_interval_seconds = 600

[devices.camera]
enabled = true
device = "/dev/video2"

[api]
cors_origins = ["http://192.168.1.20:8080"]

[[api.tokens]]
name = "counter-1"
token = "{TOKEN_B}"
"""

# Every kind of restart-only setting changed at once.
RESTART = f"""
[station]
id = "v002"
state_dir = "/srv/cunlink"

[keys]
dir = "/srv/keys"

[mqtt]
host = "other.example"
port = 1883
tls = false

[api]
listen = "0.0.0.0"
port = 8480
max_body_bytes = 1048576

[metrics]
port = 9480

[[api.tokens]]
name = "counter-1"
token = "{TOKEN_A}"
"""


def load(tmp_path: Path, text: str, name: str = "station.toml") -> StationConfig:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_station_config(path, env={})


def test_nothing_changed(tmp_path: Path) -> None:
    plan = plan_reload(load(tmp_path, BASE), load(tmp_path, BASE))
    assert not plan.changed
    assert plan.summary() == "configuration reloaded, nothing changed"


def test_devices_limits_log_level_tokens_apply_live(tmp_path: Path) -> None:
    plan = plan_reload(load(tmp_path, BASE), load(tmp_path, LIVE))
    assert plan.restart == ()
    assert {c.key for c in plan.live} == {
        "log.level", "transfer.window", "transfer.daily_budget_bytes",
        "transfer.chunk_max_bytes", "transfer.stall_timeout_seconds",
        "metrics.beacon_interval_seconds", "devices.camera.enabled", "devices.camera.device",
        "api.cors_origins", "api.tokens",
    }
    by_key = {c.key: c for c in plan.live}
    assert by_key["transfer.window"].line() == (
        "transfer.window: 3 -> 2: the transfer engine takes the new limits for its next chunk; "
        "chunks in flight finish as they are")
    assert by_key["devices.camera.device"].old == '"/dev/cunlink-camera"'
    assert by_key["log.level"].new == '"debug"'
    assert plan.touches("transfer") and plan.touches("devices.camera")
    assert plan.touches("devices") and not plan.touches("devices.printer")
    # a token never shows, not even in part
    text = "\n".join(c.line() for c in plan.live)
    assert TOKEN_A not in text and TOKEN_B not in text and "aaaa" not in text
    assert plan.summary() == "configuration reloaded, 10 change(s) applied"


def test_identity_paths_and_listeners_need_a_restart(tmp_path: Path) -> None:
    plan = plan_reload(load(tmp_path, BASE), load(tmp_path, RESTART))
    assert plan.live == ()
    keys = {c.key for c in plan.restart}
    assert keys == {"station.id", "station.state_dir", "keys.dir", "mqtt.host", "mqtt.port",
                    "api.listen", "api.port", "api.max_body_bytes", "metrics.port"}
    for change in plan.restart:
        assert change.message.endswith("restart the service to apply it "
                                       "(systemctl restart cunlink)"), change
    by_key = {c.key: c for c in plan.restart}
    assert "identity" in by_key["station.id"].message
    assert "need a restart" in plan.summary() and "station.id" in plan.summary()


def leaf_keys(cls: type, path: str = "") -> Iterator[str]:
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        meta = meta_of(f)
        if meta.kind == "section":
            assert meta.cls is not None
            yield from leaf_keys(meta.cls, key)
        else:
            yield key


def covered(key: str, table: dict[str, str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in table)


def test_every_setting_is_classified_on_purpose() -> None:
    # A new setting must be put in one list or the other; the fallback (restart) is a safety
    # net, not a decision.
    from gateway.config.hub import HubConfig

    for cls, live, restart in ((StationConfig, STATION_LIVE, STATION_RESTART),
                               (HubConfig, HUB_LIVE, HUB_RESTART)):
        for key in leaf_keys(cls):
            assert covered(key, live) != covered(key, restart), f"{cls.__name__}: {key}"


def test_effective_config_keeps_running_values_for_restart_only_settings(
        tmp_path: Path) -> None:
    old = load(tmp_path, BASE)
    new = load(tmp_path, LIVE.replace('host = "broker.example"', 'host = "moved.example"'))
    plan = plan_reload(old, new)
    assert [c.key for c in plan.restart] == ["mqtt.host"]
    now = effective(old, new, plan)
    assert now.mqtt.host == "broker.example"  # the daemon is still connected there
    assert now.transfer.window == 2 and now.log.level == "debug"
    assert now.devices.camera.device == Path("/dev/video2")
    assert now.api.tokens == new.api.tokens
    # the next reload of the same file still reports the pending restart, and only that
    again = plan_reload(now, new)
    assert [c.key for c in again.restart] == ["mqtt.host"] and again.live == ()


def test_a_file_that_does_not_load_leaves_the_running_config(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "station.toml"
    path.write_text(BASE, encoding="utf-8")
    current = load_station_config(path, env={})
    reloader = ConfigReloader(path, current, load=lambda p: load_station_config(p, env={}),
                              plan=plan_reload)

    path.write_text(BASE.replace('tls = false', 'tls = false\nkeepalive = "abc"'),
                    encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="cunlink.reload"):
        result = reloader.reload()
    assert not result.ok and result.plan is None
    assert result.config is current and reloader.current is current
    expected = f'{path}: [mqtt] keepalive: expected an integer from 5 to 600, got "abc"'
    assert expected in result.error
    assert any(expected in r.getMessage() for r in caplog.records)
    assert any("still running the previous configuration" in r.getMessage()
               for r in caplog.records)
    assert result.summary() == (
        f"reload failed, still running the previous configuration: {expected}")

    path.write_text("[station\n", encoding="utf-8")  # not even TOML
    assert reloader.reload().config is current
    path.unlink()
    missing = reloader.reload()
    assert missing.config is current and "cannot read the file" in missing.error

    path.write_text(BASE.replace("[station]", '[log]\nlevel = "warning"\n\n[station]'),
                    encoding="utf-8")
    fixed = reloader.reload()
    assert fixed.ok and fixed.config.log.level == "warning"
    assert reloader.current is fixed.config


def test_hub_applies_only_the_log_level(tmp_path: Path) -> None:
    (tmp_path / "hub.toml").write_text(MINIMAL_HUB, encoding="utf-8")
    old = load_hub_config(tmp_path / "hub.toml", env={})
    (tmp_path / "hub.toml").write_text(
        MINIMAL_HUB.replace("broker.example", "b2.example") + '\n[log]\nlevel = "error"\n',
        encoding="utf-8")
    new = load_hub_config(tmp_path / "hub.toml", env={})
    plan = plan_hub_reload(old, new)
    assert [c.key for c in plan.live] == ["log.level"]
    assert [c.key for c in plan.restart] == ["mqtt.host"]
    assert plan.restart[0].message.endswith("(systemctl restart cunlink-hub)")


def test_apply_log_level() -> None:
    root = logging.getLogger()
    mqtt = logging.getLogger("aiomqtt")
    saved = root.level, mqtt.level
    try:
        apply_log_level("debug")
        assert root.level == logging.DEBUG
        assert mqtt.level == logging.WARNING  # the MQTT library never floods the journal
        apply_log_level("error")
        assert root.level == logging.ERROR and mqtt.level == logging.ERROR
        with pytest.raises(ValueError):
            apply_log_level("loud")
    finally:
        root.setLevel(saved[0])
        mqtt.setLevel(saved[1])


# --- the wiring the daemons use, in a real process with a real notify socket ------------------

DAEMON = '''
import asyncio, logging, sys
from pathlib import Path
from gateway import logs
from gateway.config.station import load_station_config
from gateway.lifecycle import ServiceLifecycle
from gateway.reload import apply_log_level, station_reloader

path = Path(sys.argv[1])
cfg = load_station_config(path)
logs.setup(cfg.log.level)
log = logging.getLogger("cunlink.testd")

async def main() -> None:
    stop = asyncio.Event()
    reloader = station_reloader(path, cfg)

    async def on_reload() -> str:
        result = reloader.reload()
        if result.plan is not None and result.plan.touches("log.level"):
            apply_log_level(result.config.log.level)
        log.debug("debug line after reload %d", life.reloads + 1)
        return result.summary()

    async with ServiceLifecycle("testd", on_stop=stop.set, on_reload=on_reload) as life:
        life.ready()
        await stop.wait()

asyncio.run(main())
'''


def test_sighup_with_a_broken_file_then_a_fixed_one(tmp_path: Path) -> None:
    config = tmp_path / "station.toml"
    config.write_text(BASE, encoding="utf-8")
    script = tmp_path / "testd.py"
    script.write_text(DAEMON, encoding="utf-8")
    receiver = NotifyReceiver(tmp_path / "notify")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CUNLINK__", "NOTIFY_SOCKET", "WATCHDOG_"))}
    env.update(PYTHONPATH=str(REPO), NOTIFY_SOCKET=receiver.env_value)
    proc = subprocess.Popen([sys.executable, str(script), str(config)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = receiver.wait_for("READY", "1")

        config.write_text(BASE.replace("tls = false", "tls = maybe"), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        failed = receiver.wait_for("READY", "1", after=ready + 1)
        status = receiver.messages[failed].fields["STATUS"]
        assert status.startswith("testd running; reload failed, still running the previous "
                                 f"configuration: {config}: line 7"), status
        assert proc.poll() is None  # still serving

        config.write_text(LIVE, encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        done = receiver.wait_for("READY", "1", after=failed + 1)
        assert receiver.messages[done].fields["STATUS"] == (
            "testd running; configuration reloaded, 10 change(s) applied")

        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        receiver.close()
    assert proc.returncode == 0, err
    assert f"ERROR cunlink.reload: reload: {config}: line 7" in err
    assert "debug line after reload 1" not in err  # level was still info then
    assert "DEBUG cunlink.testd: debug line after reload 2" in err
