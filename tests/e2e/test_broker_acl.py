"""The shipped broker config + ACL, enforced by a real Mosquitto with real client certificates.

Mosquitto 2.0.11 semantics these tests pin down: a publish outside a client's rights is answered
"Not authorized" (MQTT 5 PUBACK 0x87) and dropped; a subscription outside its rights is granted
(SUBACK) but nothing outside its rights is ever delivered on it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.pki import ClientCert, revoke
from gateway.testbed.broker import MosquittoBroker, client_tls_context
from tests.conftest import STATION_A, STATION_B, CountyPki, make_pki

HUB_UPLINK = "$share/cunlink-hub/cl/+/u"
NOT_AUTHORIZED = 0x87
ACCEPTED = {0x00, 0x10}  # success / "no matching subscribers"
QUIET = 0.5  # seconds to wait for a message that must not come, after an ordered marker


@asynccontextmanager
async def connect(
    broker: MosquittoBroker, cert: ClientCert | None, *, ca: Path | None = None,
    client_id: str = "", clean_start: bool = True, give_up: float = 5,
) -> AsyncIterator[aiomqtt.Client]:
    client = aiomqtt.Client(
        "127.0.0.1", broker.port, identifier=client_id or None,
        protocol=aiomqtt.ProtocolVersion.V5, clean_start=clean_start,
        tls_context=client_tls_context(cert, ca_file=ca), timeout=give_up,
    )
    async with client:
        yield client


async def drain(client: aiomqtt.Client, quiet: float) -> list[aiomqtt.Message]:
    """Every message that arrives until none has come for `quiet` seconds (bounded: 50)."""
    got: list[aiomqtt.Message] = []
    while len(got) < 50 and (msg := await next_message(client, quiet)) is not None:
        got.append(msg)
    return got


async def next_message(client: aiomqtt.Client, within: float) -> aiomqtt.Message | None:
    try:
        async with asyncio.timeout(within):
            return await anext(aiter(client.messages))
    except TimeoutError:
        return None


def puback_reason(broker: MosquittoBroker, cert: ClientCert, topic: str) -> int:
    """Publish once at QoS 1 with paho and return the broker's PUBACK reason code (aiomqtt
    drops it). Blocking: call through asyncio.to_thread."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.tls_set_context(client_tls_context(cert))
    acked = threading.Event()
    reasons: list[int] = []

    def on_publish(c: object, u: object, mid: int, reason: ReasonCode, p: object) -> None:
        reasons.append(reason.value)
        acked.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(topic, b"probe", qos=1)
        assert acked.wait(5), f"no PUBACK for {topic} within 5 s"
    finally:
        client.disconnect()
        client.loop_stop()
    return reasons[0]


async def test_station_uplink_reaches_hub_through_shared_subscription(
    broker: MosquittoBroker, pki: CountyPki
) -> None:
    async with connect(broker, pki.hub) as hub:
        await hub.subscribe(HUB_UPLINK, qos=1)
        async with connect(broker, pki.station_a) as station:
            await station.publish(f"cl/{STATION_A}/u", b"chunk-1", qos=1)
        msg = await next_message(hub, 5)
    assert msg is not None, "the hub did not receive station A's uplink"
    assert (str(msg.topic), msg.payload) == (f"cl/{STATION_A}/u", b"chunk-1")


@pytest.mark.parametrize("suffix", ["u", "s", "h"])
async def test_station_cannot_publish_into_another_stations_topics(
    broker: MosquittoBroker, pki: CountyPki, suffix: str
) -> None:
    forged, own = f"cl/{STATION_B}/{suffix}", f"cl/{STATION_A}/{suffix}"
    async with connect(broker, pki.hub) as hub:
        await hub.subscribe(f"cl/+/{suffix}", qos=1)
        assert await asyncio.to_thread(puback_reason, broker, pki.station_a, forged) == (
            NOT_AUTHORIZED
        )
        # A's own publish comes after the refused one on the same broker: if the forged one had
        # been let through, the hub would see it first.
        assert await asyncio.to_thread(puback_reason, broker, pki.station_a, own) in ACCEPTED
        first = await next_message(hub, 5)
        later = await next_message(hub, QUIET)
    assert first is not None and str(first.topic) == own
    assert later is None, f"unexpected delivery on {later.topic if later else ''}"


