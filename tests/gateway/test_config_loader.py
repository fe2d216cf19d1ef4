"""Loading station.toml and hub.toml: defaults, every kind of error, and the rules between keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import (
    ConfigError,
    StationConfig,
    load_hub_config,
    load_station_config,
)
from sync.ids import IdError, check_station_id

MINIMAL = """
[station]
id = "v001"

[mqtt]
host = "broker.example"
tls = false
"""

MINIMAL_HUB = """
[hub]
id = "county"

[mqtt]
host = "broker.example"
tls = false
"""


def write(tmp_path: Path, text: str, name: str = "station.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def station(tmp_path: Path, text: str) -> StationConfig:
    return load_station_config(write(tmp_path, text), env={})


def errors_of(tmp_path: Path, text: str, *, hub: bool = False) -> list[str]:
    path = write(tmp_path, text, "hub.toml" if hub else "station.toml")
    with pytest.raises(ConfigError) as info:
        if hub:
            load_hub_config(path, env={})
        else:
            load_station_config(path, env={})
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


# Every default named in the issue, checked one by one so a drifting default names itself.
STATION_DEFAULTS = {
    "station.state_dir": Path("/var/lib/cunlink"),
    "station.language": "zh-CN",
    "keys.dir": Path("/etc/cunlink/keys"),
    "keys.hub_enrollment": Path("/etc/cunlink/hub.enrollment.json"),
    "keys.suite": "x25519-sha256-aes256gcm",
    "mqtt.port": 8883,
    "mqtt.ca_file": None,
    "mqtt.keepalive": 60,
    "mqtt.connect_timeout_seconds": 30,
    "mqtt.session_expiry_seconds": 604800,
    "mqtt.max_packet_size": 262144,
    "transfer.chunk_min_bytes": 4096,
    "transfer.chunk_max_bytes": 65536,
    "transfer.chunk_target_seconds": 4.0,
    "transfer.window": 3,
    "transfer.stall_timeout_seconds": 45,
    "transfer.backoff_initial_seconds": 1.0,
    "transfer.backoff_max_seconds": 300.0,
    "transfer.daily_budget_bytes": 0,
    "transfer.outbox_poll_seconds": 1.0,
    "store.disk_floor_mb": 200,
    "store.clock_max_ahead_seconds": 300,
    "store.group_commit_max_batch": 256,
    "store.group_commit_window_ms": 2.0,
    "api.listen": "127.0.0.1",
    "api.port": 8470,
    "api.max_body_bytes": 20971520,
    "api.cors_origins": (),
    "api.tokens": (),
    "metrics.listen": "127.0.0.1",
    "metrics.port": 9470,
    "metrics.beacon_interval_seconds": 300,
    "log.level": "info",
    "devices.idcard.enabled": False,
    "devices.idcard.port": Path("/dev/cunlink-idcard"),
    "devices.idcard.baud": 0,
    "devices.idcard.poll_interval_seconds": 0.5,
    "devices.idcard.timeout_seconds": 2.0,
    "devices.printer.enabled": False,
    "devices.printer.connection": "serial",
    "devices.printer.port": Path("/dev/cunlink-printer"),
    "devices.printer.baud": 9600,
    "devices.printer.host": "",
    "devices.printer.tcp_port": 9100,
    "devices.printer.encoding": "gb18030",
    "devices.printer.width_chars": 32,
    "devices.printer.status_poll_seconds": 5.0,
    "devices.camera.enabled": False,
    "devices.camera.source": "v4l2",
    "devices.camera.device": Path("/dev/cunlink-camera"),
    "devices.camera.url": "",
    "devices.camera.width": 3264,
    "devices.camera.height": 2448,
    "devices.camera.max_pixels": 3000000,
    "devices.camera.dpi": 0,
    "devices.camera.page_width_mm": 210,
    "devices.camera.greyscale": True,
    "devices.camera.jpeg_quality": 70,
}


def lookup(cfg: object, dotted: str) -> object:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize(("key", "expected"), STATION_DEFAULTS.items())
def test_station_default(tmp_path: Path, key: str, expected: object) -> None:
    assert lookup(station(tmp_path, MINIMAL), key) == expected


def test_tls_defaults_on(tmp_path: Path) -> None:
    text = MINIMAL.replace("tls = false\n", "")
    text += 'ca_file = "ca.pem"\ncert_file = "c.pem"\nkey_file = "k.pem"\n'
    assert station(tmp_path, text).mqtt.tls is True


def test_hub_defaults(tmp_path: Path) -> None:
    cfg = load_hub_config(write(tmp_path, MINIMAL_HUB, "hub.toml"), env={})
    assert cfg.hub.id == "county"
    assert cfg.hub.state_dir == Path("/var/lib/cunlink-hub")
    assert cfg.keys.dir == Path("/etc/cunlink-hub/keys")
    assert cfg.mqtt.share_group == "cunlink-hub"
    assert cfg.mqtt.keepalive == 60
    assert (cfg.store.backend, cfg.store.dsn, cfg.store.clock_max_ahead_seconds) == (
        "sqlite",
        "",
        300,
    )
    assert cfg.metrics.port == 9471
    assert cfg.log.level == "info"


def test_settings_are_frozen(tmp_path: Path) -> None:
    cfg = station(tmp_path, MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mqtt.keepalive = 5  # type: ignore[misc]


def test_error_line_format_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, MINIMAL + 'keepalive = "abc"\n')
    with pytest.raises(ConfigError) as info:
        load_station_config(Path("station.toml"), env={})
    assert info.value.errors == [
        'station.toml: [mqtt] keepalive: expected an integer from 5 to 600, got "abc"'
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("keepalive = true", "[mqtt] keepalive: expected an integer from 5 to 600, got true"),
        ("keepalive = 30.5", "[mqtt] keepalive: expected an integer from 5 to 600, got 30.5"),
        ("keepalive = 601", "[mqtt] keepalive: expected an integer from 5 to 600, got 601"),
        (
            "keepalive = [1]",
            "[mqtt] keepalive: expected an integer from 5 to 600, got an array of 1 item",
        ),
        ("port = 0", "[mqtt] port: expected an integer from 1 to 65535, got 0"),
        ('tls = "yes"', '[mqtt] tls: expected true or false, got "yes"'),
        ('host = "has space"', '[mqtt] host: expected a host name or IP address, got "has space"'),
        ("ca_file = 5", '[mqtt] ca_file: expected a path, or "" for none, got 5'),
    ],
)
def test_type_and_range_errors(tmp_path: Path, line: str, expected: str) -> None:
    # The line is appended inside [mqtt]; drop the minimal file's own line for that key first.
    key = line.split(" ")[0]
    text = "".join(kept for kept in MINIMAL.splitlines(keepends=True) if not kept.startswith(key))
    errors = errors_of(tmp_path, text + line + "\n")
    assert errors == [f"{tmp_path / 'station.toml'}: {expected}"]


def test_float_setting_accepts_an_integer_and_rejects_out_of_range(tmp_path: Path) -> None:
    cfg = station(tmp_path, MINIMAL + "[transfer]\nchunk_target_seconds = 5\n")
    assert cfg.transfer.chunk_target_seconds == 5.0
    assert isinstance(cfg.transfer.chunk_target_seconds, float)
    errors = errors_of(tmp_path, MINIMAL + "[transfer]\nchunk_target_seconds = nan\n")
    assert errors[0].endswith(
        "[transfer] chunk_target_seconds: expected a number from 0.5 to 60, got nan"
    )


def test_enum_error_suggests_the_closest_value(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, MINIMAL + '[log]\nlevel = "inf"\n')
    assert errors == [
        f'{tmp_path / "station.toml"}: [log] level: expected one of "debug", "info", '
        '"warning", "error", got "inf"; did you mean "info"?'
    ]


def test_special_integer_values(tmp_path: Path) -> None:
    ok = station(tmp_path, MINIMAL + "[devices.camera]\ndpi = 150\n[devices.idcard]\nbaud = 9600\n")
    assert (ok.devices.camera.dpi, ok.devices.idcard.baud) == (150, 9600)
    errors = errors_of(
        tmp_path, MINIMAL + "[devices.camera]\ndpi = 10\n[devices.idcard]\nbaud = 4800\n"
    )
    # Errors come in schema order ([devices.idcard] before [devices.camera]), not file order.
    assert errors[0].endswith(
        "[devices.idcard] baud: expected one of 0, 9600, 19200, 38400, 57600, 115200 "
        "(0 = probe 115200 then 9600), got 4800"
    )
    assert errors[1].endswith(
        "[devices.camera] dpi: expected 0 or an integer from 50 to 1200, got 10"
    )


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, MINIMAL + "keepalvie = 30\n")
    assert errors == [
        f"{tmp_path / 'station.toml'}: unknown key [mqtt] keepalvie; did you mean keepalive?"
    ]


def test_unknown_key_without_a_close_match_lists_the_keys(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, MINIMAL + "[log]\nzzz = 1\n")
    assert errors == [f"{tmp_path / 'station.toml'}: unknown key [log] zzz; known keys here: level"]


def test_unknown_sections_and_top_level_keys(tmp_path: Path) -> None:
    text = "verbose = true\n" + MINIMAL + "[mqqt]\nport = 1\n[devices.printr]\nenabled = true\n"
    errors = errors_of(tmp_path, text)
    label = tmp_path / "station.toml"
    assert errors == [
        f"{label}: unknown key verbose at the top level; known keys here: station, keys, mqtt, "
        "transfer, store, api, metrics, log, devices",
        f"{label}: unknown section [mqqt]; did you mean [mqtt]?",
        f"{label}: unknown section [devices.printr]; did you mean [devices.printer]?",
    ]


def test_missing_required_keys(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "[mqtt]\ntls = false\n")
    label = tmp_path / "station.toml"
    assert errors == [
        f"{label}: [station] id: required key is missing; expected 1 to 32 characters of "
        "A-Z a-z 0-9 _ (no '-', no spaces)",
        f"{label}: [mqtt] host: required key is missing; expected a host name or IP address",
    ]


def test_a_section_that_is_not_a_table(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, 'mqtt = 5\n[station]\nid = "v1"\n')
    assert errors == [f"{tmp_path / 'station.toml'}: [mqtt]: expected a table, got 5"]


def test_every_error_in_a_file_is_reported(tmp_path: Path) -> None:
    text = """
