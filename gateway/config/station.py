"""The station's settings (station.toml): schema, defaults, and cross-field rules."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.common import (
    HOST,
    LANGUAGE,
    PORT,
    SUITE,
    LogSettings,
    MqttSettings,
    tls_files_rule,
)
from gateway.config.fields import (
    Bool,
    Choice,
    Float,
    Int,
    IntChoice,
    ListOf,
    PathValue,
    Text,
    section,
    setting,
    tables,
)
from gateway.config.loader import Problem, Rule, Values, load
from sync.ids import IdError, check_station_id


def _origin_port_ok(origin: str) -> bool:
    port = re.search(r":(\d+)$", origin)
    return port is None or 1 <= int(port.group(1)) <= 65535


def _station_id_ok(value: str) -> bool:
    # One rule for the config and the case numbers (`ST001-YYYYMMDD-NNNN`): sync.ids decides.
    try:
        check_station_id(value)
    except IdError:
        return False
    return True


# No '-': it separates the parts of a case number, and the id is also an MQTT topic level.
STATION_ID = Text(
    describe="1 to 32 characters of A-Z a-z 0-9 _ (no '-', no spaces)",
    check=_station_id_ok,
)

# What a browser sends in its Origin header: scheme://host[:port], no path, no trailing slash.
ORIGIN = Text(
    describe='an origin like "http://192.168.1.20:8080" (scheme://host[:port], no path)',
    pattern=r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?",
    check=_origin_port_ok,
)
URL = Text(
    describe='an http:// or https:// URL, or "" for none',
    pattern=r"https?://\S+",
    allow_empty=True,
)
HOST_OR_EMPTY = Text(
    describe='a host name or IP address, or ""', pattern=HOST.pattern, allow_empty=True
)
TOKEN_NAME = Text(
    describe="1 to 64 characters of A-Z a-z 0-9 _ . -", pattern=r"[A-Za-z0-9_.-]{1,64}"
)
# 16 characters at least: a terminal token on a LAN must not be guessable by trying.
TOKEN = Text(describe="a string of 16 to 256 characters", min_len=16, max_len=256)
IDCARD_BAUD = IntChoice(
    values=(0, 9600, 19200, 38400, 57600, 115200), note="0 = probe 115200 then 9600"
)
PRINTER_BAUD = IntChoice(values=(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200))


@dataclass(frozen=True, slots=True, kw_only=True)
class StationSettings:
    id: str = field(metadata=setting(STATION_ID))
    state_dir: Path = field(default=Path("/var/lib/cunlink"), metadata=setting(PathValue()))
    language: str = field(default="zh-CN", metadata=setting(LANGUAGE))


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysSettings:
    dir: Path = field(default=Path("/etc/cunlink/keys"), metadata=setting(PathValue()))
    hub_enrollment: Path = field(
        default=Path("/etc/cunlink/hub.enrollment.json"), metadata=setting(PathValue())
    )
    suite: str = field(default="x25519-sha256-aes256gcm", metadata=setting(SUITE))


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferSettings:
    chunk_min_bytes: int = field(default=4096, metadata=setting(Int(lo=256, hi=16777216)))
    chunk_max_bytes: int = field(default=65536, metadata=setting(Int(lo=256, hi=268434431)))
    chunk_target_seconds: float = field(default=4.0, metadata=setting(Float(lo=0.5, hi=60.0)))
    window: int = field(default=3, metadata=setting(Int(lo=1, hi=16)))
    stall_timeout_seconds: int = field(default=45, metadata=setting(Int(lo=5, hi=3600)))
    backoff_initial_seconds: float = field(default=1.0, metadata=setting(Float(lo=0.1, hi=600.0)))
    backoff_max_seconds: float = field(default=300.0, metadata=setting(Float(lo=1.0, hi=86400.0)))
    daily_budget_bytes: int = field(default=0, metadata=setting(Int(lo=0, hi=10**13)))  # 0 = off
    outbox_poll_seconds: float = field(default=1.0, metadata=setting(Float(lo=0.05, hi=60.0)))
    bundle_small_packages: bool = field(default=True, metadata=setting(Bool()))


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    disk_floor_mb: int = field(default=200, metadata=setting(Int(lo=0, hi=1_000_000)))
    clock_max_ahead_seconds: int = field(default=300, metadata=setting(Int(lo=1, hi=86400)))
    group_commit_max_batch: int = field(default=256, metadata=setting(Int(lo=1, hi=65536)))
    group_commit_window_ms: float = field(default=2.0, metadata=setting(Float(lo=0.0, hi=1000.0)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """One terminal's bearer token; `name` shows in logs instead of the token."""

    name: str = field(metadata=setting(TOKEN_NAME))
    token: str = field(metadata=setting(TOKEN, secret=True), repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings:
    listen: str = field(default="127.0.0.1", metadata=setting(HOST))
    port: int = field(default=8470, metadata=setting(PORT))
    max_body_bytes: int = field(default=20971520, metadata=setting(Int(lo=1024, hi=1073741824)))
    cors_origins: tuple[str, ...] = field(default=(), metadata=setting(ListOf(item=ORIGIN)))
    tokens: tuple[ApiToken, ...] = field(default=(), metadata=tables(ApiToken))


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    listen: str = field(default="127.0.0.1", metadata=setting(HOST))
    port: int = field(default=9470, metadata=setting(Int(lo=0, hi=65535)))  # 0 = off
    beacon_interval_seconds: int = field(default=300, metadata=setting(Int(lo=10, hi=86400)))


@dataclass(frozen=True, slots=True, kw_only=True)
class IdCardSettings:
    enabled: bool = field(default=False, metadata=setting(Bool()))
    port: Path = field(default=Path("/dev/cunlink-idcard"), metadata=setting(PathValue()))
    baud: int = field(default=0, metadata=setting(IDCARD_BAUD))
    poll_interval_seconds: float = field(default=0.5, metadata=setting(Float(lo=0.05, hi=10.0)))
    timeout_seconds: float = field(default=2.0, metadata=setting(Float(lo=0.1, hi=30.0)))


@dataclass(frozen=True, slots=True, kw_only=True)
class PrinterSettings:
    enabled: bool = field(default=False, metadata=setting(Bool()))
    connection: str = field(default="serial", metadata=setting(Choice(values=("serial", "tcp"))))
    port: Path = field(default=Path("/dev/cunlink-printer"), metadata=setting(PathValue()))
    baud: int = field(default=9600, metadata=setting(PRINTER_BAUD))
    host: str = field(default="", metadata=setting(HOST_OR_EMPTY))
    tcp_port: int = field(default=9100, metadata=setting(PORT))
    encoding: str = field(default="gb18030", metadata=setting(Choice(values=("gb18030", "gb2312"))))
    width_chars: int = field(default=32, metadata=setting(Int(lo=24, hi=64)))
    status_poll_seconds: float = field(default=5.0, metadata=setting(Float(lo=0.5, hi=3600.0)))


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraSettings:
    enabled: bool = field(default=False, metadata=setting(Bool()))
    source: str = field(default="v4l2", metadata=setting(Choice(values=("v4l2", "http"))))
    device: Path = field(default=Path("/dev/cunlink-camera"), metadata=setting(PathValue()))
    url: str = field(default="", metadata=setting(URL))
    width: int = field(default=3264, metadata=setting(Int(lo=16, hi=16384)))
    height: int = field(default=2448, metadata=setting(Int(lo=16, hi=16384)))
    max_pixels: int = field(default=3_000_000, metadata=setting(Int(lo=10_000, hi=100_000_000)))
    dpi: int = field(default=0, metadata=setting(Int(lo=50, hi=1200, also=(0,))))  # 0 = off
    page_width_mm: int = field(default=210, metadata=setting(Int(lo=50, hi=1000)))
    greyscale: bool = field(default=True, metadata=setting(Bool()))
    jpeg_quality: int = field(default=70, metadata=setting(Int(lo=30, hi=95)))


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicesSettings:
    idcard: IdCardSettings = field(default_factory=IdCardSettings, metadata=section(IdCardSettings))
    printer: PrinterSettings = field(
        default_factory=PrinterSettings, metadata=section(PrinterSettings)
    )
    camera: CameraSettings = field(default_factory=CameraSettings, metadata=section(CameraSettings))


@dataclass(frozen=True, slots=True, kw_only=True)
class StationConfig:
    """Everything `cunlink run` needs, validated; built by load_station_config()."""

    station: StationSettings = field(metadata=section(StationSettings))
    keys: KeysSettings = field(default_factory=KeysSettings, metadata=section(KeysSettings))
    mqtt: MqttSettings = field(metadata=section(MqttSettings))
    transfer: TransferSettings = field(
        default_factory=TransferSettings, metadata=section(TransferSettings)
    )
    store: StoreSettings = field(default_factory=StoreSettings, metadata=section(StoreSettings))
    api: ApiSettings = field(default_factory=ApiSettings, metadata=section(ApiSettings))
    metrics: MetricsSettings = field(
        default_factory=MetricsSettings, metadata=section(MetricsSettings)
    )
    log: LogSettings = field(default_factory=LogSettings, metadata=section(LogSettings))
    devices: DevicesSettings = field(
        default_factory=DevicesSettings, metadata=section(DevicesSettings)
    )


def _chunk_sizes(v: Values) -> Iterator[Problem]:
    lo, hi = v["transfer.chunk_min_bytes"], v["transfer.chunk_max_bytes"]
    if lo > hi:
        yield Problem(
            key="transfer.chunk_min_bytes",
            text=f"expected at most chunk_max_bytes ({hi}), got {lo}",
        )
    # A chunk travels in one PUBLISH; 1024 bytes are left for the header and the envelope.
    limit = v["mqtt.max_packet_size"] - 1024
    if hi > limit:
        yield Problem(
            key="transfer.chunk_max_bytes",
            text=f"expected at most [mqtt] max_packet_size - 1024 = {limit}, got {hi}; "
            "lower it or raise max_packet_size (and the broker's limit)",
        )


def _backoff(v: Values) -> Iterator[Problem]:
    first, cap = v["transfer.backoff_initial_seconds"], v["transfer.backoff_max_seconds"]
    if first > cap:
        yield Problem(
            key="transfer.backoff_initial_seconds",
            text=f"expected at most backoff_max_seconds ({cap:g}), got {first:g}",
        )


def _tokens_unique(v: Values) -> Iterator[Problem]:
    seen_names: set[str] = set()
    seen_tokens: set[str] = set()
    for index, item in enumerate(v["api.tokens"]):
        if item.name in seen_names:
            yield Problem(
                key=f"api.tokens.{index}",
                text=f'name "{item.name}" is used twice; give each terminal its own',
            )
        if item.token in seen_tokens:
            yield Problem(
                key=f"api.tokens.{index}",
                text="token is the same as an earlier one; give each terminal its own",
            )
        seen_names.add(item.name)
        seen_tokens.add(item.token)


def _ports_distinct(v: Values) -> Iterator[Problem]:
    port = v["metrics.port"]
    if port != 0 and port == v["api.port"]:
        yield Problem(
            key="metrics.port",
            text=f"expected a port other than [api] port, got {port}; "
            "use different ports, or 0 to turn metrics off",
        )


def _printer_tcp_host(v: Values) -> Iterator[Problem]:
    # Checked only when enabled, so a technician can switch a broken printer off without edits.
    p = "devices.printer"
    if v[f"{p}.enabled"] and v[f"{p}.connection"] == "tcp" and not v[f"{p}.host"]:
        yield Problem(
            key=f"{p}.host",
            text='required when connection = "tcp"; expected the printer\'s host name '
            'or IP address, got ""',
        )


def _camera_http_url(v: Values) -> Iterator[Problem]:
    c = "devices.camera"
    if v[f"{c}.enabled"] and v[f"{c}.source"] == "http" and not v[f"{c}.url"]:
        yield Problem(
            key=f"{c}.url",
            text='required when source = "http"; expected the camera\'s snapshot URL, got ""',
        )


STATION_RULES: tuple[Rule, ...] = (
    tls_files_rule("mqtt"),
    _chunk_sizes,
    _backoff,
    _tokens_unique,
    _ports_distinct,
    _printer_tcp_host,
    _camera_http_url,
)


def load_station_config(path: Path, env: Mapping[str, str] | None = None) -> StationConfig:
    """Load and validate station.toml; `env` (default os.environ) may override single keys."""
    return load(path, StationConfig, rules=STATION_RULES, env=os.environ if env is None else env)