async def test_station_cannot_write_its_own_downlink_nor_hub_the_uplink(
    broker: MosquittoBroker, pki: CountyPki
) -> None:
    a_down = f"cl/{STATION_A}/d"
    assert await asyncio.to_thread(puback_reason, broker, pki.station_a, a_down) == NOT_AUTHORIZED
    a_up = f"cl/{STATION_A}/u"
    assert await asyncio.to_thread(puback_reason, broker, pki.hub, a_up) == NOT_AUTHORIZED
    assert await asyncio.to_thread(puback_reason, broker, pki.hub, a_down) in ACCEPTED


async def test_station_receives_only_its_own_downlink(
    broker: MosquittoBroker, pki: CountyPki
) -> None:
    async with (
        connect(broker, pki.station_a) as snoop,
        connect(broker, pki.station_b) as victim,
        connect(broker, pki.hub) as hub,
    ):
        # Mosquitto 2.0 grants these subscriptions and filters at delivery.
        for topic in (f"cl/{STATION_B}/d", "cl/+/d", "#", "$share/g/cl/+/d"):
            await snoop.subscribe(topic, qos=1)
        await victim.subscribe(f"cl/{STATION_B}/d", qos=1)
        await hub.publish(f"cl/{STATION_B}/d", b"for B only", qos=1)
        await hub.publish(f"cl/{STATION_A}/d", b"for A", qos=1)
        got_b = await next_message(victim, 5)
        got_a = await drain(snoop, QUIET)
    assert got_b is not None and got_b.payload == b"for B only"
    # A's own downlink arrives (once per overlapping subscription); B's never does.
    assert got_a, "station A did not receive its own downlink"
    assert {(str(m.topic), m.payload) for m in got_a} == {(f"cl/{STATION_A}/d", b"for A")}


async def test_station_cannot_take_over_another_stations_session(
    broker: MosquittoBroker, pki: CountyPki
) -> None:
    # use_username_as_clientid: A asking for B's client id still connects as A, so B's
    # persistent session (and its queued downlink) stays B's.
    async with connect(broker, pki.station_b, client_id=STATION_B, clean_start=False) as victim:
        await victim.subscribe(f"cl/{STATION_B}/d", qos=1)
        async with connect(broker, pki.station_a, client_id=STATION_B, clean_start=False):
            async with connect(broker, pki.hub) as hub:
                await hub.publish(f"cl/{STATION_B}/d", b"still yours", qos=1)
            msg = await next_message(victim, 5)
    assert msg is not None and msg.payload == b"still yours"
    assert f"as {STATION_A} (" in broker.log_text(), "the broker did not rename A's client id"


async def test_client_without_certificate_is_refused(
    broker: MosquittoBroker, pki: CountyPki
) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with connect(broker, None, ca=pki.paths.ca_cert, give_up=1.5):
            pass
    assert "peer did not return a certificate" in broker.log_text()


async def test_certificate_from_another_ca_is_refused(
    broker: MosquittoBroker, pki: CountyPki, tmp_path: Path
) -> None:
    other = make_pki(tmp_path / "other-county")
    # Same CN as a real station, trusted server, but signed by another county's CA.
    impostor = ClientCert(cert=other.station_a.cert, key=other.station_a.key, ca=pki.paths.ca_cert)
    async with connect(broker, pki.hub) as hub:
        await hub.subscribe(HUB_UPLINK, qos=1)
        with pytest.raises(aiomqtt.MqttError):
            async with connect(broker, impostor, give_up=1.5) as station:
                await station.publish(f"cl/{STATION_A}/u", b"forged", qos=1)
        assert await next_message(hub, QUIET) is None
    assert "certificate verify failed" in broker.log_text()


async def test_revoked_certificate_is_refused_after_reload(
    broker: MosquittoBroker, pki: CountyPki
) -> None:
    async with connect(broker, pki.station_a):
        pass  # admitted before
    revoke(pki.dir, STATION_A)
    broker.reload()
    await asyncio.sleep(0.3)  # the broker handles SIGHUP in its main loop
    with pytest.raises(aiomqtt.MqttError):
        async with connect(broker, pki.station_a, give_up=1.5):
            pass
    async with connect(broker, pki.station_b):
        pass  # everyone else still admitted
