"""Building MQTT 5 connections the way a 2G station needs them (see reference/sync.md).

- a fixed client id, clean start off and a session expiry, so downlink messages wait at the
  broker while the station is offline (aiomqtt's default start discards them on every start);
- TLS with a client certificate: the broker takes the certificate's CN as the identity;
- TCP keepalive and TCP_USER_TIMEOUT so a send into a dead link fails in tens of seconds rather
  than the kernel's fifteen minutes; the transfer engine watches progress on top of this;
- a fresh aiomqtt ``Client`` per connection: cunlink's durability lives in its own outbox, so
  paho's in-memory resend store has nothing worth keeping, and a fresh object cannot be wedged
  by a disconnect that never completed on a stalled link;
- a client that says when its CONNECT is on its way and whether the broker kept the session,
  so the station can send right behind CONNECT instead of waiting a round trip for CONNACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

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


class Client(aiomqtt.Client):
    """aiomqtt's client, plus ``connect_sent`` and ``session_present``.

    MQTT lets a client send packets right behind its CONNECT without waiting for the CONNACK
    (MQTT 5.0 section 3.1.4); on 2G every round trip is half a second or more, and a link cut
    every few minutes pays it on every reconnect. ``connect_sent`` is set once paho has
    queued CONNECT on the open TLS socket (anything published after it follows it on the wire),
    and ``session_present`` is the CONNACK's flag (False: the broker holds no subscription for
    us, so answers to anything sent before our SUBSCRIBE were lost).

    Both hook aiomqtt 2.x internals (``_client_connect`` runs paho's connect in an executor
    thread; ``_on_connect`` is paho's CONNACK callback), which is why aiomqtt is pinned below
    3. Should a 2.x release rename them, ``connect_sent`` never fires and the station simply
    waits for CONNACK as before; tests/sync/test_mqttlink.py notices.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connect_sent = asyncio.Event()
        self.session_present: bool | None = None
        self._loop_for_hooks: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> Self:
        self._loop_for_hooks = asyncio.get_running_loop()
        await super().__aenter__()
        return self

    def _client_connect(self) -> None:  # an executor thread
        super()._client_connect()
        if self._loop_for_hooks is not None:
            self._loop_for_hooks.call_soon_threadsafe(self.connect_sent.set)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any = None) -> None:  # paho's thread or the event loop
        self.session_present = bool(getattr(flags, "session_present", False))
        super()._on_connect(client, userdata, flags, reason_code, properties)


def make_client(
    settings: MqttSettings, *, will_topic: str | None = None, will_payload: bytes = b""
) -> Client:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = settings.session_expiry
    will = (
        aiomqtt.Will(will_topic, will_payload, qos=1, retain=True) if will_topic else None
    )
    options: list[tuple[int, int, int]] = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        options.append((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, settings.user_timeout_ms))
    return Client(
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
