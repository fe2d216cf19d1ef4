"""Environment overrides: CUNLINK__SECTION__KEY=value sets one key, and errors name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ApiToken, ConfigError, load_hub_config, load_station_config

MINIMAL = """
[station]
id = "v001"

[mqtt]
host = "broker.example"
tls = false
keepalive = 90
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "station.toml"
    p.write_text(MINIMAL, encoding="utf-8")
    return p


def errors(path: Path, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_station_config(path, env=env)
    return info.value.errors


def test_an_override_replaces_the_file_value(path: Path) -> None:
    assert load_station_config(path, env={}).mqtt.keepalive == 90
    assert load_station_config(path, env={"CUNLINK__MQTT__KEEPALIVE": "30"}).mqtt.keepalive == 30


def test_an_override_sets_a_key_the_file_leaves_out(path: Path) -> None:
    cfg = load_station_config(path, env={"CUNLINK__DEVICES__PRINTER__ENCODING": "gb2312"})
    assert cfg.devices.printer.encoding == "gb2312"


def test_values_are_toml_values(path: Path) -> None:
    env = {
        "CUNLINK__MQTT__TLS": "true",
        "CUNLINK__MQTT__CA_FILE": "ca.pem",
        "CUNLINK__MQTT__CERT_FILE": "/abs/c.pem",
        "CUNLINK__MQTT__KEY_FILE": '"k.pem"',
        "CUNLINK__TRANSFER__CHUNK_TARGET_SECONDS": "2.5",
        "CUNLINK__API__CORS_ORIGINS": '["http://10.0.0.5:8080"]',
        "CUNLINK__API__TOKENS": '[{name = "t1", token = "0123456789abcdef"}]',
    }
    cfg = load_station_config(path, env=env)
    assert cfg.mqtt.tls is True
    # A relative path from the environment resolves like one in the file: next to the file.
    assert cfg.mqtt.ca_file == path.parent / "ca.pem"
    assert cfg.mqtt.cert_file == Path("/abs/c.pem")
    assert cfg.mqtt.key_file == path.parent / "k.pem"
    assert cfg.transfer.chunk_target_seconds == 2.5
    assert cfg.api.cors_origins == ("http://10.0.0.5:8080",)
    assert cfg.api.tokens == (ApiToken(name="t1", token="0123456789abcdef"),)


def test_string_settings_take_the_value_verbatim(path: Path) -> None:
    # "0042" would be the integer 42 as TOML; a string setting must keep what was typed.
    cfg = load_station_config(path, env={"CUNLINK__STATION__ID": "0042"})
    assert cfg.station.id == "0042"
    cfg = load_station_config(path, env={"CUNLINK__MQTT__HOST": "true"})
    assert cfg.mqtt.host == "true"


def test_a_bad_value_names_the_variable(path: Path) -> None:
    assert errors(path, {"CUNLINK__MQTT__KEEPALIVE": "abc"}) == [
        "environment variable CUNLINK__MQTT__KEEPALIVE: [mqtt] keepalive: expected an integer "
        'from 5 to 600, got "abc"'
    ]


def test_a_multi_line_value_cannot_add_keys(path: Path) -> None:
    found = errors(path, {"CUNLINK__MQTT__KEEPALIVE": "30\nport = 1"})
    assert found == [
        "environment variable CUNLINK__MQTT__KEEPALIVE: [mqtt] keepalive: expected an integer "
        'from 5 to 600, got "30\\nport = 1"'
    ]


def test_an_unknown_key_in_a_variable_suggests_the_right_one(path: Path) -> None:
    assert errors(path, {"CUNLINK__MQTT__KEEPALVIE": "30"}) == [
        "environment variable CUNLINK__MQTT__KEEPALVIE: unknown key [mqtt] keepalvie; "
        "did you mean keepalive?"
    ]
    assert errors(path, {"CUNLINK__MQQT__PORT": "1"}) == [
        "environment variable CUNLINK__MQQT__PORT: unknown key mqqt; did you mean mqtt?"
    ]


def test_a_variable_must_name_one_key(path: Path) -> None:
    assert errors(path, {"CUNLINK__MQTT": "1"}) == [
        "environment variable CUNLINK__MQTT: names the section [mqtt], not a key; "
        "use CUNLINK__MQTT__<KEY>"
    ]
    assert errors(path, {"CUNLINK__MQTT__PORT__X": "1"}) == [
        "environment variable CUNLINK__MQTT__PORT__X: [mqtt] port is a key, not a section; "
        "remove the part after it"
    ]


def test_bad_overrides_and_bad_file_keys_are_all_reported(path: Path) -> None:
    path.write_text(MINIMAL + 'port = "x"\n', encoding="utf-8")
    found = errors(path, {"CUNLINK__MQTT__KEEPALIVE": "0", "CUNLINK__LOG__LEVL": "debug"})
    assert len(found) == 3
    assert found[0].startswith("environment variable CUNLINK__LOG__LEVL: unknown key [log] levl")
    assert found[1].startswith(f"{path}: [mqtt] port: expected")
    assert found[2].startswith("environment variable CUNLINK__MQTT__KEEPALIVE: [mqtt] keepalive")


def test_other_variables_are_ignored(path: Path) -> None:
    env = {"CUNLINK_CONFIG": "/x", "cunlink__mqtt__port": "1", "PATH": "/bin", "CUNLINK": "1"}
    assert load_station_config(path, env=env).mqtt.port == 8883


def test_the_process_environment_is_the_default(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUNLINK__MQTT__KEEPALIVE", "45")
    assert load_station_config(path).mqtt.keepalive == 45


def test_hub_overrides(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[hub]\nid = "c"\n[mqtt]\nhost = "b"\ntls = false\n', encoding="utf-8")
    env = {"CUNLINK__STORE__BACKEND": "postgresql", "CUNLINK__STORE__DSN": "postgresql://db/x"}
    cfg = load_hub_config(path, env=env)
    assert (cfg.store.backend, cfg.store.dsn) == ("postgresql", "postgresql://db/x")
    with pytest.raises(ConfigError) as info:
        load_hub_config(path, env={"CUNLINK__MQTT__SHARE_GROUP": "a+b"})
    assert info.value.errors[0].startswith(
        "environment variable CUNLINK__MQTT__SHARE_GROUP: [mqtt] share_group: expected"
    )


def test_errors_inside_an_overridden_array_of_tables_name_the_variable(path: Path) -> None:
    env = {"CUNLINK__API__TOKENS": '[{name = "t1", tokn = "0123456789abcdef"}]'}
    assert errors(path, env) == [
        "environment variable CUNLINK__API__TOKENS: unknown key [api] tokens[0].tokn; "
        "did you mean token?",
        "environment variable CUNLINK__API__TOKENS: [api] tokens[0].token: required key is "
        "missing; expected a string of 16 to 256 characters",
    ]
