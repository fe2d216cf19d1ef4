"""Building MQTT 5 connections the way a 2G station needs them (see reference/sync.md).

- a fixed client id, clean start off and a session expiry, so downlink messages wait at the
  broker while the station is offline (aiomqtt's default start discards them on every start);
- TLS with a client certificate: the broker takes the certificate's CN as the identity;
- TCP keepalive and TCP_USER_TIMEOUT so a send into a dead link fails in tens of seconds rather
  than the kernel's fifteen minutes; the transfer engine watches progress on top of this;
- a fresh aiomqtt ``Client`` per connection: cunlink's durability lives in its own outbox, so
  paho's in-memory resend store has nothing worth keeping, and a fresh object cannot be wedged
  by a disconnect that never completed on a stalled link.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSettings:
    host: str
    port: int
    client_id: str
    keepalive: int = 60
    connect_timeout: float = 30.0
    session_expiry: int = 604_800
    tls: bool = True
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    user_timeout_ms: int = 30_000


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=str(settings.ca_file) if settings.ca_file else None,
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.cert_file and settings.key_file:
        context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    return context


def make_client(
    settings: MqttSettings, *, will_topic: str | None = None, will_payload: bytes = b""
) -> aiomqtt.Client:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = settings.session_expiry
    will = (
        aiomqtt.Will(will_topic, will_payload, qos=1, retain=True) if will_topic else None
    )
    options: list[tuple[int, int, int]] = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        options.append((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, settings.user_timeout_ms))
    return aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=settings.client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=properties,
        keepalive=settings.keepalive,
        timeout=settings.connect_timeout,
        tls_context=tls_context(settings),
        will=will,
        socket_options=options,
        # Incoming messages beyond this are refused by flow control rather than queued without
        # bound in memory (paho would drop them after acking when its queue is full).
        max_queued_incoming_messages=1000,
        max_inflight_messages=20,
    )


def force_close(client: aiomqtt.Client) -> None:
    """Shut the socket of a stalled connection so paho notices at once.

    A graceful DISCONNECT would queue behind the half-sent chunk on a link that moves no
    bytes; shutting the socket makes paho's loop fail and aiomqtt's context exit promptly.
    """
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
