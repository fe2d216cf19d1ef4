"""Arrays of tables, the rules between keys, the hub's own rules, and role detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import (
    ApiToken,
    ConfigError,
    HubConfig,
    StationConfig,
    load_config,
    load_hub_config,
)
from tests.gateway.test_config_loader import MINIMAL, MINIMAL_HUB, errors_of, station, write

TOKENS = """
[[api.tokens]]
name = "counter-1"
token = "0123456789abcdef"
[[api.tokens]]
name = "counter-2"
token = "fedcba9876543210"
"""


def test_api_tokens_load_as_tables(tmp_path: Path) -> None:
    cfg = station(tmp_path, MINIMAL + TOKENS)
    assert cfg.api.tokens == (
        ApiToken(name="counter-1", token="0123456789abcdef"),
        ApiToken(name="counter-2", token="fedcba9876543210"),
    )


def test_token_errors_never_echo_the_secret(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, MINIMAL + '[[api.tokens]]\nname = "t"\ntoken = "sekrit"\n')
    assert errors == [
        f"{tmp_path / 'station.toml'}: [api] tokens[0].token: expected a string of 16 to 256 "
        "characters, got a hidden value of 6 characters"
    ]
    assert "sekrit" not in repr(ApiToken(name="t", token="sekrit"))


def test_token_table_errors_name_the_item(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path, MINIMAL + '[[api.tokens]]\nnmae = "t"\ntoken = "0123456789abcdef"\n'
    )
    label = tmp_path / "station.toml"
    assert errors == [
        f"{label}: unknown key [api] tokens[0].nmae; did you mean name?",
        f"{label}: [api] tokens[0].name: required key is missing; expected 1 to 64 characters "
        "of A-Z a-z 0-9 _ . -",
    ]
    errors = errors_of(tmp_path, MINIMAL + "[api]\ntokens = 5\n")
    assert errors[0].endswith(
        "[api] tokens: expected an array of tables, written as [[api.tokens]] sections, got 5"
    )


# Rules between keys: (extra TOML, the key the error is about, a phrase of the message).
CROSS_FIELD = [
    ("", "[mqtt] ca_file", "required when tls = true"),
    (
        "[transfer]\nchunk_min_bytes = 9000\nchunk_max_bytes = 8000\n",
        "[transfer] chunk_min_bytes",
        "expected at most chunk_max_bytes (8000), got 9000",
    ),
    (
        "[transfer]\nchunk_max_bytes = 262000\n",
        "[transfer] chunk_max_bytes",
        "expected at most [mqtt] max_packet_size - 1024 = 261120",
    ),
    (
        "[transfer]\nbackoff_initial_seconds = 20.0\nbackoff_max_seconds = 10.0\n",
        "[transfer] backoff_initial_seconds",
        "expected at most backoff_max_seconds (10)",
    ),
    (
        '[devices.printer]\nenabled = true\nconnection = "tcp"\n',
        "[devices.printer] host",
        'required when connection = "tcp"',
    ),
    (
        '[devices.camera]\nenabled = true\nsource = "http"\n',
        "[devices.camera] url",
        'required when source = "http"',
    ),
    (
        "[api]\nport = 9000\n[metrics]\nport = 9000\n",
        "[metrics] port",
        "expected a port other than [api] port, got 9000",
    ),
    (TOKENS.replace("counter-2", "counter-1"), "[api] tokens[1]", 'name "counter-1" is used twice'),
    (
        TOKENS.replace("fedcba9876543210", "0123456789abcdef"),
        "[api] tokens[1]",
        "token is the same as an earlier one",
    ),
]


@pytest.mark.parametrize(("extra", "key", "phrase"), CROSS_FIELD)
def test_cross_field_rules(tmp_path: Path, extra: str, key: str, phrase: str) -> None:
    text = MINIMAL.replace("tls = false\n", "") if key == "[mqtt] ca_file" else MINIMAL
    errors = errors_of(tmp_path, text + extra)
    assert errors[0].startswith(f"{tmp_path / 'station.toml'}: {key}: ")
    assert phrase in errors[0]


def test_tls_needs_all_three_files(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, MINIMAL.replace("tls = false\n", 'cert_file = "c.pem"\n'))
    assert [e.split(": ")[1] for e in errors] == ["[mqtt] ca_file", "[mqtt] key_file"]


def test_disabled_devices_skip_their_cross_field_rules(tmp_path: Path) -> None:
    cfg = station(
        tmp_path,
        MINIMAL + '[devices.printer]\nconnection = "tcp"\n[devices.camera]\nsource = "http"\n',
    )
    assert cfg.devices.printer.connection == "tcp" and cfg.devices.camera.source == "http"


def test_metrics_port_zero_may_equal_nothing(tmp_path: Path) -> None:
    assert station(tmp_path, MINIMAL + "[metrics]\nport = 0\n").metrics.port == 0


def test_a_rule_on_an_invalid_value_is_skipped(tmp_path: Path) -> None:
    # chunk_max is already wrong; the chunk rules must not add a second, confusing line.
    errors = errors_of(tmp_path, MINIMAL + '[transfer]\nchunk_max_bytes = "big"\n')
    assert len(errors) == 1 and "[transfer] chunk_max_bytes: expected an integer" in errors[0]


def test_hub_postgresql_needs_a_dsn(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, MINIMAL_HUB + '[store]\nbackend = "postgresql"\n', hub=True)
    assert errors[0].startswith(
        f'{tmp_path / "hub.toml"}: [store] dsn: required when backend = "postgresql"'
    )
    cfg = load_hub_config(
        write(
            tmp_path,
            MINIMAL_HUB + '[store]\nbackend = "postgresql"\ndsn = "postgresql://u:pw@db/cunlink"\n',
            "hub.toml",
        ),
        env={},
    )
    assert cfg.store.dsn == "postgresql://u:pw@db/cunlink"
    assert "pw@db" not in repr(cfg)


def test_hub_share_group_and_unknown_station_sections(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path, MINIMAL_HUB + 'share_group = "a/b"\n[transfer]\nwindow = 2\n', hub=True
    )
    label = tmp_path / "hub.toml"
    assert errors == [
        f"{label}: unknown section [transfer]; known sections here: hub, keys, mqtt, store, "
        "metrics, log",
        f'{label}: [mqtt] share_group: expected 1 to 64 characters of A-Z a-z 0-9 _ -, got "a/b"',
    ]


def test_load_config_detects_the_role(tmp_path: Path) -> None:
    assert isinstance(load_config(write(tmp_path, MINIMAL_HUB, "h.toml"), env={}), HubConfig)
    assert isinstance(load_config(write(tmp_path, MINIMAL, "s.toml"), env={}), StationConfig)
    with pytest.raises(ConfigError, match=r"unknown section \[hub\]"):
        load_config(tmp_path / "h.toml", role="station", env={})
