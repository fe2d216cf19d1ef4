"""The county hub's Prometheus endpoint: packages in, rejections by reason, commit latency,
downlink, and every station's health as reported by its beacons (label ``station``).

Two sources, one truth each:

- this worker's counters are its `HubStats` (sync.hubworker), read at scrape time; nothing is
  counted twice in a parallel set of prometheus objects. With several workers each serves its
  own endpoint and Prometheus sums the counters over the worker targets;
- per-station series come from the store all workers share (``station:<id>`` written by every
  worker's stations flush, ``beacon:<id>`` written on each valid beacon), so *any* worker's
  endpoint shows every station, whichever worker a beacon happened to reach.

Served with aiohttp on the worker's event loop: the handler refreshes the station view from the
store (bounded in time), then renders the registry. Port 0 turns the endpoint off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from protocols.health import Beacon, BeaconError, decode_beacon
from sync.hubworker import BEACON_KEY, REJECT_REASONS, HubStats
from sync.store.reads import Reads

log = logging.getLogger("cunlink.hub.metrics")

#: A scrape waits at most this long for the store; after that it serves the last view.
REFRESH_TIMEOUT_SECONDS = 5.0
#: Device states that count as working (protocols.health.STATE_CODES).
UP_STATES = frozenset({"up", "ok"})
STATION_KEY = "station:"


@dataclass(frozen=True, slots=True, kw_only=True)
class StationRow:
    station: str
    last_seen_ms: int = 0
    online: bool | None = None  # from the retained state / last will; None: never heard
    beacon: Beacon | None = None
    beacon_ms: int = 0


class StationBoard:
    """The per-station view every worker exports, rebuilt from the shared store on scrape."""

    def __init__(self, enrolled: Callable[[], Iterable[str]], stats: HubStats) -> None:
        self._enrolled = enrolled
        self._stats = stats
        self.rows: dict[str, StationRow] = {}
        self.refresh_failures = 0

    async def refresh(self, store: Reads) -> None:
        stored: dict[str, dict[str, object]] = {}
        for key in await store.kv_keys(STATION_KEY):
            raw = await store.kv_get(key)
            if raw:
                stored[key[len(STATION_KEY):]] = _json_object(raw)
        beacons: dict[str, tuple[Beacon, int]] = {}
        for key in await store.kv_keys(BEACON_KEY):
            raw = await store.kv_get(key)
            station = key[len(BEACON_KEY):]
            if raw and (found := _stored_beacon(station, raw)) is not None:
                beacons[station] = found
        names = set(self._enrolled()) | set(stored) | set(beacons) | set(self._stats.stations)
        rows = {}
        for station in sorted(names):
            record = stored.get(station, {})
            seen = self._stats.stations.get(station)
            last_seen = _int(record.get("last_seen_ms"))
            online: bool | None = bool(record["online"]) if "online" in record else None
            # This worker may know better than its last flush (up to 5 s old).
            if seen is not None and seen.last_seen_ms >= last_seen:
                last_seen, online = seen.last_seen_ms, seen.online
            beacon, beacon_ms = beacons.get(station, (None, 0))
            if seen is not None and seen.beacon is not None and seen.beacon_ms > beacon_ms:
                beacon, beacon_ms = seen.beacon, seen.beacon_ms
            # A beacon is written at once; the stations flush runs every few seconds.
            last_seen = max(last_seen, beacon_ms)
            rows[station] = StationRow(station=station, last_seen_ms=last_seen, online=online,
                                       beacon=beacon, beacon_ms=beacon_ms)
        self.rows = rows


def _json_object(raw: bytes) -> dict[str, object]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _stored_beacon(station: str, raw: bytes) -> tuple[Beacon, int] | None:
    record = _json_object(raw)
    try:
        payload = bytes.fromhex(str(record.get("payload", "")))
        return decode_beacon(payload), _int(record.get("received_ms"))
    except (ValueError, BeaconError) as exc:  # written by another version of the hub
        log.debug("ignored the stored beacon of %s: %s", station, exc)
        return None


class HubCollector(Collector):
    """Renders `HubStats` and the `StationBoard` in the metric names of the shared contract."""

    def __init__(self, stats: HubStats, board: StationBoard, *, hub: str, worker: str) -> None:
        self._stats = stats
        self._board = board
        self._hub = hub
        self._worker = worker

    def collect(self) -> Iterator[Metric]:
        yield from self._worker_metrics()
        yield from self._station_metrics()

    def _worker_metrics(self) -> Iterator[Metric]:
        s = self._stats
        info = GaugeMetricFamily("cunlink_build_info", "cunlink version of this hub worker",
                                 labels=["version", "hub", "worker"])
        info.add_metric([_version(), self._hub, self._worker], 1)
        yield info
        yield CounterMetricFamily(
            "cunlink_hub_packages_accepted", "Packages verified, committed and acknowledged "
            "by this worker", value=s.accepted)
        rejected = CounterMetricFamily(
            "cunlink_hub_packages_rejected", "Messages and packages this worker refused, by "
            "reason (replay: an already committed package again, acknowledged again and not "
            "applied; usually a lost ack, not an attack)", labels=["reason"])
        for reason in sorted(set(REJECT_REASONS) | set(s.rejected)):
            rejected.add_metric([reason], s.rejected.get(reason, 0))
        yield rejected
        commit = HistogramMetricFamily(
            "cunlink_hub_commit_duration_seconds", "From a package's last byte to its commit "
            "in the hub's store (open, verify, apply)")
        commit.add_metric([], [(_le(b), n) for b, n in s.commit.cumulative()],
                          sum_value=s.commit.total)
        yield commit
        yield CounterMetricFamily(
            "cunlink_hub_chunks_duplicate", "Chunks that reached this worker holding bytes it "
            "already had (overlapping the package's received ranges, or a chunk of a package "
            "already committed): what crossed the link twice", value=s.duplicate_chunks)
        yield CounterMetricFamily(
            "cunlink_hub_chunk_duplicate_bytes", "Bytes of those chunks that the hub already "
            "held (a whole chunk after the commit)", value=s.duplicate_bytes)
        yield CounterMetricFamily(
            "cunlink_hub_downlink_sent", "Downlink packages (status changes, supplement "
            "requests) published to stations, re-sends included", value=s.downlink_sent)
        yield CounterMetricFamily(
            "cunlink_hub_beacons_received", "Valid health beacons received by this worker",
            value=s.beacons)
        invalid = CounterMetricFamily(
            "cunlink_hub_beacons_invalid", "Health beacons that did not decode, by station",
            labels=["station"])
        for station, n in sorted(s.beacons_invalid.items()):
            invalid.add_metric([station], n)
        yield invalid

    def _station_metrics(self) -> Iterator[Metric]:
        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"cunlink_hub_station_{name}", doc,
                                     labels=["station", *extra])

        seen = gauge("last_seen_timestamp_seconds", "When the hub last heard from the station "
                     "(any message; 0: never since enrolled)")
        link = gauge("link_up", "1 while the station is connected (its retained state; the "
                     "broker publishes its last will when the link dies)")
        items = gauge("outbox_items", "Undelivered outbox entries (latest beacon)")
        oldest = gauge("outbox_oldest_age_seconds", "Age of the oldest undelivered entry "
                       "(latest beacon; 0 when the outbox is empty)")
        disk = gauge("disk_free_bytes", "Free disk on the station (latest beacon)")
        offset = gauge("clock_offset_seconds", "Hub clock minus station clock, as the station "
                       "measured it (latest beacon)")
        device = gauge("device_up", "1 when the device is up (latest beacon)", ("device",))
        conflicts = gauge("conflicts", "Cases with conflicting edits (latest beacon)")
        errors = gauge("errors", "Entries in the station's recent-errors list, at most 20 "
                       "(latest beacon)")
        for row in self._board.rows.values():
            labels = [row.station]
            seen.add_metric(labels, row.last_seen_ms / 1000)
            b = row.beacon
            if row.online is not None:
                link.add_metric(labels, 1 if row.online else 0)
            elif b is not None:
                link.add_metric(labels, 1 if b.link_up else 0)
            if b is None:
                continue
            items.add_metric(labels, b.outbox_items)
            oldest.add_metric(labels, b.outbox_oldest_s or 0)
            disk.add_metric(labels, b.disk_free_mb * 2**20)
            if b.hub_offset_ms is not None:
                offset.add_metric(labels, b.hub_offset_ms / 1000)
            for name, state in sorted(b.devices.items()):
                device.add_metric([row.station, name], 1 if state in UP_STATES else 0)
            conflicts.add_metric(labels, b.conflicts)
            errors.add_metric(labels, b.errors)
        yield from (seen, link, items, oldest, disk, offset, device, conflicts, errors)


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def _version() -> str:
    try:
        return metadata.version("cunlink")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def hub_registry(collector: HubCollector) -> CollectorRegistry:
    """A registry of our own (never the global one): only the hub's series, no process noise."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


