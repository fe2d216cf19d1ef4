"""The county hub's settings (hub.toml): schema, defaults, and cross-field rules."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.common import (
    HOST,
    ID,
    LANGUAGE,
    SUITE,
    LogSettings,
    MqttSettings,
    tls_files_rule,
)
from gateway.config.fields import Choice, Int, PathValue, Text, section, setting
from gateway.config.loader import Problem, Rule, Values, load

SHARE_GROUP = Text(describe="1 to 64 characters of A-Z a-z 0-9 _ -", pattern=r"[A-Za-z0-9_-]{1,64}")
DSN = Text(describe='a PostgreSQL connection string, or ""', allow_empty=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class HubSettings:
    id: str = field(metadata=setting(ID))
    state_dir: Path = field(default=Path("/var/lib/cunlink-hub"), metadata=setting(PathValue()))
    language: str = field(default="zh-CN", metadata=setting(LANGUAGE))


@dataclass(frozen=True, slots=True, kw_only=True)
class HubKeysSettings:
    dir: Path = field(default=Path("/etc/cunlink-hub/keys"), metadata=setting(PathValue()))
    suite: str = field(default="x25519-sha256-aes256gcm", metadata=setting(SUITE))


@dataclass(frozen=True, slots=True, kw_only=True)
class HubMqttSettings(MqttSettings):
    # Hub workers with the same group share one subscription ($share/<group>/...): each message
    # goes to one of them. MQTT forbids / + # in the name.
    share_group: str = field(default="cunlink-hub", metadata=setting(SHARE_GROUP))


@dataclass(frozen=True, slots=True, kw_only=True)
class HubStoreSettings:
    backend: str = field(
        default="sqlite", metadata=setting(Choice(values=("sqlite", "postgresql")))
    )
    dsn: str = field(default="", metadata=setting(DSN, secret=True), repr=False)
    clock_max_ahead_seconds: int = field(default=300, metadata=setting(Int(lo=1, hi=86400)))


@dataclass(frozen=True, slots=True, kw_only=True)
class HubMetricsSettings:
    listen: str = field(default="127.0.0.1", metadata=setting(HOST))
    port: int = field(default=9471, metadata=setting(Int(lo=0, hi=65535)))  # 0 = off


@dataclass(frozen=True, slots=True, kw_only=True)
class HubConfig:
    """Everything `cunlink hub run` needs, validated; built by load_hub_config()."""

    hub: HubSettings = field(metadata=section(HubSettings))
    keys: HubKeysSettings = field(
        default_factory=HubKeysSettings, metadata=section(HubKeysSettings)
    )
    mqtt: HubMqttSettings = field(metadata=section(HubMqttSettings))
    store: HubStoreSettings = field(
        default_factory=HubStoreSettings, metadata=section(HubStoreSettings)
    )
    metrics: HubMetricsSettings = field(
        default_factory=HubMetricsSettings, metadata=section(HubMetricsSettings)
    )
    log: LogSettings = field(default_factory=LogSettings, metadata=section(LogSettings))


def _postgres_dsn(v: Values) -> Iterator[Problem]:
    if v["store.backend"] == "postgresql" and not v["store.dsn"]:
        yield Problem(
            key="store.dsn",
            text='required when backend = "postgresql"; expected a connection string '
            'like "postgresql://cunlink@db.county.example/cunlink", got ""',
        )


HUB_RULES: tuple[Rule, ...] = (tls_files_rule("mqtt"), _postgres_dsn)


def load_hub_config(path: Path, env: Mapping[str, str] | None = None) -> HubConfig:
    """Load and validate hub.toml; `env` (default os.environ) may override single keys."""
    return load(path, HubConfig, rules=HUB_RULES, env=os.environ if env is None else env)
