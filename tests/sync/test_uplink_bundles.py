"""Small packages travel in bundles (docs/protocol.md section 7): the real station uplink and a
real hub worker on a real Mosquitto, cases accepted by the station's real intake.

What must hold: every member is committed exactly once whichever way it travels (in a bundle,
alone, or both after a cut or a restart); the hub's Ack of a bundle clears every member from the
outbox; a bundle the hub refuses costs only the bad member (the others go one by one).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.testbed.broker import MosquittoBroker
from protocols import wire
from protocols.envelope import LocalIdentity, Suite, seal_batch
from sync import bundling
from sync.hubworker import HubWorker
from sync.intake import CaseIntake
from sync.mqttlink import MqttSettings
from sync.store import PRIORITY_EVENTS, OutboxPut, Store
from sync.uplink import StationUplink, TransferSettings

STATION, HUB = "ST1", "HUB"
APPLICANT = {"id_type": "resident", "id_number": "11010519491231002X", "name": "测试甲",
             "sex": "female"}
FAST = TransferSettings(chunk_min=16384, chunk_max=16384, stall_timeout=5.0,
                        backoff_initial=0.1, backoff_max=0.5, outbox_poll=0.1,
                        shutdown_grace=1.0)


def identity(name: str) -> LocalIdentity:
    return LocalIdentity(id=name, signing_key=Ed25519PrivateKey.generate(),
                         encryption_key=X25519PrivateKey.generate())


@dataclass
class County:
    station: LocalIdentity
    hub: LocalIdentity
    station_store: Store
    hub_store: Store
    worker: HubWorker
    intake: CaseIntake
    broker: MosquittoBroker
    tmp: Path

    def uplink(self, settings: TransferSettings) -> StationUplink:
        return StationUplink(
            store=self.station_store, identity=self.station, hub=self.hub.public(),
            station_id=STATION, settings=settings,
            mqtt=MqttSettings(host=self.broker.host, port=self.broker.port, tls=False,
                              client_id=STATION, keepalive=10, session_expiry=60))

    async def cases(self, count: int, size: int = 3000) -> dict[str, str]:
        """Accept `count` submitted cases with one scan each; returns case -> scan SHA-256."""
        out = {}
        for index in range(count):
            scan = self.tmp / f"scan{index}.jpg"
            scan.write_bytes(os.urandom(size))
            case = await self.intake.create_case("MZ-0001", APPLICANT, {}, [scan], submit=True)
            out[case] = hashlib.sha256(scan.read_bytes()).hexdigest()
        return out


@asynccontextmanager
async def county(plain_broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[County]:
    station, hub = identity(STATION), identity(HUB)
    async with AsyncExitStack() as stack:
        station_store = await Store.open(tmp_path / "station.db",
                                         blob_dir=tmp_path / "station-blobs",
                                         hub_origins=frozenset({HUB}))
        stack.push_async_callback(station_store.close)
        hub_store = await Store.open(tmp_path / "hub.db", blob_dir=tmp_path / "hub-blobs",
                                     hub_origins=frozenset({HUB}))
        stack.push_async_callback(hub_store.close)
        worker = HubWorker(store=hub_store, identity=hub, stations={STATION: station.public()}.get,
                           incoming=tmp_path / "incoming", share_group="bundle-test",
                           mqtt=MqttSettings(host=plain_broker.host, port=plain_broker.port,
                                             tls=False, client_id="HUB-w1", keepalive=10,
                                             session_expiry=60))
        task = asyncio.create_task(worker.run())

        async def stop() -> None:
            worker.stop()
            await asyncio.wait_for(task, timeout=20)

        stack.push_async_callback(stop)
        intake = CaseIntake(station_store, station, hub.public(),
                            Suite.X25519_SHA256_AES256GCM, STATION)
        yield County(station=station, hub=hub, station_store=station_store,
                     hub_store=hub_store, worker=worker, intake=intake, broker=plain_broker,
                     tmp=tmp_path)


@asynccontextmanager
async def running(uplink: StationUplink) -> AsyncIterator[StationUplink]:
    task = asyncio.create_task(uplink.run())
    try:
        yield uplink
    finally:
        uplink.stop()
        await asyncio.wait_for(task, timeout=20)


async def drained(store: Store, within: float = 40.0) -> bool:
    async with asyncio.timeout(within):
        while (await store.outbox_stats()).count - (await store.outbox_stats()).held:
            await asyncio.sleep(0.1)
    return True


async def hub_has(c: County, expected: dict[str, str]) -> None:
    cases = {s.case for s in await c.hub_store.list_cases()}
    assert cases == set(expected)
    for case, sha in expected.items():
        assert c.hub_store.blob_path(sha).read_bytes() != b""
        assert hashlib.sha256(c.hub_store.blob_path(sha).read_bytes()).hexdigest() == sha
        materials = [e for e in await c.hub_store.events_for_case(case)
                     if e.type.value == "material_added"]
        assert [m.body["sha256"] for m in materials] == [sha]


@pytest.mark.parametrize("bundle", [True, False])
async def test_small_cases_arrive_once_in_fewer_commits_with_bundles(
    plain_broker: MosquittoBroker, tmp_path: Path, bundle: bool
) -> None:
    async with county(plain_broker, tmp_path) as c:
        expected = await c.cases(12)
        assert (await c.station_store.outbox_stats()).count == 24
        async with running(c.uplink(replace(FAST, bundle=bundle))) as uplink:
            assert await drained(c.station_store)
            async with asyncio.timeout(5):  # the counter follows the outbox's commit
                while uplink.stats.delivered < 24:
                    await asyncio.sleep(0.01)
        await hub_has(c, expected)
        assert c.worker.stats.accepted == 24  # every package committed, once
        assert uplink.stats.delivered == 24
        commits = c.worker.stats.commit.count
        if bundle:
            # 12 batches (~450 B) fit in one or two 16 KiB bundles, 12 scans (3 KB) four per
            # bundle: a handful of commits and acks instead of 24
            assert commits <= 8, commits
        else:
            assert commits == 24
        assert not c.worker.stats.rejected.get("internal")


async def test_a_refused_bundle_costs_only_its_bad_member(
    plain_broker: MosquittoBroker, tmp_path: Path
) -> None:
    async with county(plain_broker, tmp_path) as c:
        good = await c.cases(2)
        # A package whose events claim another origin (a station forging a hub decision, say),
        # queued between the real ones: the bundle carrying it is refused as a whole.
        other = identity("ST2")
        async with await Store.open(tmp_path / "other.db",
                                    blob_dir=tmp_path / "other-blobs") as other_store:
            await CaseIntake(other_store, other, c.hub.public(),
                             Suite.X25519_SHA256_AES256GCM, "ST2").create_case(
                "MZ-0001", APPLICANT, {}, [], submit=True)
            (foreign,) = await other_store.outbox_all()
        assert foreign.plain is not None
        forged_id = bundling.new_package_id(1_790_000_000_000)
        sealed = seal_batch(foreign.plain, sender=c.station, recipient=c.hub.public(),
                            package_id=forged_id, created_ms=1_790_000_000_000)
        await c.station_store.append_local(STATION, [], outbox=[OutboxPut(
            package_id=forged_id, kind="batch", priority=PRIORITY_EVENTS, destination=HUB,
            payload=sealed, size=len(sealed), plain=foreign.plain)])
        good.update(await c.cases(2))
        async with running(c.uplink(FAST)):
            assert await drained(c.station_store)
        await hub_has(c, good)
        held = await c.station_store.outbox_all()
        assert [e.package_id for e in held] == [forged_id]
        assert held[0].state == "held"
        reason = await c.station_store.kv_get(f"reject:{forged_id.hex()}")
        assert reason is not None and reason.startswith(b"BAD_CONTENT")
        assert c.worker.stats.accepted == 8  # 4 cases x (batch + scan), each once
        assert c.worker.stats.rejected["bad_content"] >= 2  # the bundle, then the member alone


async def test_members_already_committed_are_skipped_and_the_bundle_acked(
    plain_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A bundle may carry packages the hub already has (the station restarted before the
    first bundle's Ack): they are acknowledged with it, never applied twice."""
    async with county(plain_broker, tmp_path) as c:
        expected = await c.cases(3)
        entries = await c.station_store.outbox_all()
        assert len(entries) == 6
        async with aiomqtt.Client(plain_broker.host, plain_broker.port, identifier=STATION,
                                  protocol=aiomqtt.ProtocolVersion.V5, timeout=10) as client:
            await client.subscribe(wire.topic(STATION, "d"), qos=1)
            acked: list[bytes] = []
            for members in (entries[:3], entries):  # the second bundle repeats three
                pid = bundling.new_package_id(1_790_000_000_000)
                sealed = await asyncio.to_thread(
                    bundling.build, members, blob_path=c.station_store.blob_path,
                    sender=c.station, recipient=c.hub.public(),
                    suite=Suite.X25519_SHA256_AES256GCM, package_id=pid,
                    created_ms=1_790_000_000_000)
                await client.publish(wire.topic(STATION, "u"), wire.encode(wire.Chunk(
                    package_id=pid, kind=wire.PackageKind.BUNDLE, size=len(sealed), offset=0,
                    data=sealed)), qos=1)
                async with asyncio.timeout(20):
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        msg = wire.decode(message.payload)
                        assert not isinstance(msg, wire.Reject), msg
                        if isinstance(msg, wire.Ack) and msg.package_id == pid:
                            acked.append(pid)
                            break
        assert len(acked) == 2
        await hub_has(c, expected)
        assert c.worker.stats.accepted == 6  # 3 + the 3 new ones of the second bundle
        assert c.worker.stats.rejected["replay"] == 1  # one log line for the three repeats
        for entry in entries:
            assert await c.hub_store.inbox_has(entry.package_id)
        events = [e for case in expected for e in await c.hub_store.events_for_case(case)]
        assert len(events) == len({e.id for e in events}) == 9  # created, material, submitted
