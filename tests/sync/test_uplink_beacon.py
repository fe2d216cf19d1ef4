"""The station uplink's health beacon on ``cl/{station}/h``, against a real Mosquitto (TLS, ACL).

The hub's certificate subscribes to the beacon topic as the hub worker does; the station's
uplink connects with its own certificate, once directly and once through the link simulator so
that a real cut forces a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiomqtt
import pytest

from gateway.keys import init_keys, load_identity
from gateway.testbed.broker import MosquittoBroker, client_tls_context
from gateway.testbed.linksim import LinkProfile, LinkSimulator
from protocols import wire
from sync.mqttlink import MqttSettings
from sync.store import Store
from sync.uplink import StationUplink, TransferSettings
from tests.conftest import STATION_A, CountyPki

NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
FAST = TransferSettings(stall_timeout=5.0, backoff_initial=0.1, backoff_max=0.5,
                        outbox_poll=0.2, shutdown_grace=1.0)


class Beacons:
    """What the hub side heard on the station's beacon topic, with arrival times."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []
        self.changed = asyncio.Event()

    async def wait_count(self, count: int, within: float) -> bool:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=left)
        return True


@contextlib.asynccontextmanager
async def hub_listener(broker: MosquittoBroker, pki: CountyPki) -> AsyncIterator[Beacons]:
    beacons = Beacons()
    client = aiomqtt.Client("127.0.0.1", broker.port, identifier="beacon-listener",
                            protocol=aiomqtt.ProtocolVersion.V5, timeout=10,
                            tls_context=client_tls_context(pki.hub))
    async with client:
        await client.subscribe(wire.topic(STATION_A, "h"), qos=0)

        async def listen() -> None:
            async for message in client.messages:
                if isinstance(message.payload, bytes):
                    beacons.received.append((time.monotonic(), message.payload))
                    beacons.changed.set()

        task = asyncio.create_task(listen())
        try:
            yield beacons
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def running_uplink(
    tmp_path: Path, pki: CountyPki, port: int,
    beacon: Callable[[], Awaitable[bytes]], interval: float,
) -> AsyncIterator[StationUplink]:
    init_keys("station", STATION_A, tmp_path / "st-keys", force=False, now=NOW)
    hub = init_keys("hub", pki.hub_id, tmp_path / "hub-keys", force=False, now=NOW)
    store = await Store.open(tmp_path / "station.db", blob_dir=tmp_path / "blobs",
                             clock_max_ahead_ms=None)
    cert = pki.station_a
    uplink = StationUplink(
        store=store, identity=load_identity(tmp_path / "st-keys", STATION_A),
        hub=hub.peer(), station_id=STATION_A,
        mqtt=MqttSettings(host="127.0.0.1", port=port, client_id=STATION_A, keepalive=10,
                          connect_timeout=10, ca_file=cert.ca, cert_file=cert.cert,
                          key_file=cert.key),
        settings=FAST, beacon=beacon, beacon_interval=interval,
    )
    task = asyncio.create_task(uplink.run())
    try:
        yield uplink
    finally:
        uplink.stop()
        try:
            await asyncio.wait_for(task, timeout=15)
        finally:
            await store.close()


async def test_beacon_after_connect_and_every_interval(
    broker: MosquittoBroker, pki: CountyPki, tmp_path: Path
) -> None:
    calls = 0

    async def beacon() -> bytes:
        nonlocal calls
        calls += 1
        return f"beacon {calls}".encode()

    async with hub_listener(broker, pki) as heard:
        started = time.monotonic()
        async with running_uplink(tmp_path, pki, broker.port, beacon, 0.5) as uplink:
            assert await heard.wait_count(1, within=15), "no beacon after connecting"
            first_at = heard.received[0][0]
            assert heard.received[0][1] == b"beacon 1"
            assert await heard.wait_count(3, within=10), heard.received
            # Spaced by the interval, not sent in a burst (generous: the CPU is shared).
            assert heard.received[2][0] - first_at >= 0.8
            assert uplink.stats.beacons_sent >= 3
            assert uplink.stats.bytes_up >= sum(len(p) for _, p in heard.received[:3])
            assert uplink.stats.connects == 1
        # The first beacon follows the connect, it does not wait an interval.
        assert first_at - started < 10


async def test_failing_beacon_source_never_breaks_the_link(
    broker: MosquittoBroker, pki: CountyPki, tmp_path: Path
) -> None:
    calls = 0

    async def flaky() -> bytes:
        nonlocal calls
        calls += 1
        if calls % 2 == 1:
            raise RuntimeError("status source failed")
        return f"ok {calls}".encode()

    async with (
        hub_listener(broker, pki) as heard,
        running_uplink(tmp_path, pki, broker.port, flaky, 0.3) as uplink,
    ):
        assert await heard.wait_count(2, within=15), heard.received
        assert [p for _, p in heard.received[:2]] == [b"ok 2", b"ok 4"]
        assert uplink.stats.link_up
        assert uplink.stats.connects == 1 and uplink.stats.disconnects == 0
        assert uplink.stats.beacons_sent - len(heard.received) in (0, 1)  # one may be in flight


async def test_beacon_again_after_a_reconnect(
    broker: MosquittoBroker, pki: CountyPki, tmp_path: Path
) -> None:
    async def beacon() -> bytes:
        return b"hello"

    # Interval far longer than the test: any second beacon can only come from the reconnect.
    async with (
        hub_listener(broker, pki) as heard,
        LinkSimulator("127.0.0.1", broker.port, LinkProfile(), seed=1) as link,
        running_uplink(tmp_path, pki, link.port, beacon, 600.0) as uplink,
    ):
        assert await heard.wait_count(1, within=15)
        link.cut_now()
        assert await heard.wait_count(2, within=20), uplink.stats
        assert uplink.stats.connects >= 2
        assert uplink.stats.beacons_sent >= 2


def test_beacon_interval_must_be_positive(tmp_path: Path) -> None:
    async def beacon() -> bytes:
        return b""

    with pytest.raises(ValueError, match="beacon_interval"):
        StationUplink(
            store=None,  # type: ignore[arg-type]  # rejected before the store is touched
            identity=None,  # type: ignore[arg-type]
            hub=None,  # type: ignore[arg-type]
            station_id=STATION_A,
            mqtt=MqttSettings(host="127.0.0.1", port=1, client_id=STATION_A),
            settings=FAST, beacon=beacon, beacon_interval=0,
        )
