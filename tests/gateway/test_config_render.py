"""Printing the effective configuration: complete, loadable again, and with secrets redacted."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from gateway.config import (
    HubConfig,
    StationConfig,
    effective_dict,
    load_hub_config,
    load_station_config,
    render_effective,
    render_json,
)
from gateway.config.fields import meta_of, walk

STATION = """
[station]
id = "v001"
language = "en"

[mqtt]
host = "broker.example"
ca_file = "tls/ca.pem"
cert_file = "tls/station.pem"
key_file = "tls/station.key"
keepalive = 30

[api]
cors_origins = ["http://10.0.0.2:8080"]

[[api.tokens]]
name = "counter-1"
token = "0123456789abcdef-Zq7"

[[api.tokens]]
name = "counter-2"
token = "fedcba9876543210-Zq7"

[devices.printer]
enabled = true
connection = "tcp"
host = "10.0.0.9"
"""

HUB = """
[hub]
id = "county"

[mqtt]
host = "broker.example"
tls = false

[store]
backend = "postgresql"
dsn = "postgresql://hub:pa55word@db/cunlink"
"""


@pytest.fixture
def station(tmp_path: Path) -> StationConfig:
    path = tmp_path / "station.toml"
    path.write_text(STATION, encoding="utf-8")
    return load_station_config(path, env={})


@pytest.fixture
def hub(tmp_path: Path) -> HubConfig:
    path = tmp_path / "hub.toml"
    path.write_text(HUB, encoding="utf-8")
    return load_hub_config(path, env={})


def test_unredacted_output_loads_back_to_the_same_config(
    station: StationConfig, hub: HubConfig, tmp_path: Path
) -> None:
    again = tmp_path / "again" / "station.toml"
    again.parent.mkdir()
    again.write_text(render_effective(station, redact=False), encoding="utf-8")
    assert load_station_config(again, env={}) == station
    again.write_text(render_effective(hub, redact=False), encoding="utf-8")
    assert load_hub_config(again, env={}) == hub


def test_output_lists_every_setting_including_defaults(station: StationConfig) -> None:
    data = tomllib.loads(render_effective(station))
    for table, f in walk(StationConfig):
        section = data
        for part in table:
            section = section[part]
        assert f.name in section, f"[{'.'.join(table)}] {f.name} missing from the output"
    assert data["transfer"]["window"] == 3
    assert data["mqtt"]["keepalive"] == 30


def test_secrets_are_redacted_in_toml_and_json(station: StationConfig, hub: HubConfig) -> None:
    text = render_effective(station)
    assert "Zq7" not in text
    assert [t["token"] for t in tomllib.loads(text)["api"]["tokens"]] == ["***", "***"]
    assert [t["name"] for t in tomllib.loads(text)["api"]["tokens"]] == ["counter-1", "counter-2"]
    as_json = json.loads(render_json(station))
    assert as_json["api"]["tokens"][1] == {"name": "counter-2", "token": "***"}
    assert tomllib.loads(render_effective(hub))["store"]["dsn"] == "***"
    assert "pa55word" not in render_effective(hub) + render_json(hub)
    assert effective_dict(hub, redact=False)["store"]["dsn"].endswith("@db/cunlink")


def test_an_empty_secret_is_shown_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        HUB.replace('backend = "postgresql"\n', "").replace(
            'dsn = "postgresql://hub:pa55word@db/cunlink"\n', ""
        ),
        encoding="utf-8",
    )
    assert effective_dict(load_hub_config(path, env={}))["store"]["dsn"] == ""


@pytest.mark.parametrize("schema", [StationConfig, HubConfig])
def test_every_password_or_token_field_is_a_secret(schema: type) -> None:
    # The convention the issue sets: any *password* / *token* / dsn field is secret, and a
    # secret never appears in repr() either. Arrays of tables are checked through their items.
    def check(cls: type) -> int:
        count = 0
        for _, f in walk(cls):
            meta = meta_of(f)
            if meta.kind == "tables":
                assert meta.cls is not None
                count += check(meta.cls)
            elif re.search(r"password|token|dsn|secret", f.name):
                assert meta.secret, f"{f.name} should be marked secret"
                assert not f.repr, f"{f.name} must not appear in repr()"
                count += 1
            else:
                assert not meta.secret or not f.repr
        return count

    assert check(schema) >= 1


def test_paths_are_absolute_and_unset_paths_empty(station: StationConfig, tmp_path: Path) -> None:
    data = effective_dict(station)
    assert data["mqtt"]["ca_file"] == str(tmp_path / "tls" / "ca.pem")
    path = tmp_path / "plain.toml"
    path.write_text('[station]\nid = "x"\n[mqtt]\nhost = "b"\ntls = false\n', encoding="utf-8")
    plain = load_station_config(path, env={})
    assert tomllib.loads(render_effective(plain))["mqtt"]["ca_file"] == ""
    assert effective_dict(plain)["mqtt"]["ca_file"] is None


def test_strings_with_quotes_and_chinese_survive(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[station]\nid = "x"\nstate_dir = "数据/\\"q\\""\n[mqtt]\nhost = "b"\ntls = false\n',
        encoding="utf-8",
    )
    cfg = load_station_config(path, env={})
    assert tomllib.loads(render_effective(cfg))["station"]["state_dir"] == str(
        tmp_path / '数据/"q"'
    )


def test_render_refuses_what_is_not_a_settings_object() -> None:
    with pytest.raises(TypeError, match="settings dataclass"):
        render_effective({"a": 1})


def test_section_order_follows_the_schema(station: StationConfig) -> None:
    headers = [line for line in render_effective(station).splitlines() if line.startswith("[")]
    assert headers[:3] == ["[station]", "[keys]", "[mqtt]"]
    assert headers[-3:] == ["[devices.idcard]", "[devices.printer]", "[devices.camera]"]
    assert [f.name for f in fields(StationConfig)][:3] == ["station", "keys", "mqtt"]
