"""The station's MQTT client hooks (sync.mqttlink.Client) against a real Mosquitto: CONNECT is
reported as sent before CONNACK, and the CONNACK's session-present flag is kept."""

from __future__ import annotations

import asyncio

from gateway.testbed.broker import MosquittoBroker
from sync.mqttlink import MqttSettings, make_client


def settings(broker: MosquittoBroker, client_id: str) -> MqttSettings:
    return MqttSettings(host=broker.host, port=broker.port, client_id=client_id, tls=False,
                        keepalive=10, session_expiry=60)


async def test_connect_sent_fires_before_connack_and_session_present_is_kept(
    plain_broker: MosquittoBroker,
) -> None:
    first = make_client(settings(plain_broker, "hooks-1"))
    seen_before_connack: list[bool] = []

    async def watch() -> None:
        await first.connect_sent.wait()
        seen_before_connack.append(first.session_present is None)

    watcher = asyncio.create_task(watch())
    async with first:
        await asyncio.wait_for(watcher, timeout=5)
        # a new client id: the broker had no session for it
        assert first.session_present is False
        await first.subscribe("cl/hooks-1/d", qos=1)
    assert seen_before_connack == [True]  # CONNECT was on its way before CONNACK came back

    again = make_client(settings(plain_broker, "hooks-1"))
    async with again:  # clean start off, session expiry 60 s: the session (and SUBSCRIBE) kept
        assert again.connect_sent.is_set()
        assert again.session_present is True


async def test_a_publish_right_behind_connect_reaches_a_subscriber(
    plain_broker: MosquittoBroker,
) -> None:
    """What the uplink's early flight relies on: a QoS 0 PUBLISH written after CONNECT and
    before CONNACK is delivered (MQTT 5.0 3.1.4 allows it; Mosquitto honours it)."""
    listener = make_client(settings(plain_broker, "listener"))
    async with listener:
        await listener.subscribe("cl/early/u", qos=0)
        sender = make_client(settings(plain_broker, "early"))
        sent: list[bool] = []

        async def early() -> None:
            await sender.connect_sent.wait()
            sent.append(sender.session_present is None)  # CONNACK not in yet
            await sender.publish("cl/early/u", b"behind connect", qos=0)

        task = asyncio.create_task(early())
        async with sender:
            await asyncio.wait_for(task, timeout=5)
            async with asyncio.timeout(5):
                async for message in listener.messages:
                    assert message.payload == b"behind connect"
                    break
        assert sent == [True]
