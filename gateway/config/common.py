"""Settings and rules shared by the station and the hub: the broker link, logging, value kinds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.fields import Bool, Choice, Int, OptionalPath, Text, setting
from gateway.config.loader import Problem, Rule, Values

ID = Text(describe="1 to 32 characters of A-Z a-z 0-9 _ -", pattern=r"[A-Za-z0-9_-]{1,32}")
# Loose on purpose: names, IPv4 and IPv6 (with zone) pass; spaces, slashes and URLs do not.
HOST = Text(describe="a host name or IP address", pattern=r"[A-Za-z0-9_.:%\[\]-]{1,253}")
PORT = Int(lo=1, hi=65535)
LANGUAGE = Choice(values=("zh-CN", "en"))
SUITE = Choice(values=("x25519-sha256-aes256gcm", "x25519-sha256-chacha20poly1305"))
LOG_LEVEL = Choice(values=("debug", "info", "warning", "error"))


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSettings:
    """The connection to the county's MQTT 5 broker (TLS with a client certificate)."""

    host: str = field(metadata=setting(HOST))
    port: int = field(default=8883, metadata=setting(PORT))
    tls: bool = field(default=True, metadata=setting(Bool()))
    ca_file: Path | None = field(default=None, metadata=setting(OptionalPath()))
    cert_file: Path | None = field(default=None, metadata=setting(OptionalPath()))
    key_file: Path | None = field(default=None, metadata=setting(OptionalPath()))
    # paho notices a dead link after up to 2 x keepalive; 60 s suits 2G without chattiness.
    keepalive: int = field(default=60, metadata=setting(Int(lo=5, hi=600)))
    connect_timeout_seconds: int = field(default=30, metadata=setting(Int(lo=1, hi=300)))
    # A week: downlink messages wait at the broker while a station is offline this long.
    session_expiry_seconds: int = field(default=604800, metadata=setting(Int(lo=60, hi=31536000)))
    max_packet_size: int = field(default=262144, metadata=setting(Int(lo=1024, hi=268435455)))


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    level: str = field(default="info", metadata=setting(LOG_LEVEL))


def tls_files_rule(section: str) -> Rule:
    """With tls = true the broker demands a client certificate, so all three files are needed."""

    def rule(v: Values) -> Iterator[Problem]:
        if not v[f"{section}.tls"]:
            return
        what = {
            "ca_file": "the county CA certificate (PEM)",
            "cert_file": "this machine's client certificate (PEM)",
            "key_file": "this machine's TLS private key (PEM)",
        }
        for key, text in what.items():
            if v[f"{section}.{key}"] is None:
                yield Problem(
                    key=f"{section}.{key}",
                    text=f"required when tls = true; expected a path to {text}, got nothing; "
                    "set it, or set tls = false (only for a test broker)",
                )

    return rule
