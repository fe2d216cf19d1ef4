"""After a reconnect the station sends right behind CONNECT, a round trip before CONNACK (the
uplink's early flight), and nothing is lost or applied twice: real uplink, real hub worker,
real Mosquitto, a real cut by the link simulator."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from gateway.testbed.broker import MosquittoBroker
from gateway.testbed.linksim import LinkProfile, LinkSimulator
from sync.mqttlink import MqttSettings
from sync.uplink import StationUplink
from tests.sync.test_uplink_bundles import FAST, STATION, county, drained, hub_has, running


async def test_after_a_cut_the_first_chunks_go_before_connack_and_arrive_once(
    plain_broker: MosquittoBroker, tmp_path: Path
) -> None:
    profile = LinkProfile(up_rate=40_000, down_rate=40_000, latency=0.05)
    async with county(plain_broker, tmp_path) as c, LinkSimulator(
            plain_broker.host, plain_broker.port, profile) as link:
        expected = await c.cases(30)
        uplink = StationUplink(
            store=c.station_store, identity=c.station, hub=c.hub.public(), station_id=STATION,
            settings=replace(FAST, backoff_initial=0.1),
            mqtt=MqttSettings(host=link.host, port=link.port, tls=False, client_id=STATION,
                              keepalive=10, session_expiry=60))
        async with running(uplink):
            async with asyncio.timeout(20):  # about a third of the ~100 KB are across
                while link.stats.bytes_up < 30_000:
                    await asyncio.sleep(0.02)
            link.cut_now()
            assert await drained(c.station_store)
        await hub_has(c, expected)
    assert uplink.stats.connects >= 2
    assert uplink.stats.sent_before_connack > 0  # the reconnect did not wait for CONNACK
    assert c.worker.stats.accepted == 60  # 30 cases x (events + scan), each committed once


async def test_no_early_flight_on_the_first_connection(
    plain_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A fresh process cannot know the broker still holds its subscription: answers to chunks
    sent before SUBSCRIBE could be lost, so the first connection waits for CONNACK."""
    async with county(plain_broker, tmp_path) as c:
        expected = await c.cases(3)
        async with running(c.uplink(FAST)) as uplink:
            assert await drained(c.station_store)
        await hub_has(c, expected)
    assert uplink.stats.connects == 1 and uplink.stats.sent_before_connack == 0
