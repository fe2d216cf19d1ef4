"""The hub's Prometheus endpoint: real hub workers on a real Mosquitto, real SQLite, scraped
over HTTP. Two workers share one store, as two `cunlink hub run` processes do."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway import hub_metrics
from gateway.keys import init_keys
from gateway.testbed.broker import MosquittoBroker
from gateway.testbed.ports import free_port
from protocols import wire
from protocols.envelope import LocalIdentity, PeerIdentity
from protocols.health import Beacon, encode_beacon
from sync.hubworker import REJECT_REASONS, HubStats, HubWorker
from sync.mqttlink import MqttSettings
from sync.store import Store

STATIONS = ("ST1", "ST2", "ST3", "ST4")
SILENT = "ST9"  # enrolled, never heard from

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

CONTRACT_NAMES = (
    "cunlink_hub_packages_accepted_total", "cunlink_hub_packages_rejected_total",
    "cunlink_hub_commit_duration_seconds_bucket", "cunlink_hub_downlink_sent_total",
    "cunlink_hub_beacons_invalid_total", "cunlink_hub_station_last_seen_timestamp_seconds",
    "cunlink_hub_station_link_up", "cunlink_hub_station_outbox_items",
    "cunlink_hub_station_outbox_oldest_age_seconds", "cunlink_hub_station_disk_free_bytes",
    "cunlink_hub_station_clock_offset_seconds", "cunlink_hub_station_device_up",
    "cunlink_hub_station_conflicts", "cunlink_hub_station_errors",
    "cunlink_hub_chunks_duplicate_total", "cunlink_hub_chunk_duplicate_bytes_total",
)


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def identity(name: str) -> LocalIdentity:
    return LocalIdentity(id=name, signing_key=Ed25519PrivateKey.generate(),
                         encryption_key=X25519PrivateKey.generate())


def beacon(i: int) -> Beacon:
    return Beacon(
        at_ms=1_795_000_000_000 + i, software="cunlink 0.1.0", uptime_s=60 * i, link_up=True,
        connects=i, stalls=0, bytes_up=1000 * i, bytes_down=100 * i, chunks_resent=0,
        rtt_ms=800, hub_offset_ms=-1500 if i == 1 else None, outbox_items=10 + i,
        outbox_bytes=4096 * i, outbox_oldest_s=None if i == 2 else 3600 * i, outbox_held=0,
        disk_free_mb=512 + i, devices={"idcard": "up", "printer": "down", "camera": "ok"},
        cases_open=3, conflicts=i % 2, errors=i)


@dataclass(slots=True)
class Worker:
    hub: HubWorker
    metrics: hub_metrics.MetricsServer
    task: asyncio.Task[None]


async def scrape(session: aiohttp.ClientSession, port: int) -> Samples:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(await response.text())


async def until(predicate: Callable[[], bool], within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.05)


async def workers(stack: AsyncExitStack, tmp_path: Path, broker: MosquittoBroker,
                  peers: dict[str, PeerIdentity], n: int) -> list[Worker]:
    """``n`` hub workers in one shared subscription, each with its own Store on one file."""
    out = []
    me = identity("HUB")
    for w in range(n):
        store = await Store.open(tmp_path / "hub.db", blob_dir=tmp_path / "blobs",
                                 hub_origins=frozenset({"HUB"}))
        stack.push_async_callback(store.close)
        hub = HubWorker(store=store, identity=me, stations=peers.get,
                        incoming=tmp_path / "incoming",
                        mqtt=MqttSettings(host=broker.host, port=broker.port, tls=False,
                                          client_id=f"HUB-w{w}", keepalive=10,
                                          session_expiry=60),
                        share_group="metrics-test")
        metrics = await hub_metrics.serve(hub.stats, store=store, enrolled=lambda: sorted(peers),
                                          hub="HUB", worker=f"w{w}", listen="127.0.0.1",
                                          port=free_port())
        stack.push_async_callback(metrics.stop)
        task = asyncio.create_task(hub.run())

        async def stop(hub: HubWorker = hub, task: asyncio.Task[None] = task) -> None:
            hub.stop()
            await asyncio.wait_for(task, timeout=20)

        stack.push_async_callback(stop)
        out.append(Worker(hub, metrics, task))
    return out


@pytest.fixture
async def station_client(plain_broker: MosquittoBroker) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(plain_broker.host, plain_broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5, timeout=10) as client:
        yield client


async def ready(client: aiomqtt.Client, running: list[Worker]) -> None:
    """Probe with garbage until every worker has counted one: all are subscribed."""
    async with asyncio.timeout(30):
        while not all(w.hub.stats.rejected["garbage"] for w in running):
            await client.publish("cl/ST1/u", b"\xc1", qos=1)
            await asyncio.sleep(0.1)


async def test_any_workers_endpoint_shows_every_stations_beacon(
    plain_broker: MosquittoBroker, station_client: aiomqtt.Client, tmp_path: Path
) -> None:
    peers = {s: identity(s).public() for s in (*STATIONS, SILENT)}
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        running = await workers(stack, tmp_path, plain_broker, peers, 2)
        await ready(station_client, running)
        await station_client.publish("cl/ST1/s", wire.encode(wire.State(online=True)),
                                     qos=1, retain=True)
        for i, station in enumerate(STATIONS, start=1):
            await station_client.publish(f"cl/{station}/h", encode_beacon(beacon(i)), qos=1)
        await station_client.publish("cl/ST2/h", b"\x92\x01\x02", qos=1)  # not a beacon
        await station_client.publish("cl/NOPE/h", encode_beacon(beacon(5)), qos=1)

        def heard() -> bool:
            stats = [w.hub.stats for w in running]
            return (sum(s.beacons for s in stats) == 4
                    and sum(s.beacons_invalid["ST2"] for s in stats) == 1
                    and sum(s.rejected["unknown_station"] for s in stats) == 1)

        await until(heard)
        assert all(w.hub.stats.beacons for w in running), "the share gave one worker nothing"
        # ST3's link dies after its beacon: the broker publishes its last will. Whichever worker
        # gets it, both endpoints agree once the workers' stations flush has run.
        await station_client.publish("cl/ST3/s", wire.encode(wire.State(online=False)),
                                     qos=1, retain=True)
        async with asyncio.timeout(30):
            while True:
                scraped = [await scrape(http, w.metrics.port) for w in running]
                if all(get(s, "cunlink_hub_station_link_up", station="ST3") == 0
                       for s in scraped):
                    break
                await asyncio.sleep(0.5)

    for samples in scraped:  # each endpoint, whichever worker got which beacon
        for i, station in enumerate(STATIONS, start=1):
            b = beacon(i)
            assert get(samples, "cunlink_hub_station_outbox_items", station=station) == 10 + i
            assert get(samples, "cunlink_hub_station_disk_free_bytes", station=station) == (
                (512 + i) * 2**20)
            assert get(samples, "cunlink_hub_station_outbox_oldest_age_seconds",
                       station=station) == (b.outbox_oldest_s or 0)
            assert get(samples, "cunlink_hub_station_errors", station=station) == i
            assert get(samples, "cunlink_hub_station_conflicts", station=station) == i % 2
            for device, up in (("idcard", 1), ("printer", 0), ("camera", 1)):
                assert get(samples, "cunlink_hub_station_device_up", station=station,
                           device=device) == up
            seen = get(samples, "cunlink_hub_station_last_seen_timestamp_seconds",
                       station=station)
            assert seen is not None and seen > 1.7e9
        assert get(samples, "cunlink_hub_station_clock_offset_seconds", station="ST1") == -1.5
        assert get(samples, "cunlink_hub_station_clock_offset_seconds", station="ST2") is None
        # Connected state comes from the retained state / last will, not from the beacon.
        assert get(samples, "cunlink_hub_station_link_up", station="ST3") == 0
        assert get(samples, "cunlink_hub_station_link_up", station="ST4") == 1
        # Enrolled but never heard: a series at 0, so "station silent" alerts fire for it.
        assert get(samples, "cunlink_hub_station_last_seen_timestamp_seconds",
                   station=SILENT) == 0
        assert get(samples, "cunlink_hub_station_outbox_items", station="NOPE") is None
    # Per-worker counters add up over the two endpoints.
    assert sum(get(s, "cunlink_hub_beacons_invalid_total", station="ST2") or 0
               for s in scraped) == 1
    assert sum(get(s, "cunlink_hub_packages_rejected_total", reason="unknown_station") or 0
               for s in scraped) == 1
    for samples, worker in zip(scraped, ("w0", "w1"), strict=True):
        info = [(dict(labels), v) for (name, labels), v in samples.items()
                if name == "cunlink_build_info"]
        assert len(info) == 1 and info[0][1] == 1
        assert info[0][0]["hub"] == "HUB" and info[0][0]["worker"] == worker


def test_counters_and_histogram_render_from_hub_stats() -> None:
    stats = HubStats()
    stats.accepted = 7
    stats.downlink_sent = 3
    stats.rejected["garbage"] += 2
    stats.rejected["something_new"] += 1  # a reason added later still shows
    for seconds in (0.003, 0.2, 100.0):
        stats.commit.observe(seconds)
    board = hub_metrics.StationBoard(lambda: [], stats)
    registry = hub_metrics.hub_registry(hub_metrics.HubCollector(stats, board, hub="H",
                                                                 worker="w"))
    text = generate_latest(registry).decode()
    samples = parse(text)
    for name in CONTRACT_NAMES[:4]:
        assert f"\n{name}" in text or text.startswith(name), name
    assert get(samples, "cunlink_hub_packages_accepted_total") == 7
    assert get(samples, "cunlink_hub_downlink_sent_total") == 3
    for reason in REJECT_REASONS:  # every known reason exists from the start, at 0 or more
        assert get(samples, "cunlink_hub_packages_rejected_total", reason=reason) is not None
    assert get(samples, "cunlink_hub_packages_rejected_total", reason="garbage") == 2
    assert get(samples, "cunlink_hub_packages_rejected_total", reason="something_new") == 1
    bucket = "cunlink_hub_commit_duration_seconds_bucket"
    assert get(samples, bucket, le="0.005") == 1
    assert get(samples, bucket, le="0.1") == 1
    assert get(samples, bucket, le="0.25") == 2
    assert get(samples, bucket, le="60.0") == 2
    assert get(samples, bucket, le="+Inf") == 3
    assert get(samples, "cunlink_hub_commit_duration_seconds_count") == 3
    assert get(samples, "cunlink_hub_commit_duration_seconds_sum") == pytest.approx(100.203)


async def test_every_contract_name_is_served(
    plain_broker: MosquittoBroker, station_client: aiomqtt.Client, tmp_path: Path
) -> None:
    peers = {"ST1": identity("ST1").public()}
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        running = await workers(stack, tmp_path, plain_broker, peers, 1)
        await ready(station_client, running)
        await station_client.publish("cl/ST1/h", encode_beacon(beacon(1)), qos=1)
        await station_client.publish("cl/ST1/h", b"junk", qos=1)
        await until(lambda: running[0].hub.stats.beacons_invalid["ST1"] == 1
                    and running[0].hub.stats.beacons == 1)
        names = {name for name, _ in await scrape(http, running[0].metrics.port)}
    assert set(CONTRACT_NAMES) <= names, set(CONTRACT_NAMES) - names


async def test_a_chunk_sent_twice_is_counted_once_as_duplicate(
    plain_broker: MosquittoBroker, station_client: aiomqtt.Client, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What crossed the link twice, as the hub sees it: a chunk it already held counts once
    (all its bytes), a chunk overlapping what it held counts once (the overlap only)."""
    caplog.set_level(logging.INFO, logger="cunlink.hub")
    peers = {"ST1": identity("ST1").public()}
    pid = bytes(range(16))

    def chunk(offset: int, n: int) -> bytes:
        return wire.encode(wire.Chunk(package_id=pid, kind=wire.PackageKind.BATCH, size=3000,
                                      offset=offset, data=bytes(n)))

    async with AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        running = await workers(stack, tmp_path, plain_broker, peers, 1)
        await ready(station_client, running)
        stats = running[0].hub.stats
        for offset, n in ((0, 1000), (0, 1000)):  # the same chunk twice
            await station_client.publish("cl/ST1/u", chunk(offset, n), qos=1)
        await until(lambda: stats.stations["ST1"].bytes_in == 2000)
        assert (stats.duplicate_chunks, stats.duplicate_bytes) == (1, 1000)
        await station_client.publish("cl/ST1/u", chunk(1000, 500), qos=1)  # new bytes only
        await station_client.publish("cl/ST1/u", chunk(1200, 600), qos=1)  # 300 held, 300 new
        await until(lambda: stats.stations["ST1"].bytes_in == 3100)
        samples = await scrape(http, running[0].metrics.port)
    assert get(samples, "cunlink_hub_chunks_duplicate_total") == 2
    assert get(samples, "cunlink_hub_chunk_duplicate_bytes_total") == 1300
    # On stopping, the worker logs its counters for whoever reads its log (bench/link.py).
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hub totals:")]
    totals = json.loads(line.removeprefix("hub totals:"))
    assert (totals["duplicate_chunks"], totals["duplicate_bytes"]) == (2, 1300)
    assert totals["bytes_in"] == 3100


def test_a_taken_metrics_port_stops_the_worker_with_a_clear_message(tmp_path: Path) -> None:
    init_keys("hub", "HUB", tmp_path / "keys", force=False, now=dt.datetime.now(dt.UTC))
    config = tmp_path / "hub.toml"
    with socket.socket() as holder:  # another worker already serves on the configured port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config.write_text("\n".join([
            "[hub]", 'id = "HUB"', f'state_dir = "{tmp_path / "state"}"', "",
            "[keys]", f'dir = "{tmp_path / "keys"}"', "",
            "[mqtt]", 'host = "127.0.0.1"', "port = 1", "tls = false", "",
            "[metrics]", 'listen = "127.0.0.1"', f"port = {port}", "",
        ]), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "hub", "run", "--config", str(config),
             "--worker", "w2"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "--metrics-port" in result.stderr and "CUNLINK__METRICS__PORT" in result.stderr
    assert "Traceback" not in result.stderr
