"""Settings from the TOML configuration turned into the parameters of the lower layers.

The lower layers (sync/, devices/) never import gateway/, so each takes its own small
parameter objects; this is the one place that maps one onto the other.
"""

from __future__ import annotations

from devices.camera import CameraSettings
from devices.idcard import ReaderSettings
from devices.normalise import NormalisePolicy
from devices.printer import PrinterConfig
from gateway.config.hub import HubConfig
from gateway.config.station import StationConfig
from protocols.envelope import Suite
from sync.mqttlink import MqttSettings
from sync.uplink import TransferSettings

SUITES = {
    "x25519-sha256-aes256gcm": Suite.X25519_SHA256_AES256GCM,
    "x25519-sha256-chacha20poly1305": Suite.X25519_SHA256_CHACHA20POLY1305,
}


def suite(name: str) -> Suite:
    return SUITES[name]


def mqtt_settings(cfg: StationConfig | HubConfig, client_id: str) -> MqttSettings:
    m = cfg.mqtt
    return MqttSettings(
        host=m.host, port=m.port, client_id=client_id, keepalive=m.keepalive,
        connect_timeout=float(m.connect_timeout_seconds),
        session_expiry=m.session_expiry_seconds, tls=m.tls, ca_file=m.ca_file,
        cert_file=m.cert_file, key_file=m.key_file,
        # a send that makes no progress for about two keepalives is a dead link
        user_timeout_ms=max(10_000, m.keepalive * 2000),
    )


def transfer_settings(cfg: StationConfig) -> TransferSettings:
    t = cfg.transfer
    # Chunks must leave room for the message's other fields under the broker's packet limit.
    ceiling = cfg.mqtt.max_packet_size - 1024
    return TransferSettings(
        chunk_min=min(t.chunk_min_bytes, ceiling), chunk_max=min(t.chunk_max_bytes, ceiling),
        chunk_target_seconds=t.chunk_target_seconds, window=t.window,
        stall_timeout=float(t.stall_timeout_seconds),
        backoff_initial=t.backoff_initial_seconds, backoff_max=t.backoff_max_seconds,
        daily_budget=t.daily_budget_bytes, outbox_poll=t.outbox_poll_seconds,
        bundle=t.bundle_small_packages,
    )


# -- devices ---------------------------------------------------------------------------------


def camera_policy(cfg: StationConfig) -> NormalisePolicy:
    c = cfg.devices.camera
    return NormalisePolicy(
        max_pixels=c.max_pixels, dpi=c.dpi or None, page_width_mm=float(c.page_width_mm),
        greyscale=c.greyscale, jpeg_quality=c.jpeg_quality,
    )


def camera_settings(cfg: StationConfig) -> CameraSettings:
    c = cfg.devices.camera
    return CameraSettings(source="http" if c.source == "http" else "v4l2", device=str(c.device),
                          url=c.url, width=c.width, height=c.height)


def reader_settings(cfg: StationConfig) -> ReaderSettings:
    c = cfg.devices.idcard
    return ReaderSettings(
        bauds=(115200, 9600) if c.baud == 0 else (c.baud,),  # 0 = probe, fastest first
        reply_timeout=c.timeout_seconds, probe_timeout=c.timeout_seconds,
        poll_interval=c.poll_interval_seconds,
    )


def printer_config(cfg: StationConfig) -> PrinterConfig:
    c = cfg.devices.printer
    return PrinterConfig(connection="tcp" if c.connection == "tcp" else "serial",
                         port=str(c.port), baudrate=c.baud, host=c.host, tcp_port=c.tcp_port,
                         status_poll_seconds=c.status_poll_seconds)