[station]
id = "bad id!"
[mqtt]
host = "b"
tls = false
port = "x"
keepalive = 1
[transfer]
window = 0
[log]
level = "loud"
"""
    keys = [line.split(": ")[1] for line in errors_of(tmp_path, text)]
    assert keys == [
        "[station] id",
        "[mqtt] port",
        "[mqtt] keepalive",
        "[transfer] window",
        "[log] level",
    ]


def test_station_id_rules(tmp_path: Path) -> None:
    assert station(tmp_path, MINIMAL.replace("v001", "a" * 32)).station.id == "a" * 32
    errors = errors_of(tmp_path, MINIMAL.replace("v001", "a" * 33))
    assert errors[0].endswith(
        "[station] id: expected 1 to 32 characters of A-Z a-z 0-9 _ (no '-', no spaces), "
        f'got "{"a" * 33}"'
    )


def test_station_id_follows_the_case_number_rule(tmp_path: Path) -> None:
    # The config accepts exactly what sync.ids accepts: a '-' would make case numbers
    # ("ST001-20261122-0007") ambiguous, so the daemon would fail at its first case.
    for good in ("village01", "ST_001", "0042", "A"):
        assert station(tmp_path, MINIMAL.replace("v001", good)).station.id == good
        assert check_station_id(good) == good
    for bad in ("village-01", "v.01", "v 01", "站点"):
        errors = errors_of(tmp_path, MINIMAL.replace("v001", bad))
        assert len(errors) == 1 and "[station] id: expected 1 to 32 characters of A-Z a-z 0-9 _ " \
            "(no '-', no spaces)" in errors[0], errors
        with pytest.raises(IdError):
            check_station_id(bad)


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, '[station]\nid = "v1"\nport 8883\n')
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path / 'station.toml'}: line 3, column 6: invalid TOML: ")
    assert errors[0].endswith("; fix the syntax there")


def test_duplicate_key_is_a_syntax_error(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, MINIMAL + "port = 1\nport = 2\n")
    assert "line 9, column 9" in errors[0] and "invalid TOML" in errors[0]


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_station_config(missing, env={})
    assert info.value.errors == [
        f"{missing}: cannot read the file: No such file or directory; check the path"
    ]
    path = tmp_path / "gbk.toml"
    path.write_bytes('[station]\n# 村\nid = "v1"\n'.encode("gb18030"))
    with pytest.raises(ConfigError) as info:
        load_station_config(path, env={})
    assert info.value.errors[0].startswith(f"{path}: line 2: not UTF-8 text")


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_station_config(path, env={}).station.id == "v001"


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "#" + "x" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="larger than 1048576 bytes"):
        load_station_config(path, env={})


def test_relative_paths_resolve_against_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    path = write(
        folder, MINIMAL + 'ca_file = "tls/ca.pem"\n[station.x]\n'.replace("[station.x]\n", "")
    )
    path.write_text(path.read_text() + '[keys]\ndir = "keys"\n', encoding="utf-8")
    cfg = load_station_config(Path("etc/station.toml"), env={})
    assert cfg.mqtt.ca_file == tmp_path / "etc" / "tls" / "ca.pem"
    assert cfg.keys.dir == tmp_path / "etc" / "keys"
    assert cfg.mqtt.ca_file.is_absolute()


def test_optional_path_empty_string_means_unset(tmp_path: Path) -> None:
    assert station(tmp_path, MINIMAL + 'ca_file = ""\n').mqtt.ca_file is None


def test_cors_origins_each_bad_item_is_reported(tmp_path: Path) -> None:
    good = station(
        tmp_path, MINIMAL + '[api]\ncors_origins = ["http://10.0.0.2:8080", "https://term.local"]\n'
    )
    assert good.api.cors_origins == ("http://10.0.0.2:8080", "https://term.local")
    errors = errors_of(
        tmp_path,
        MINIMAL + '[api]\ncors_origins = ["http://ok", "ftp://x", "http://a/", "http://a:99999"]\n',
    )
    assert [e.split(": ")[1] for e in errors] == [
        "[api] cors_origins[1]",
        "[api] cors_origins[2]",
        "[api] cors_origins[3]",
    ]
    assert 'got "ftp://x"' in errors[0]