class MetricsServer:
    """``GET /metrics`` on ``listen:port``; each scrape first refreshes the station view."""

    def __init__(self, registry: CollectorRegistry, board: StationBoard, store: Reads) -> None:
        self._board = board
        self._store = store
        self._render = make_aiohttp_handler(registry, disable_compression=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT_SECONDS):
                await self._board.refresh(self._store)
        except Exception as exc:  # a slow or busy store must not make the scrape fail
            self._board.refresh_failures += 1
            log.warning("metrics: station view not refreshed (%s); serving the last one",
                        exc or type(exc).__name__)
        return await self._render(request)

    async def start(self, listen: str, port: int) -> None:
        """Bind; OSError (e.g. the port is taken by another worker) is the caller's to report."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, listen, port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = _bound_port(runner, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve(stats: HubStats, *, store: Reads, enrolled: Callable[[], Iterable[str]],
                hub: str, worker: str, listen: str, port: int) -> MetricsServer:
    """Build the registry for one worker and serve it; OSError when the port cannot be bound."""
    board = StationBoard(enrolled, stats)
    collector = HubCollector(stats, board, hub=hub, worker=worker)
    server = MetricsServer(hub_registry(collector), board, store)
    await server.start(listen, port)
    return server


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
            return address[1]
    return asked
