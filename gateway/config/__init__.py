"""Configuration: TOML files into frozen, validated settings objects.

    cfg = load_station_config(Path("/etc/cunlink/station.toml"))
    cfg.mqtt.keepalive  # 60 unless the file or CUNLINK__MQTT__KEEPALIVE says otherwise

Every problem in a file is reported at once, in a ConfigError whose `errors` are lines like
`station.toml: [mqtt] keepalive: expected an integer from 5 to 600, got "abc"`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from gateway.config.common import LogSettings, MqttSettings
from gateway.config.errors import ConfigError
from gateway.config.hub import (
    HubConfig,
    HubKeysSettings,
    HubMetricsSettings,
    HubMqttSettings,
    HubSettings,
    HubStoreSettings,
    load_hub_config,
)
from gateway.config.loader import ENV_PREFIX, read_toml
from gateway.config.render import REDACTED, effective_dict, render_effective, render_json
from gateway.config.station import (
    ApiSettings,
    ApiToken,
    CameraSettings,
    DevicesSettings,
    IdCardSettings,
    KeysSettings,
    MetricsSettings,
    PrinterSettings,
    StationConfig,
    StationSettings,
    StoreSettings,
    TransferSettings,
    load_station_config,
)

Role = Literal["station", "hub"]


def detect_role(path: Path) -> Role:
    """A file with a [hub] table is a hub config; anything else is read as a station config."""
    data = read_toml(path, str(path))
    return "hub" if isinstance(data.get("hub"), dict) else "station"


def load_config(
    path: Path, *, role: Role | None = None, env: Mapping[str, str] | None = None
) -> StationConfig | HubConfig:
    """Load either kind of file; `role` None means detect it from the file."""
    env = os.environ if env is None else env
    if (role or detect_role(path)) == "hub":
        return load_hub_config(path, env)
    return load_station_config(path, env)


__all__ = [
    "ENV_PREFIX",
    "REDACTED",
    "ApiSettings",
    "ApiToken",
    "CameraSettings",
    "ConfigError",
    "DevicesSettings",
    "HubConfig",
    "HubKeysSettings",
    "HubMetricsSettings",
    "HubMqttSettings",
    "HubSettings",
    "HubStoreSettings",
    "IdCardSettings",
    "KeysSettings",
    "LogSettings",
    "MetricsSettings",
    "MqttSettings",
    "PrinterSettings",
    "Role",
    "StationConfig",
    "StationSettings",
    "StoreSettings",
    "TransferSettings",
    "detect_role",
    "effective_dict",
    "load_config",
    "load_hub_config",
    "load_station_config",
    "render_effective",
    "render_json",
]
