"""Hub workers commit each package once: real workers on a real Mosquitto, one SQLite store and
one incoming/ directory shared by two of them, a package sealed by the station's real intake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.testbed.broker import MosquittoBroker
from protocols import wire
from protocols.envelope import LocalIdentity, Suite
from sync.assembly import Assembly
from sync.hubworker import COMMIT_BUCKETS, HubWorker, LatencyHistogram
from sync.intake import CaseIntake
from sync.mqttlink import MqttSettings
from sync.store import Store

STATION = "ST1"
APPLICANT = {"id_type": "resident", "id_number": "11010519491231002X", "name": "测试甲",
             "sex": "female"}


def identity(name: str) -> LocalIdentity:
    return LocalIdentity(id=name, signing_key=Ed25519PrivateKey.generate(),
                         encryption_key=X25519PrivateKey.generate())


async def sealed_case(tmp: Path, station: LocalIdentity, hub: LocalIdentity) -> tuple[bytes, bytes]:
    """(package id, sealed batch) of one submitted case, made by the station's own intake."""
    async with await Store.open(tmp / "station.db", blob_dir=tmp / "station-blobs") as store:
        intake = CaseIntake(store, station, hub.public(), Suite.X25519_SHA256_AES256GCM,
                            STATION)
        await intake.create_case("MZ-0001", APPLICANT, {}, [], submit=True)
        (entry,) = await store.outbox_all()
    assert entry.payload is not None
    return entry.package_id, entry.payload


@pytest.fixture
async def station_client(plain_broker: MosquittoBroker) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(plain_broker.host, plain_broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5, timeout=10) as client:
        yield client


async def test_a_package_arriving_many_times_at_two_workers_is_committed_once(
    plain_broker: MosquittoBroker, station_client: aiomqtt.Client, tmp_path: Path
) -> None:
    station, hub = identity(STATION), identity("HUB")
    pid, sealed = await sealed_case(tmp_path, station, hub)
    peers = {STATION: station.public()}
    async with AsyncExitStack() as stack:
        workers: list[HubWorker] = []
        stores: list[Store] = []
        for w in range(2):
            store = await Store.open(tmp_path / "hub.db", blob_dir=tmp_path / "blobs",
                                     hub_origins=frozenset({"HUB"}))
            stack.push_async_callback(store.close)
            worker = HubWorker(store=store, identity=hub, stations=peers.get,
                               incoming=tmp_path / "incoming", share_group="commit-test",
                               mqtt=MqttSettings(host=plain_broker.host, port=plain_broker.port,
                                                 tls=False, client_id=f"HUB-w{w}",
                                                 keepalive=10, session_expiry=60))
            task = asyncio.create_task(worker.run())

            async def stop(worker: HubWorker = worker, task: asyncio.Task[None] = task) -> None:
                worker.stop()
                await asyncio.wait_for(task, timeout=20)

            stack.push_async_callback(stop)
            workers.append(worker)
            stores.append(store)
        await station_client.subscribe(f"cl/{STATION}/d", qos=1)
        async with asyncio.timeout(30):  # both workers subscribed: each counted a probe
            while not all(w.stats.rejected["garbage"] for w in workers):
                await station_client.publish(f"cl/{STATION}/u", b"\xc1", qos=1)
                await asyncio.sleep(0.1)

        chunk = wire.encode(wire.Chunk(package_id=pid, kind=wire.PackageKind.BATCH,
                                       size=len(sealed), offset=0, data=sealed))
        for _ in range(30):  # a station re-sending after cuts, as fast as it can
            await station_client.publish(f"cl/{STATION}/u", chunk, qos=1)
        acks = 0
        async with asyncio.timeout(30):
            async for message in station_client.messages:
                assert isinstance(message.payload, bytes)
                msg = wire.decode(message.payload)
                if isinstance(msg, wire.Ack) and msg.package_id == pid:
                    acks += 1
                if acks and sum(w.stats.accepted + w.stats.rejected["replay"]
                                for w in workers) >= 25:
                    break
        await asyncio.sleep(0.5)  # let any last copy settle
        accepted = sum(w.stats.accepted for w in workers)
        cases = await stores[0].list_cases()
        assert await stores[1].inbox_has(pid)

    assert accepted == 1, [w.stats for w in workers]
    # Both workers got copies (the share splits them), so the once is not luck of routing.
    assert all(w.stats.accepted + w.stats.rejected["replay"] for w in workers)
    assert all(not w.stats.rejected["internal"] for w in workers)
    assert len(cases) == 1
    leftovers = [p.name for p in (tmp_path / "incoming").iterdir()
                 if p.suffix in (".part", ".meta", ".commit")]
    assert leftovers == []


def test_only_one_claim_at_a_time(tmp_path: Path) -> None:
    # Two Assembly objects on one directory behave as two worker processes: flock is per open
    # file, so the second open of the claim file is refused while the first holds it.
    one, two = Assembly(tmp_path, min_free_bytes=0), Assembly(tmp_path, min_free_bytes=0)
    pid = bytes(range(16))
    with one.claim(pid) as first:
        assert first
        with two.claim(pid) as second:
            assert not second
    with two.claim(pid) as again:  # released (and the claim file removed) when done
        assert again
    assert not list(tmp_path.glob("*.commit"))


def test_latency_histogram_buckets_follow_prometheus_le() -> None:
    hist = LatencyHistogram()
    for seconds in (0.0, 0.005, 0.0051, 60.0, 61.0):
        hist.observe(seconds)
    cumulative = dict(hist.cumulative())
    assert cumulative[0.005] == 2  # le: a value equal to a bound counts in that bucket
    assert cumulative[0.01] == 3
    assert cumulative[60.0] == 4
    assert cumulative[float("inf")] == 5 == hist.count
    assert hist.total == pytest.approx(121.0101)
    assert len(hist.counts) == len(COMMIT_BUCKETS) + 1
